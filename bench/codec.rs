//! Codec hot path: the `state` bytes of a TaskCreated event, encoded as
//! Python writes them and decoded back into an event.

use biomero_rs::domain::events::parse_timestamp;
use biomero_rs::domain::{Event, Payload, Upcasters, Value};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::Duration;
use uuid::Uuid;

/// A TaskCreated like the ones BIOMERO writes (the example of docs/storage.md, with
/// a few more inputs and parameters).
pub fn task_created() -> Event {
    Event {
        originator_id: Uuid::parse_str("0f3c1b9e6a2d4c7f8e1a2b3c4d5e6f70").unwrap(),
        originator_version: 0,
        timestamp: parse_timestamp("2026-11-27T04:40:48.699730+00:00").unwrap(),
        payload: Payload::TaskCreated {
            workflow_id: Uuid::parse_str("724e55e58b044a2fa7b2cc652e955e43").unwrap(),
            task_name: "_SLURM_Image_Transfer.py".into(),
            task_version: "1.0".into(),
            input_data: Value::Dict(vec![
                (
                    "image_ids".into(),
                    Value::List((1..=8).map(|i| Value::Int(1000 + i)).collect()),
                ),
                ("data_type".into(), "Image".into()),
                ("email".into(), Value::Bool(false)),
            ]),
            params: Value::Dict(vec![
                ("diameter".into(), Value::Float(17.5)),
                ("use_gpu".into(), Value::Bool(true)),
                ("model_type".into(), "cyto2".into()),
            ]),
        },
    }
}

fn bench_codec(c: &mut Criterion) {
    let up = Upcasters::standard();
    let ev = task_created();
    let state = ev.encode_state(up);
    let topic = ev.topic();
    let mut g = c.benchmark_group("codec");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("encode TaskCreated state", |b| {
        b.iter(|| black_box(&ev).encode_state(up))
    });
    g.bench_function("decode TaskCreated state", |b| {
        b.iter(|| {
            Event::decode(ev.originator_id, 0, topic, black_box(&state), up)
                .unwrap()
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
