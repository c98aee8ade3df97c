//! Projector dispatch: commands through `biomero_rs::Tracker` on an SQLite
//! file, each one transaction that appends its event(s) and runs the view
//! projectors. One iteration = one command of a repeating workflow life
//! cycle (initiate, start, add task, start task, job id, PENDING, RUNNING,
//! three progress updates, COMPLETED, complete task, complete workflow), so
//! aggregates stay small however many iterations criterion runs.
//!
//! Measured with all four views and with none (the difference is the
//! projectors' cost), on `synchronous=normal` (CPU and SQL, no fsync) and on
//! the durable default (`synchronous=FULL`, one fsync per command). The raw
//! limit of the same SQLite library and settings is measured alongside: one
//! single-row INSERT per transaction into a table shaped like the events
//! table.

use biomero_rs::domain::Value;
use biomero_rs::projections::View;
use biomero_rs::Tracker;
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;
use uuid::Uuid;

struct Cycle {
    step: usize,
    wf: Uuid,
    task: Uuid,
    job: i64,
}

impl Cycle {
    const STEPS: usize = 13;

    fn new() -> Cycle {
        Cycle {
            step: 0,
            wf: Uuid::nil(),
            task: Uuid::nil(),
            job: 2_000_000,
        }
    }

    fn next(&mut self, t: &Tracker) {
        let s = |x: &str| Value::Str(x.to_owned());
        match self.step {
            0 => self.wf = t.initiate_workflow("bench".into(), s("d"), 3, 7).unwrap(),
            1 => t.start_workflow(self.wf).unwrap(),
            2 => {
                let input = Value::Dict(vec![(
                    "image_ids".into(),
                    Value::List(vec![Value::Int(1), Value::Int(2)]),
                )]);
                self.task = t
                    .add_task_to_workflow(
                        self.wf,
                        "cellpose".into(),
                        s("1.0"),
                        input,
                        Value::Dict(vec![]),
                    )
                    .unwrap()
            }
            3 => t.start_task(self.task).unwrap(),
            4 => {
                self.job += 1;
                t.add_job_id(self.task, self.job.to_string().into())
                    .unwrap()
            }
            5 => t.update_task_status(self.task, s("PENDING")).unwrap(),
            6 => t.update_task_status(self.task, s("RUNNING")).unwrap(),
            7 => t.update_task_progress(self.task, s("25%")).unwrap(),
            8 => t.update_task_progress(self.task, s("60%")).unwrap(),
            9 => t.update_task_progress(self.task, s("100%")).unwrap(),
            10 => t.update_task_status(self.task, s("COMPLETED")).unwrap(),
            11 => t.complete_task(self.task, s("done")).unwrap(),
            _ => t.complete_workflow(self.wf).unwrap(),
        }
        self.step = (self.step + 1) % Self::STEPS;
    }
}

fn bench_dispatch(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("command (per command)");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let cases: [(&str, &str, Vec<View>); 4] = [
        (
            "all views, synchronous=normal",
            "?synchronous=normal",
            View::ALL.to_vec(),
        ),
        (
            "no views, synchronous=normal",
            "?synchronous=normal",
            vec![],
        ),
        ("all views, synchronous=FULL", "", View::ALL.to_vec()),
        ("no views, synchronous=FULL", "", vec![]),
    ];
    for (i, (name, query, views)) in cases.into_iter().enumerate() {
        let url = format!(
            "sqlite:///{}{query}",
            dir.path().join(format!("dispatch{i}.db")).display()
        );
        let t = Tracker::open(Some(&url), views).unwrap();
        let mut cycle = Cycle::new();
        g.bench_function(name, |b| b.iter(|| cycle.next(&t)));
    }
    for (i, sync) in ["NORMAL", "FULL"].into_iter().enumerate() {
        let conn = rusqlite::Connection::open(dir.path().join(format!("raw{i}.db"))).unwrap();
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync};
             CREATE TABLE raw_events (id INTEGER PRIMARY KEY, originator_id BINARY(16) NOT NULL,
               originator_version INTEGER NOT NULL, topic TEXT NOT NULL, state BLOB NOT NULL);
             CREATE UNIQUE INDEX raw_events_idx ON raw_events (originator_id, originator_version);"
        ))
        .unwrap();
        let state = br#"{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-27T04:40:48.699730+00:00"},"progress":"42%"}"#;
        g.bench_function(
            format!("raw single-row INSERT, WAL synchronous={sync}"),
            |b| {
                b.iter(|| {
                    let mut stmt = conn
                    .prepare_cached(
                        "INSERT INTO raw_events (originator_id, originator_version, topic, state) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .unwrap();
                    stmt.execute(rusqlite::params![
                        &Uuid::new_v4().as_bytes()[..],
                        0i64,
                        "biomero.eventsourcing:Task.ProgressUpdated",
                        &state[..]
                    ])
                    .unwrap();
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench_dispatch);
criterion_main!(benches);
