//! Aggregate load: a Task with 1,000 events (TaskCreated + 999
//! ProgressUpdated) decoded from its stored rows and replayed, in memory, and
//! through `Tracker::get` on an SQLite file (the SELECT included). The parts
//! are measured too (decode only, replay only, the SELECT only), so that a
//! regression shows where it is.

use biomero_rs::domain::{Aggregate, Event, Payload, Upcasters, Value};
use biomero_rs::store::StoredEvent;
use biomero_rs::Tracker;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::Duration;

const EVENTS: usize = 1000;

fn stored_task(up: &Upcasters) -> Vec<StoredEvent> {
    let created = biomero_rs::domain::aggregates::create_event(Payload::TaskCreated {
        workflow_id: uuid::Uuid::new_v4(),
        task_name: "cellpose".into(),
        task_version: "1.0".into(),
        input_data: Value::Dict(vec![(
            "image_ids".into(),
            Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
        )]),
        params: Value::Dict(vec![("d".into(), Value::Float(1.5))]),
    });
    let mut agg = Aggregate::replay([created.clone()]).unwrap().unwrap();
    let mut events = vec![created];
    for i in 1..EVENTS {
        let e = agg
            .trigger(Payload::ProgressUpdated {
                progress: Value::Str(format!("{}%", i % 100)),
            })
            .unwrap();
        agg.apply(&e).unwrap();
        events.push(e);
    }
    events
        .iter()
        .map(|e| StoredEvent {
            originator_id: e.originator_id,
            originator_version: e.originator_version,
            topic: e.topic().to_owned(),
            state: e.encode_state(up),
        })
        .collect()
}

fn load(stored: &[StoredEvent], up: &Upcasters) -> Aggregate {
    let events = stored.iter().map(|s| {
        Event::decode(
            s.originator_id,
            s.originator_version,
            &s.topic,
            &s.state,
            up,
        )
        .unwrap()
        .unwrap()
    });
    Aggregate::replay(events).unwrap().unwrap()
}

fn bench_load(c: &mut Criterion) {
    let up = Upcasters::standard();
    let stored = stored_task(up);
    let mut g = c.benchmark_group("aggregate load, 1000 events");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("decode + replay (memory)", |b| {
        b.iter(|| load(black_box(&stored), up))
    });
    g.bench_function("decode only (memory)", |b| {
        b.iter(|| {
            stored
                .iter()
                .map(|s| {
                    Event::decode(
                        s.originator_id,
                        s.originator_version,
                        &s.topic,
                        &s.state,
                        up,
                    )
                    .unwrap()
                    .unwrap()
                })
                .collect::<Vec<_>>()
        })
    });
    let decoded: Vec<Event> = stored
        .iter()
        .map(|s| {
            Event::decode(
                s.originator_id,
                s.originator_version,
                &s.topic,
                &s.state,
                up,
            )
            .unwrap()
            .unwrap()
        })
        .collect();
    g.bench_function("replay only (memory)", |b| {
        b.iter_batched(
            || decoded.clone(),
            |events| Aggregate::replay(events).unwrap().unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });

    // The same task through the tracker on an SQLite file.
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite:///{}?synchronous=normal",
        dir.path().join("load.db").display()
    );
    let t = Tracker::open(Some(&url), vec![]).unwrap();
    let wf = t
        .initiate_workflow("load".into(), Value::Null, 1, 1)
        .unwrap();
    let task = t
        .add_task_to_workflow(
            wf,
            "cellpose".into(),
            "1.0".into(),
            Value::Null,
            Value::Null,
        )
        .unwrap();
    for i in 1..EVENTS {
        t.update_task_progress(task, Value::Str(format!("{}%", i % 100)))
            .unwrap();
    }
    assert_eq!(t.get(task).unwrap().version(), (EVENTS - 1) as i64);
    g.bench_function("Tracker::get (SQLite file)", |b| {
        b.iter(|| t.get(black_box(task)).unwrap())
    });
    let store = t.store().clone();
    g.bench_function("SELECT of the 1000 rows only (SQLite file)", |b| {
        b.iter(|| {
            biomero_rs::store::read_tx(store.as_ref(), |tx| tx.load_events(black_box(task)))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_load);
criterion_main!(benches);
