//! Property and fuzz tests of the stored-event codec (issue 7).
//!
//! - `Event::decode` of arbitrary bytes, of arbitrary JSON-ish text, of
//!   mutated valid states and of well-shaped states with arbitrary field
//!   values, under every topic (and an unknown one): it returns `Ok` or an
//!   error, and never panics.
//! - `codec::decode(codec::encode(v)) == v` for generated values (ints, big
//!   ints, floats, unicode and control characters, nested lists and dicts with
//!   unique keys, UUIDs, datetimes, decimals); non-finite floats compare by
//!   their re-encoded text.
//! - `Event::decode(encode_state(e))` gives `e` back, for every event type.
//!
//! Run: `CARGO_TARGET_DIR=/tmp/target-rel cargo test --test codec_props`.
//! `PROPTEST_CASES=20000` runs more cases per property.

use biomero_rs::domain::codec::{decode, encode};
use biomero_rs::domain::events::format_timestamp;
use biomero_rs::domain::{Event, EventType, Payload, Upcasters, Value};
use biomero_rs::Error;
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config;
use uuid::Uuid;

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        // Failures are reported with their shrunk input; no files are written.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Every known topic, plus ones the decoder must treat as unknown.
fn topics() -> Vec<String> {
    let mut t: Vec<String> = EventType::ALL
        .iter()
        .map(|t| t.topic().to_owned())
        .collect();
    t.push("biomero.eventsourcing:Task.SomethingNew".into());
    t.push(String::new());
    t
}

fn topic() -> BoxedStrategy<String> {
    prop::sample::select(topics()).boxed()
}

/// The decoder's contract: a result, never a panic. Decode errors are the
/// only error kind it may give, and an event it reads can be written and read
/// back unchanged.
fn decode_any(topic: &str, state: &[u8]) -> Result<Option<Event>, Error> {
    let up = Upcasters::standard();
    let r = Event::decode(Uuid::nil(), 3, topic, state, up);
    match &r {
        Err(e) => assert!(
            matches!(e, Error::Decode(_)),
            "unexpected error kind for {topic}: {e:?}"
        ),
        Ok(Some(event)) => {
            let written = event.encode_state(up);
            let again = Event::decode(Uuid::nil(), 3, topic, &written, up)
                .unwrap_or_else(|e| panic!("re-encoded state does not decode: {e:?}"))
                .expect("known topic");
            assert_eq!(again.encode_state(up), written, "re-encoding is not stable");
        }
        Ok(None) => assert!(EventType::from_topic(topic).is_none()),
    }
    r
}

// ---------------------------------------------------------------- values

fn float() -> BoxedStrategy<f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        Just(0.0),
        Just(-0.0),
        Just(5e-324),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(1e16),
        Just(1e15),
        Just(0.1),
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
        (-1_000_000i64..1_000_000, 0u32..12).prop_map(|(m, e)| m as f64 / 10f64.powi(e as i32)),
    ]
    .boxed()
}

/// Integers outside i64, as Python's `int` prints them.
fn big_int() -> BoxedStrategy<String> {
    (any::<bool>(), "[1-9][0-9]{19,60}")
        .prop_map(|(neg, d)| if neg { format!("-{d}") } else { d })
        .boxed()
}

/// Text with unicode, control characters, quotes, backslashes, NUL, and the
/// characters JSON treats specially.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<char>(), 0..24).prop_map(|c| c.into_iter().collect()),
        prop::collection::vec(
            prop::sample::select(vec![
                '\0',
                '\u{1}',
                '\u{8}',
                '\t',
                '\n',
                '\u{b}',
                '\u{c}',
                '\r',
                '\u{1f}',
                ' ',
                '"',
                '\\',
                '/',
                '\u{7f}',
                '\u{80}',
                'é',
                '\u{2028}',
                '\u{2029}',
                '\u{feff}',
                '漢',
                '🎉',
                '\u{10ffff}',
                'a',
                'u',
                '{',
                '}',
                '[',
                ']',
                ':',
                ',',
            ]),
            0..16,
        )
        .prop_map(|c| c.into_iter().collect()),
    ]
    .boxed()
}

