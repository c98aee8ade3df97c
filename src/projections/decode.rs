//! Stored notifications decoded for projection: unknown topics and
//! undecodable states are logged and skipped (they cannot be projected),
//! and the topics no projector reads are not even decoded.

use crate::domain::{Event, EventType, Upcasters};
use crate::store::{Notification, NotificationRef};

/// Decodes a stored notification; unknown topics and undecodable states are
/// logged and give `None` (they cannot be projected).
pub fn decode(n: &Notification) -> Option<Event> {
    decode_ref(&n.as_ref())
}

/// [`decode`] of a borrowed notification.
pub fn decode_ref(n: &NotificationRef<'_>) -> Option<Event> {
    match Event::decode(
        n.originator_id,
        n.originator_version,
        n.topic,
        n.state,
        Upcasters::standard(),
    ) {
        Ok(Some(ev)) => Some(ev),
        Ok(None) => {
            log::warn!(
                "notification {}: unknown topic {:?}, not projected",
                n.id,
                n.topic
            );
            None
        }
        Err(err) => {
            log::warn!("notification {}: {err}; not projected", n.id);
            None
        }
    }
}

/// The topics that no projector reads (they change no view row and no fact
/// of the cache); stored events of these topics are not even decoded.
fn ignored(ty: EventType) -> bool {
    matches!(
        ty,
        EventType::WorkflowStarted | EventType::TaskStarted | EventType::ResultAdded
    )
}

/// [`decode`] for projection: `None` without decoding for ignored topics
/// (status and progress updates, most of a log, take the codec's fast path
/// in [`Event::decode`]).
pub fn decode_projected(n: &NotificationRef<'_>) -> Option<Event> {
    match EventType::from_topic(n.topic) {
        Some(ty) if ignored(ty) => None,
        _ => decode_ref(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredEvent;

    fn note(topic: EventType, state: &str) -> Notification {
        Notification {
            id: 7,
            event: StoredEvent {
                originator_id: uuid::Uuid::from_u128(42),
                originator_version: 3,
                topic: topic.topic().to_owned(),
                state: state.as_bytes().to_vec(),
            },
        }
    }

    #[test]
    fn the_fast_update_decoder_agrees_with_the_codec() {
        let ts = r#"{"timestamp":{"_type_":"datetime_iso","_data_":"2024-06-01T08:00:00.250000+00:00"},"#;
        let ts0 = r#"{"timestamp":{"_type_":"datetime_iso","_data_":"2024-06-01T08:00:00+00:00"},"#;
        let cases = [
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"RUNNING"}}"#),
                true,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts0}"status":"RUNNING"}}"#),
                true,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":""}}"#),
                true,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"Déjà vu ✓"}}"#),
                true,
            ),
            (
                EventType::ProgressUpdated,
                format!(r#"{ts}"progress":"43%"}}"#),
                true,
            ),
            // Other forms: the codec decides (same event or not projected).
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"a\"b"}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"a\u00e9"}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":null}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":7}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"progress":"7"}}"#),
                false,
            ),
            (
                EventType::ProgressUpdated,
                format!(r#"{ts}"status":"7"}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"x","class_version":1}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"x"}} "#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts} "status":"x"}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                r#"{"timestamp":{"_type_":"datetime_iso","_data_":"not a time"},"status":"x"}"#
                    .to_owned(),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"x""#),
                false,
            ),
        ];
        for (ty, state, fast) in cases {
            let n = note(ty, &state);
            let quick = crate::domain::events::decode_update(ty, state.as_bytes());
            assert_eq!(quick.is_some(), fast, "{state}");
            if let Some((timestamp, payload)) = quick {
                // The general decoder reads the same event.
                let e = Event::decode_tree(
                    n.event.originator_id,
                    n.event.originator_version,
                    ty,
                    state.as_bytes(),
                    Upcasters::standard(),
                )
                .unwrap();
                assert_eq!((e.timestamp, e.payload), (timestamp, payload), "{state}");
            }
            assert_eq!(decode_projected(&n.as_ref()), decode(&n), "{state}");
        }
    }
}
