//! The domain events of the WorkflowRun and Task aggregates, their topics, and
//! their `state` bytes as docs/storage.md defines them.

use crate::domain::codec;
pub use crate::domain::event_type::{EventType, TASK_TOPIC, WORKFLOW_RUN_TOPIC};
use crate::domain::upcasters::Upcasters;
use crate::domain::value::Value;
use crate::error::{Error, Result};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Timelike, Utc};
use uuid::Uuid;

/// One domain event: its identity in the log and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub originator_id: Uuid,
    pub originator_version: i64,
    pub timestamp: DateTime<Utc>,
    pub payload: Payload,
}

/// What each event says. Fields that BIOMERO's Python code never type-checked
/// keep the stored [`Value`], so that a store is read back exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    WorkflowInitiated {
        name: Value,
        description: Value,
        user: Value,
        group: Value,
    },
    TaskAdded {
        task_id: Uuid,
    },
    WorkflowStarted,
    WorkflowCompleted,
    WorkflowFailed {
        error_message: Value,
    },
    TaskCreated {
        workflow_id: Uuid,
        task_name: Value,
        task_version: Value,
        input_data: Value,
        params: Value,
    },
    JobIdAdded {
        job_id: Value,
    },
    StatusUpdated {
        status: Value,
    },
    ProgressUpdated {
        progress: Value,
    },
    ResultAdded {
        result: Value,
    },
    TaskStarted,
    TaskCompleted {
        result: Value,
    },
    TaskFailed {
        error_message: Value,
    },
}

impl Payload {
    pub fn event_type(&self) -> EventType {
        use Payload::*;
        match self {
            WorkflowInitiated { .. } => EventType::WorkflowInitiated,
            TaskAdded { .. } => EventType::TaskAdded,
            WorkflowStarted => EventType::WorkflowStarted,
            WorkflowCompleted => EventType::WorkflowCompleted,
            WorkflowFailed { .. } => EventType::WorkflowFailed,
            TaskCreated { .. } => EventType::TaskCreated,
            JobIdAdded { .. } => EventType::JobIdAdded,
            StatusUpdated { .. } => EventType::StatusUpdated,
            ProgressUpdated { .. } => EventType::ProgressUpdated,
            ResultAdded { .. } => EventType::ResultAdded,
            TaskStarted => EventType::TaskStarted,
            TaskCompleted { .. } => EventType::TaskCompleted,
            TaskFailed { .. } => EventType::TaskFailed,
        }
    }

    /// The field values in the order of [`EventType::fields`].
    fn values(&self) -> Vec<Value> {
        use Payload::*;
        match self {
            WorkflowInitiated {
                name,
                description,
                user,
                group,
            } => {
                vec![
                    name.clone(),
                    description.clone(),
                    user.clone(),
                    group.clone(),
                ]
            }
            TaskAdded { task_id } => vec![Value::Uuid(*task_id)],
            WorkflowStarted | WorkflowCompleted | TaskStarted => vec![],
            WorkflowFailed { error_message } | TaskFailed { error_message } => {
                vec![error_message.clone()]
            }
            TaskCreated {
                workflow_id,
                task_name,
                task_version,
                input_data,
                params,
            } => vec![
                Value::Uuid(*workflow_id),
                task_name.clone(),
                task_version.clone(),
                input_data.clone(),
                params.clone(),
            ],
            JobIdAdded { job_id } => vec![job_id.clone()],
            StatusUpdated { status } => vec![status.clone()],
            ProgressUpdated { progress } => vec![progress.clone()],
            ResultAdded { result } | TaskCompleted { result } => vec![result.clone()],
        }
    }