fn datetime() -> BoxedStrategy<DateTime<Utc>> {
    // Python's datetime range: years 1..=9999.
    let min = Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap().timestamp();
    let max = Utc
        .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .unwrap()
        .timestamp();
    (min..=max, prop_oneof![Just(0u32), 0u32..1_000_000])
        .prop_map(|(secs, micros)| DateTime::from_timestamp(secs, micros * 1000).expect("in range"))
        .boxed()
}

/// `datetime.isoformat()` texts: aware UTC, other offsets, naive.
fn datetime_text() -> BoxedStrategy<String> {
    prop_oneof![
        datetime().prop_map(|t| format_timestamp(&t)),
        (
            datetime(),
            -23i32..=23,
            prop::sample::select(vec![0, 30, 45])
        )
            .prop_map(|(t, h, m)| {
                let sign = if h < 0 { '-' } else { '+' };
                let naive = format_timestamp(&t);
                format!("{}{sign}{:02}:{m:02}", &naive[..naive.len() - 6], h.abs())
            }),
        datetime().prop_map(|t| t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
    ]
    .boxed()
}

fn decimal_text() -> BoxedStrategy<String> {
    prop_oneof![
        "-?[0-9]{1,30}(\\.[0-9]{1,20})?",
        "-?[0-9]\\.[0-9]{1,10}E[+-][0-9]{1,3}",
        Just("NaN".to_owned()),
        Just("-Infinity".to_owned()),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z_]{0,8}",
        2 => text(),
        1 => Just("_type_".to_owned()),
        1 => Just("_data_".to_owned()),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop::sample::select(vec![0i64, -1, 1, i64::MIN, i64::MAX, i32::MAX as i64 + 1])
            .prop_map(Value::Int),
        big_int().prop_map(Value::BigInt),
        float().prop_map(Value::Float),
        text().prop_map(Value::Str),
        any::<[u8; 16]>().prop_map(|b| Value::Uuid(Uuid::from_bytes(b))),
        datetime_text().prop_map(Value::DateTime),
        decimal_text().prop_map(Value::Decimal),
    ]
    .boxed()
}

/// A dict of exactly the keys `_type_` and `_data_` is how typed values are
/// stored, so it is not a plain dict value (the Python layer refuses it).
fn is_reserved(items: &[(String, Value)]) -> bool {
    items.len() == 2
        && items.iter().any(|(k, _)| k == "_type_")
        && items.iter().any(|(k, _)| k == "_data_")
}

fn unique_keys(items: Vec<(String, Value)>) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::with_capacity(items.len());
    for (k, v) in items {
        if !out.iter().any(|(seen, _)| *seen == k) {
            out.push((k, v));
        }
    }
    out
}

/// Values a stored event can hold (finite floats only).
fn value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(6, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                prop::collection::vec((key(), inner), 0..8)
                    .prop_map(unique_keys)
                    .prop_filter("reserved typed-value shape", |items| !is_reserved(items))
                    .prop_map(Value::Dict),
            ]
        })
        .boxed()
}

/// Values with NaN and infinities somewhere inside.
fn value_with_non_finite() -> BoxedStrategy<Value> {
    let special = prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -f64::NAN])
        .prop_map(Value::Float);
    (value(), prop::collection::vec(special, 1..4))
        .prop_map(|(v, specials)| {
            let mut items = vec![("v".to_owned(), v)];
            items.extend(
                specials
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| (format!("nf{i}"), f)),
            );
            Value::Dict(items)
        })
        .boxed()
}

// ---------------------------------------------------------- JSON-ish text

/// Text assembled from JSON tokens, valid or not: braces out of balance,
/// stray commas, typed-value tags with wrong data, numbers of every shape,
/// broken escapes and surrogates.
fn json_ish() -> BoxedStrategy<String> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just(" ".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("fals".to_owned()),
        Just("NaN".to_owned()),
        Just("-Infinity".to_owned()),
        Just("Infinity".to_owned()),
        Just("\"timestamp\"".to_owned()),
        Just("\"originator_topic\"".to_owned()),
        Just("\"class_version\"".to_owned()),
        Just("\"_type_\"".to_owned()),
        Just("\"_data_\"".to_owned()),
        Just("\"uuid_hex\"".to_owned()),
        Just("\"datetime_iso\"".to_owned()),
        Just("\"decimal_str\"".to_owned()),
        Just("\"2026-11-27T04:40:48.652324+00:00\"".to_owned()),
        Just("\"724e55e58b044a2fa7b2cc652e955e43\"".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("\"\\udc00\\ud800\"".to_owned()),
        Just("\"\\ud83c\\udf89\"".to_owned()),
        Just("\"\\u00".to_owned()),
        Just("\"\\x\"".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        prop::sample::select(
            EventType::ALL
                .iter()
                .flat_map(|t| t.fields().iter().copied())
                .collect::<Vec<_>>()
        )
        .prop_map(|f| format!("\"{f}\"")),
        "-?[0-9]{1,40}(\\.[0-9]{0,5})?([eE][+-]?[0-9]{0,5})?",
        "-?0[0-9]{1,3}",
        "\"[^\"\\\\]{0,8}\"",
        text().prop_map(|s| encode(&Value::Str(s))),
        any::<u8>().prop_map(|b| char::from(b).to_string()),
    ];
    prop::collection::vec(token, 0..40)
        .prop_map(|t| t.concat())
        .boxed()
}

/// A well-formed state of `ty` whose field values are arbitrary, with
/// fields dropped, duplicated or added at random and odd class versions.
fn shaped_state(ty: EventType) -> BoxedStrategy<String> {
    let fields = ty.fields();
    (
        prop_oneof![
            datetime().prop_map(|t| Value::DateTime(format_timestamp(&t))),
            datetime_text().prop_map(Value::DateTime),
            text().prop_map(Value::DateTime),
            leaf(),
        ],
        prop::collection::vec(value(), fields.len()),
        prop::collection::vec(any::<bool>(), fields.len()),
        prop::option::of(prop_oneof![
            any::<i64>().prop_map(Value::Int),
            (0i64..4).prop_map(Value::Int),
            Just(Value::Int(4_294_967_297)),
            leaf(),
        ]),
        prop::option::of((key(), value())),
        any::<bool>(),
    )
        .prop_map(move |(ts, values, keep, class_version, extra, typed_ids)| {
            let mut items = vec![("timestamp".to_owned(), ts)];
            if let Some(t) = ty.originator_topic() {
                items.push(("originator_topic".to_owned(), Value::Str(t.to_owned())));
            }
            for ((name, mut v), keep) in fields.iter().zip(values).zip(keep) {
                if !keep {
                    continue;
                }
                // Often give UUID fields a UUID, so decoding goes further.
                if typed_ids && (*name == "task_id" || *name == "workflow_id") {
                    v = Value::Uuid(Uuid::from_u128(7));
                }
                items.push(((*name).to_owned(), v));
            }
            if let Some(cv) = class_version {
                items.push(("class_version".to_owned(), cv));
            }
            if let Some(kv) = extra {
                items.push(kv);
            }
            encode(&Value::Dict(unique_keys(items)))
        })
        .boxed()
}

fn any_shaped_state() -> BoxedStrategy<(String, String)> {
    prop::sample::select(EventType::ALL.to_vec())
        .prop_flat_map(|ty| (Just(ty.topic().to_owned()), shaped_state(ty)))
        .boxed()
}

/// A valid state with a few bytes replaced, inserted or removed.
fn mutated_state() -> BoxedStrategy<(String, Vec<u8>)> {
    (
        any_shaped_state(),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..6),
    )
        .prop_map(|((topic, state), edits)| {
            let mut bytes = state.into_bytes();
            for (at, op, byte) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => {
                        bytes.remove(i);
                    }
                }
            }
            (topic, bytes)
        })
        .boxed()
}