    fn from_fields(ty: EventType, mut fields: Vec<(String, Value)>) -> Result<Payload> {
        let mut take = |name: &str| -> Result<Value> {
            match fields.iter().position(|(k, _)| k == name) {
                Some(i) => Ok(fields.swap_remove(i).1),
                None => Err(Error::decode(format!(
                    "{} has no field {name:?}",
                    ty.topic()
                ))),
            }
        };
        use EventType as T;
        Ok(match ty {
            T::WorkflowInitiated => Payload::WorkflowInitiated {
                name: take("name")?,
                description: take("description")?,
                user: take("user")?,
                group: take("group")?,
            },
            T::TaskAdded => Payload::TaskAdded {
                task_id: uuid_field(ty, "task_id", take("task_id")?)?,
            },
            T::WorkflowStarted => Payload::WorkflowStarted,
            T::WorkflowCompleted => Payload::WorkflowCompleted,
            T::WorkflowFailed => Payload::WorkflowFailed {
                error_message: take("error_message")?,
            },
            T::TaskCreated => Payload::TaskCreated {
                workflow_id: uuid_field(ty, "workflow_id", take("workflow_id")?)?,
                task_name: take("task_name")?,
                task_version: take("task_version")?,
                input_data: take("input_data")?,
                params: take("params")?,
            },
            T::JobIdAdded => Payload::JobIdAdded {
                job_id: take("job_id")?,
            },
            T::StatusUpdated => Payload::StatusUpdated {
                status: take("status")?,
            },
            T::ProgressUpdated => Payload::ProgressUpdated {
                progress: take("progress")?,
            },
            T::ResultAdded => Payload::ResultAdded {
                result: take("result")?,
            },
            T::TaskStarted => Payload::TaskStarted,
            T::TaskCompleted => Payload::TaskCompleted {
                result: take("result")?,
            },
            T::TaskFailed => Payload::TaskFailed {
                error_message: take("error_message")?,
            },
        })
    }
}

fn uuid_field(ty: EventType, name: &str, v: Value) -> Result<Uuid> {
    match v {
        Value::Uuid(u) => Ok(u),
        Value::Str(s) => codec::parse_uuid(&s)
            .ok_or_else(|| Error::decode(format!("{}: {name} is not a UUID", ty.topic()))),
        _ => Err(Error::decode(format!(
            "{}: {name} is not a UUID",
            ty.topic()
        ))),
    }
}

/// Python's `datetime.isoformat()` of an aware UTC datetime.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    if t.nanosecond() / 1000 == 0 {
        t.to_rfc3339_opts(SecondsFormat::Secs, false)
    } else {
        t.to_rfc3339_opts(SecondsFormat::Micros, false)
    }
}

/// Reads `datetime.fromisoformat()` text; a naive time counts as UTC.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = parse_utc_isoformat(text.as_bytes()) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// The form Python writes for a UTC time, `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`,
/// read without chrono's general parser (most of a log's decoding time
/// went there). `None` for any other form.
fn parse_utc_isoformat(b: &[u8]) -> Option<DateTime<Utc>> {
    let body = b.strip_suffix(b"+00:00")?;
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in body.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    };
    let micros = match body.len() {
        19 => 0,
        26 if body[19] == b'.' => num(20..26)?,
        _ => return None,
    };
    if body[4] != b'-'
        || body[7] != b'-'
        || body[10] != b'T'
        || body[13] != b':'
        || body[16] != b':'
    {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time =
        chrono::NaiveTime::from_hms_micro_opt(num(11..13)?, num(14..16)?, num(17..19)?, micros)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

/// A StatusUpdated or ProgressUpdated state exactly as Python writes it,
/// `{"timestamp":{"_type_":"datetime_iso","_data_":"<time>"},"<field>":"<text>"}`
/// with no escape in either string (most of a log), read without building
/// the JSON tree. `None` for any other form, which the general decoder
/// reads to the same event.
pub(crate) fn decode_update(ty: EventType, state: &[u8]) -> Option<(DateTime<Utc>, Payload)> {
    const HEAD: &[u8] = b"{\"timestamp\":{\"_type_\":\"datetime_iso\",\"_data_\":\"";
    let field: &[u8] = match ty {
        EventType::StatusUpdated => b"\"},\"status\":\"",
        EventType::ProgressUpdated => b"\"},\"progress\":\"",
        _ => return None,
    };
    let plain = |b: &[u8]| -> Option<usize> {
        b.iter()
            .position(|c| *c == b'"' || *c == b'\\' || *c < 0x20)
    };
    let rest = state.strip_prefix(HEAD)?;
    let end = plain(rest)?;
    let (time, rest) = rest.split_at(end);
    let rest = rest.strip_prefix(field)?;
    let end = plain(rest)?;
    let (text, rest) = rest.split_at(end);
    if rest != b"\"}" {
        return None;
    }
    let timestamp = match parse_utc_isoformat(time) {
        Some(t) => t,
        None => parse_timestamp(std::str::from_utf8(time).ok()?)?,
    };
    let text = Value::Str(std::str::from_utf8(text).ok()?.to_owned());
    Some((
        timestamp,
        match ty {
            EventType::StatusUpdated => Payload::StatusUpdated { status: text },
            _ => Payload::ProgressUpdated { progress: text },
        },
    ))
}

/// The current time at the microsecond resolution Python stores.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

impl Event {
    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    pub fn topic(&self) -> &'static str {
        self.event_type().topic()
    }

    /// The `state` bytes of this event, byte-identical to Python's.
    pub fn encode_state(&self, upcasters: &Upcasters) -> Vec<u8> {
        let ty = self.event_type();
        let mut out = String::with_capacity(160);
        out.push_str("{\"timestamp\":{\"_type_\":\"datetime_iso\",\"_data_\":\"");
        out.push_str(&format_timestamp(&self.timestamp));
        out.push_str("\"}");
        if let Some(topic) = ty.originator_topic() {
            out.push_str(",\"originator_topic\":");
            codec::write_str(topic, &mut out);
        }
        for (name, value) in ty.fields().iter().zip(self.payload.values()) {
            out.push(',');
            codec::write_str(name, &mut out);
            out.push(':');
            codec::encode_into(&value, &mut out);
        }
        let version = upcasters.current_version(ty);
        if version > 1 {
            out.push_str(",\"class_version\":");
            out.push_str(&version.to_string());
        }
        out.push('}');
        out.into_bytes()
    }

    /// Reads a stored event; `Ok(None)` for a topic this version does not know.
    pub fn decode(
        originator_id: Uuid,
        originator_version: i64,
        topic: &str,
        state: &[u8],
        upcasters: &Upcasters,
    ) -> Result<Option<Event>> {
        let Some(ty) = EventType::from_topic(topic) else {
            return Ok(None);
        };
        if upcasters.current_version(ty) == 1 {
            if let Some((timestamp, payload)) = decode_update(ty, state) {
                return Ok(Some(Event {
                    originator_id,
                    originator_version,
                    timestamp,
                    payload,
                }));
            }
        }
        Self::decode_tree(originator_id, originator_version, ty, state, upcasters).map(Some)
    }

    /// [`decode`](Event::decode) through the JSON tree (every form).
    pub(crate) fn decode_tree(
        originator_id: Uuid,
        originator_version: i64,
        ty: EventType,
        state: &[u8],
        upcasters: &Upcasters,
    ) -> Result<Event> {
        let topic = ty.topic();
        let Value::Dict(mut fields) = codec::decode(state)? else {
            return Err(Error::decode(format!(
                "{topic}: state is not a JSON object"
            )));
        };
        let stored_version = match fields.iter().position(|(k, _)| k == "class_version") {
            Some(i) => match fields.remove(i).1 {
                Value::Int(v) if v >= 1 && v <= i64::from(u32::MAX) => v as u32,
                other => {
                    return Err(Error::decode(format!(
                        "{topic}: invalid class_version {other:?}"
                    )))
                }
            },
            None => 1,
        };
        upcasters.upcast(ty, stored_version, &mut fields)?;
        let timestamp = match fields.iter().position(|(k, _)| k == "timestamp") {
            Some(i) => match fields.swap_remove(i).1 {
                Value::DateTime(text) => parse_timestamp(&text)
                    .ok_or_else(|| Error::decode(format!("{topic}: invalid timestamp {text:?}")))?,
                _ => {
                    return Err(Error::decode(format!(
                        "{topic}: timestamp is not a datetime"
                    )))
                }
            },
            None => return Err(Error::decode(format!("{topic}: no timestamp"))),
        };
        fields.retain(|(k, _)| k != "originator_topic");
        let payload = Payload::from_fields(ty, fields)?;
        Ok(Event {
            originator_id,
            originator_version,
            timestamp,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_created_state_is_byte_identical_to_python() {
        // The real example row of docs/storage.md.
        let wf = Uuid::parse_str("724e55e58b044a2fa7b2cc652e955e43").unwrap();
        let ev = Event {
            originator_id: Uuid::new_v4(),
            originator_version: 0,
            timestamp: parse_timestamp("2026-11-27T04:40:48.699730+00:00").unwrap(),
            payload: Payload::TaskCreated {
                workflow_id: wf,
                task_name: "_SLURM_Image_Transfer.py".into(),
                task_version: "1.0".into(),
                input_data: Value::Dict(vec![(
                    "ids".into(),
                    Value::List(vec![Value::Int(1), Value::Int(2)]),
                )]),
                params: Value::Dict(vec![("x".into(), Value::Float(1.5))]),
            },
        };
        let expected = r#"{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-27T04:40:48.699730+00:00"},"originator_topic":"biomero.eventsourcing:Task","workflow_id":{"_type_":"uuid_hex","_data_":"724e55e58b044a2fa7b2cc652e955e43"},"task_name":"_SLURM_Image_Transfer.py","task_version":"1.0","input_data":{"ids":[1,2]},"params":{"x":1.5}}"#;
        let up = Upcasters::standard();
        assert_eq!(String::from_utf8(ev.encode_state(up)).unwrap(), expected);
        let back = Event::decode(ev.originator_id, 0, ev.topic(), expected.as_bytes(), up)
            .unwrap()
            .unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn the_fast_timestamp_reader_agrees_with_chrono() {
        for text in [
            "2024-06-01T08:00:00.250000+00:00",
            "2024-06-01T08:00:00+00:00",
            "1999-12-31T23:59:59.999999+00:00",
            "2024-02-29T00:00:00.000001+00:00",
        ] {
            let fast = parse_utc_isoformat(text.as_bytes());
            let slow = DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc));
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, slow, "{text}");
        }
        for text in [
            "2023-02-29T00:00:00+00:00",
            "2024-06-01T08:00:00.25+00:00",
            "2024-06-01 08:00:00+00:00",
            "2024-06-01T08:00:00+01:00",
            "2024-06-01T24:00:00+00:00",
            "2024-06-01T08:00:00",
        ] {
            assert_eq!(parse_utc_isoformat(text.as_bytes()), None, "{text}");
        }
        // The general path still reads the other forms.
        assert!(parse_timestamp("2024-06-01T08:00:00.25+00:00").is_some());
        assert!(parse_timestamp("2024-06-01T08:00:00+01:00").is_some());
        assert!(parse_timestamp("2024-06-01T08:00:00").is_some());
    }

    #[test]
    fn timestamps_drop_a_zero_fraction_like_isoformat() {
        let t = parse_timestamp("2026-01-02T03:04:05+00:00").unwrap();
        assert_eq!(format_timestamp(&t), "2026-01-02T03:04:05+00:00");
        let t = parse_timestamp("2026-01-02T03:04:05.000100+00:00").unwrap();
        assert_eq!(format_timestamp(&t), "2026-01-02T03:04:05.000100+00:00");
    }

    #[test]
    fn unknown_topics_are_skipped_not_errors() {
        let r = Event::decode(
            Uuid::nil(),
            0,
            "other:Thing.Happened",
            b"not json",
            Upcasters::standard(),
        );
        assert!(matches!(r, Ok(None)));
    }

    #[test]
    fn out_of_range_class_versions_are_refused() {
        for v in ["0", "-1", "4294967297", "1.5"] {
            let state = format!(
                r#"{{"timestamp":{{"_type_":"datetime_iso","_data_":"2026-01-02T03:04:05+00:00"}},"status":"x","class_version":{v}}}"#
            );
            let r = Event::decode(
                Uuid::nil(),
                1,
                EventType::StatusUpdated.topic(),
                state.as_bytes(),
                Upcasters::standard(),
            );
            assert!(matches!(r, Err(Error::Decode(_))), "{v}: {r:?}");
        }
    }

    #[test]
    fn missing_fields_are_decode_errors() {
        let r = Event::decode(
            Uuid::nil(),
            1,
            EventType::StatusUpdated.topic(),
            br#"{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-02T03:04:05+00:00"}}"#,
            Upcasters::standard(),
        );
        assert!(matches!(r, Err(Error::Decode(_))));
    }
}