// ---------------------------------------------------------------- events

fn payload_of(ty: EventType) -> BoxedStrategy<Payload> {
    let id = any::<u128>().prop_map(Uuid::from_u128);
    match ty {
        EventType::WorkflowInitiated => (value(), value(), value(), value())
            .prop_map(
                |(name, description, user, group)| Payload::WorkflowInitiated {
                    name,
                    description,
                    user,
                    group,
                },
            )
            .boxed(),
        EventType::TaskAdded => id
            .prop_map(|task_id| Payload::TaskAdded { task_id })
            .boxed(),
        EventType::WorkflowStarted => Just(Payload::WorkflowStarted).boxed(),
        EventType::WorkflowCompleted => Just(Payload::WorkflowCompleted).boxed(),
        EventType::TaskStarted => Just(Payload::TaskStarted).boxed(),
        EventType::WorkflowFailed => value()
            .prop_map(|error_message| Payload::WorkflowFailed { error_message })
            .boxed(),
        EventType::TaskFailed => value()
            .prop_map(|error_message| Payload::TaskFailed { error_message })
            .boxed(),
        EventType::TaskCreated => (id, value(), value(), value(), value())
            .prop_map(
                |(workflow_id, task_name, task_version, input_data, params)| Payload::TaskCreated {
                    workflow_id,
                    task_name,
                    task_version,
                    input_data,
                    params,
                },
            )
            .boxed(),
        EventType::JobIdAdded => value()
            .prop_map(|job_id| Payload::JobIdAdded { job_id })
            .boxed(),
        EventType::StatusUpdated => value()
            .prop_map(|status| Payload::StatusUpdated { status })
            .boxed(),
        EventType::ProgressUpdated => value()
            .prop_map(|progress| Payload::ProgressUpdated { progress })
            .boxed(),
        EventType::ResultAdded => value()
            .prop_map(|result| Payload::ResultAdded { result })
            .boxed(),
        EventType::TaskCompleted => value()
            .prop_map(|result| Payload::TaskCompleted { result })
            .boxed(),
    }
}

fn event() -> BoxedStrategy<Event> {
    prop::sample::select(EventType::ALL.to_vec())
        .prop_flat_map(|ty| {
            (any::<u128>(), 0i64..1_000_000, datetime(), payload_of(ty)).prop_map(
                |(id, version, timestamp, payload)| Event {
                    originator_id: Uuid::from_u128(id),
                    originator_version: version,
                    timestamp,
                    payload,
                },
            )
        })
        .boxed()
}

// ------------------------------------------------------------ properties

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn decode_of_arbitrary_bytes_never_panics(topic in topic(), state in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_any(&topic, &state);
        let _ = decode(&state);
    }

    #[test]
    fn decode_of_json_ish_text_never_panics(topic in topic(), state in json_ish()) {
        let _ = decode_any(&topic, state.as_bytes());
        let _ = decode(state.as_bytes());
    }

    #[test]
    fn decode_of_shaped_states_never_panics((topic, state) in any_shaped_state()) {
        let _ = decode_any(&topic, state.as_bytes());
    }

    #[test]
    fn decode_of_mutated_states_never_panics((topic, state) in mutated_state()) {
        let _ = decode_any(&topic, &state);
        let _ = decode(&state);
    }

    #[test]
    fn a_state_under_the_wrong_topic_is_an_error_or_an_event_not_a_panic(
        (_, state) in any_shaped_state(), topic in topic()
    ) {
        let _ = decode_any(&topic, state.as_bytes());
    }

    #[test]
    fn codec_round_trips_values(v in value()) {
        let text = encode(&v);
        let back = decode(text.as_bytes());
        prop_assert!(back.is_ok(), "{text:?} did not decode: {:?}", back.err());
        let back = back.unwrap();
        prop_assert_eq!(&back, &v, "text {:?}", text);
        prop_assert_eq!(encode(&back), text);
    }

    #[test]
    fn codec_round_trips_non_finite_floats_by_text(v in value_with_non_finite()) {
        let text = encode(&v);
        let back = decode(text.as_bytes()).expect("decodes");
        prop_assert_eq!(encode(&back), text);
    }

    #[test]
    fn encoded_text_is_json_with_no_raw_control_characters(v in value()) {
        let text = encode(&v);
        prop_assert!(!text.bytes().any(|b| b < 0x20), "raw control byte in {text:?}");
        // Finite values give standard JSON (big ints are plain digits).
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&text);
        prop_assert!(parsed.is_ok(), "not JSON: {text:?}: {:?}", parsed.err());
    }

    #[test]
    fn floats_decode_to_the_same_bits(f in float()) {
        let text = encode(&Value::Float(f));
        match decode(text.as_bytes()).expect("decodes") {
            Value::Float(g) => prop_assert_eq!(g.to_bits(), f.to_bits(), "{}", text),
            other => prop_assert!(false, "{text} decoded as {other:?}"),
        }
    }

    #[test]
    fn strings_survive_any_whitespace_around_them(s in text(), pad in "[ \t\r\n]{0,4}") {
        let text = format!("{pad}{}{pad}", encode(&Value::Str(s.clone())));
        prop_assert_eq!(decode(text.as_bytes()).expect("decodes"), Value::Str(s));
    }

    #[test]
    fn events_round_trip_through_their_state(e in event()) {
        let up = Upcasters::standard();
        let state = e.encode_state(up);
        let back = Event::decode(e.originator_id, e.originator_version, e.topic(), &state, up);
        prop_assert!(back.is_ok(), "{:?}", back.err());
        let back = back.unwrap().expect("known topic");
        prop_assert_eq!(back.originator_id, e.originator_id);
        prop_assert_eq!(back.originator_version, e.originator_version);
        prop_assert_eq!(back.timestamp, e.timestamp);
        prop_assert_eq!(back.topic(), e.topic());
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(back.encode_state(up), state);
    }
}

// ------------------------------------------------------------- examples

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for n in [600usize, 10_000, 200_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let text = format!("{}1{}", open.repeat(n), close.repeat(n));
            assert!(decode(text.as_bytes()).is_err(), "depth {n} of {open}");
            for ty in EventType::ALL {
                assert!(decode_any(ty.topic(), text.as_bytes()).is_err());
            }
        }
    }
    // Within the limit it decodes.
    let text = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    assert!(decode(text.as_bytes()).is_ok());
}

#[test]
fn truncations_of_a_real_state_are_errors() {
    let state = br#"{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-27T04:40:48.699730+00:00"},"originator_topic":"biomero.eventsourcing:Task","workflow_id":{"_type_":"uuid_hex","_data_":"724e55e58b044a2fa7b2cc652e955e43"},"task_name":"_SLURM_Image_Transfer.py","task_version":"1.0","input_data":{"ids":[1,2]},"params":{"x":1.5}}"#;
    let topic = EventType::TaskCreated.topic();
    assert!(decode_any(topic, state).unwrap().is_some());
    for cut in 0..state.len() {
        assert!(
            decode_any(topic, &state[..cut]).is_err(),
            "prefix of {cut} bytes decoded"
        );
    }
}

#[test]
fn huge_numbers_and_strings_decode() {
    let digits = "9".repeat(100_000);
    assert_eq!(
        decode(digits.as_bytes()).unwrap(),
        Value::BigInt(digits.clone())
    );
    let exp = format!("1e{digits}");
    assert_eq!(decode(exp.as_bytes()).unwrap(), Value::Float(f64::INFINITY));
    let long = "x".repeat(10 * 1024 * 1024);
    let text = encode(&Value::Str(long.clone()));
    assert_eq!(decode(text.as_bytes()).unwrap(), Value::Str(long));
}
