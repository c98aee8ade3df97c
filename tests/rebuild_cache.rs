//! The projection cache never changes a view row: random logs (with the odd
//! cases of old or foreign stores: tasks added to other workflows, recycled
//! and unparsable job ids, undecodable and unknown events, writers without
//! views) are projected live, one command at a time, and the rows are
//! compared with
//! - a rebuild (default cache),
//! - a rebuild with a one-entry cache and tiny batches (every entry evicted
//!   at every batch, the Bloom filter and the reads of evicted rows in use),
//! - a catch-up from notification 0 into emptied tables,
//! - a catch-up of a store whose views stopped half-way (a catch-up that
//!   does not start at notification 0),
//! - a store whose views ran with different positions (two views live, two
//!   caught up later inside a command).
//!
//! Every variant runs on SQLite and, when a server answers at
//! 127.0.0.1:5432 (user postgres, trust auth), on Postgres.

use biomero_rs::app::rebuild;
use biomero_rs::domain::{Event, Payload, Upcasters, Value};
use biomero_rs::projections::cache::Cache;
use biomero_rs::projections::{self, View};
use biomero_rs::store::{self, EventStore, StoredEvent};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use uuid::Uuid;

mod common;
use common::{tables, Db};

fn positions(s: &dyn EventStore) -> Vec<i64> {
    store::read_tx(s, |tx| projections::positions(tx, &View::ALL)).expect("positions")
}

fn max_id(s: &dyn EventStore) -> i64 {
    store::read_tx(s, |tx| tx.max_notification_id()).unwrap()
}

/// Empties the view tables and sets every position to 0.
fn reset(s: &dyn EventStore) {
    store::write_tx(s, |tx| {
        for v in View::ALL {
            tx.execute(&format!("DELETE FROM {}", v.view_table()), &[])?;
            projections::set_position(tx, v, 0)?;
        }
        Ok(())
    })
    .unwrap();
}

// ---------------------------------------------------------------- the log

/// One transaction of the log: a command whose events are projected live
/// with `views`, or events appended by a writer without views.
enum Cmd {
    Live(Vec<Event>),
    Bare(Vec<StoredEvent>),
}

fn stored(e: &Event) -> StoredEvent {
    StoredEvent {
        originator_id: e.originator_id,
        originator_version: e.originator_version,
        topic: e.topic().to_owned(),
        state: e.encode_state(Upcasters::standard()),
    }
}

struct LogGen {
    rng: StdRng,
    clock: DateTime<Utc>,
    versions: HashMap<Uuid, i64>,
    workflows: Vec<Uuid>,
    tasks: Vec<Uuid>,
}

fn s(x: &str) -> Value {
    Value::Str(x.to_owned())
}

impl LogGen {
    fn event(&mut self, origin: Uuid, payload: Payload) -> Event {
        let v = self.versions.entry(origin).or_insert(-1);
        *v += 1;
        self.clock += Duration::milliseconds(self.rng.gen_range(1..5_000));
        Event {
            originator_id: origin,
            originator_version: *v,
            timestamp: self.clock,
            payload,
        }
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.rng.gen_range(0..items.len())].clone()
    }

    fn any_workflow(&mut self) -> Uuid {
        if self.workflows.is_empty() || self.rng.gen_bool(0.03) {
            Uuid::new_v4() // never initiated
        } else {
            let w = self.workflows.clone();
            self.pick(&w)
        }
    }

    fn any_task(&mut self) -> Uuid {
        if self.tasks.is_empty() || self.rng.gen_bool(0.02) {
            Uuid::new_v4() // never created
        } else {
            // Mostly recent tasks, as in a real log.
            let n = self.tasks.len();
            let i = n - 1 - self.rng.gen_range(0..n.min(12));
            self.tasks[i]
        }
    }

    fn value(&mut self, texts: &[&str], odd: f64) -> Value {
        if self.rng.gen_bool(odd) {
            let odd = [Value::Null, Value::Int(3), Value::Float(2.5), s("")];
            self.pick(&odd)
        } else {
            s(self.pick(texts))
        }
    }

    /// The events of one command.
    fn command(&mut self) -> Vec<Event> {
        let r = self.rng.gen_range(0..100);
        match r {
            0..=5 => {
                let wf = Uuid::new_v4();
                self.workflows.push(wf);
                let user = match self.rng.gen_range(0..20) {
                    0 => Value::Null,
                    1 => Value::Int(1 << 40),
                    _ => Value::Int(self.rng.gen_range(1..5)),
                };
                let group = match self.rng.gen_range(0..20) {
                    0 => Value::Null,
                    _ => Value::Int(self.rng.gen_range(1..4)),
                };
                let name = self.value(&["wf-a", "wf-b"], 0.05);
                vec![self.event(
                    wf,
                    Payload::WorkflowInitiated {
                        name,
                        description: s("d"),
                        user,
                        group,
                    },
                )]
            }
            6..=15 => {
                let wf = self.any_workflow();
                let t = Uuid::new_v4();
                self.tasks.push(t);
                let name = if self.rng.gen_bool(0.03) {
                    Value::Int(5)
                } else {
                    let names = [
                        "_SLURM_Image_Transfer.py",
                        "convert_zarr_to_tiff",
                        "cellpose",
                        "Stardist",
                        "SLURM_Get_Results.py",
                        "SLURM_Import_Results.py",
                        "SLURM_Run_Workflow.py",
                    ];
                    s(self.pick(&names))
                };
                let task_version = self.value(&["1.0", "2"], 0.05);
                let created = self.event(
                    t,
                    Payload::TaskCreated {
                        workflow_id: wf,
                        task_name: name,
                        task_version,
                        input_data: Value::Dict(vec![]),
                        params: Value::Null,
                    },
                );
                // Mostly added to its own workflow in the same command.
                let target = if self.rng.gen_bool(0.9) {
                    wf
                } else {
                    self.any_workflow()
                };
                let mut out = vec![created];
                if self.rng.gen_bool(0.93) {
                    out.push(self.event(target, Payload::TaskAdded { task_id: t }));
                }
                out
            }
            16..=18 => {
                // A TaskAdded on its own: again, late, or of a task not yet created.
                let wf = self.any_workflow();
                let t = if self.rng.gen_bool(0.3) {
                    let t = Uuid::new_v4();
                    self.tasks.push(t);
                    t
                } else {
                    self.any_task()
                };
                vec![self.event(wf, Payload::TaskAdded { task_id: t })]
            }
            19..=25 => {
                let t = self.any_task();
                let job = self.value(
                    &["100", "101", "102", " 103 ", "12_3", "99999999999", "104"],
                    0.03,
                );
                vec![self.event(t, Payload::JobIdAdded { job_id: job })]
            }
            26..=60 => {
                let t = self.any_task();
                let status = self.value(
                    &[
                        "PENDING",
                        "RUNNING",
                        "COMPLETED",
                        "FAILED",
                        "POSTPROCESSING",
                        "JOB_STATUS",
                        "IMPORTED",
                    ],
                    0.04,
                );
                vec![self.event(t, Payload::StatusUpdated { status })]
            }
            61..=88 => {
                let t = self.any_task();
                let progress = self.value(&["10%", "43%", "50", "43.5%", "%%7%", "100%"], 0.05);
                vec![self.event(t, Payload::ProgressUpdated { progress })]
            }
            89..=92 => {
                let t = self.any_task();
                let p = match self.rng.gen_range(0..4) {
                    0 => Payload::TaskFailed {
                        error_message: self.value(&["boom", "OOM"], 0.2),
                    },
                    1 => Payload::TaskStarted,
                    2 => Payload::ResultAdded {
                        result: Value::Dict(vec![("stdout".into(), s("ok"))]),
                    },
                    _ => Payload::TaskCompleted { result: s("done") },
                };
                vec![self.event(t, p)]
            }
            _ => {
                let wf = self.any_workflow();
                let p = match self.rng.gen_range(0..3) {
                    0 => Payload::WorkflowCompleted,
                    1 => Payload::WorkflowStarted,
                    _ => Payload::WorkflowFailed {
                        error_message: s("x"),
                    },
                };
                vec![self.event(wf, p)]
            }
        }
    }

    fn log(seed: u64, commands: usize) -> Vec<Cmd> {
        let mut g = LogGen {
            rng: StdRng::seed_from_u64(seed),
            clock: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            versions: HashMap::new(),
            workflows: Vec::new(),
            tasks: Vec::new(),
        };
        let mut out = Vec::new();
        for _ in 0..commands {
            let events = g.command();
            if g.rng.gen_bool(0.12) {
                // A writer without views, sometimes with what no projector can read.
                let mut raw: Vec<StoredEvent> = events.iter().map(stored).collect();
                if g.rng.gen_bool(0.3) {
                    let t = g.any_task();
                    let v = g.versions.entry(t).or_insert(-1);
                    *v += 1;
                    let topic = if g.rng.gen_bool(0.5) {
                        "biomero.eventsourcing:Task.StatusUpdated"
                    } else {
                        "other.app:Thing.Happened"
                    };
                    raw.push(StoredEvent {
                        originator_id: t,
                        originator_version: *v,
                        topic: topic.into(),
                        state: b"{not json".to_vec(),
                    });
                }
                out.push(Cmd::Bare(raw));
            } else {
                out.push(Cmd::Live(events));
            }
        }
        out
    }
}

/// Appends `cmds` to `store`, projecting the live ones with `views`. Three
/// writers take turns, each carrying its projection cache from one command
/// to its next (so each sees the others' events as a gap to observe).
fn play(s: &dyn EventStore, cmds: &[Cmd], views: &[View]) {
    let mut carried: [Option<projections::cache::Cache>; 3] = [None, None, None];
    for (i, cmd) in cmds.iter().enumerate() {
        let mut cache = carried[i % 3].take();
        store::write_tx(s, |tx| {
            match cmd {
                Cmd::Live(events) => {
                    let raw: Vec<StoredEvent> = events.iter().map(stored).collect();
                    let (ids, positions) =
                        projections::tracking::append_and_positions(tx, views, &raw)?;
                    let new: Vec<(i64, &Event)> = ids.into_iter().zip(events.iter()).collect();
                    projections::project(tx, views, &new, positions, &mut cache)?;
                }
                Cmd::Bare(raw) => {
                    tx.append(raw)?;
                }
            }
            Ok(())
        })
        .expect("command");
        carried[i % 3] = cache;
    }
}

fn differential(seed: u64, pg: bool) {
    let Some(db) = Db::new(pg) else { return };
    let s = db.store();
    let log = LogGen::log(seed, 400);
    play(s.as_ref(), &log, &View::ALL);
    rebuild::catch_up(s.as_ref(), &View::ALL).unwrap();
    let live = tables(s.as_ref());
    assert_eq!(positions(s.as_ref()), vec![max_id(s.as_ref()); 4]);
    assert!(
        !live.tasks.is_empty() && !live.progress.is_empty() && !live.workflows.is_empty(),
        "the log projects to rows"
    );

    rebuild::rebuild(s.as_ref(), &View::ALL, None).unwrap();
    assert_eq!(tables(s.as_ref()), live, "seed {seed}: rebuild");

    let tiny = Cache::for_rebuild().with_capacity(1);
    rebuild::rebuild_with(s.as_ref(), &View::ALL, None, tiny, 7).unwrap();
    assert_eq!(
        tables(s.as_ref()),
        live,
        "seed {seed}: rebuild, one-entry cache"
    );
    assert_eq!(positions(s.as_ref()), vec![max_id(s.as_ref()); 4]);

    reset(s.as_ref());
    rebuild::catch_up(s.as_ref(), &View::ALL).unwrap();
    assert_eq!(tables(s.as_ref()), live, "seed {seed}: catch-up from 0");

    // Views that stopped half-way, then writers without them.
    let Some(db2) = Db::new(pg) else { return };
    let s2 = db2.store();
    let half = log.len() / 2;
    play(s2.as_ref(), &log[..half], &View::ALL);
    play(s2.as_ref(), &log[half..], &[]);
    rebuild::catch_up(s2.as_ref(), &View::ALL).unwrap();
    assert_eq!(
        tables(s2.as_ref()),
        live,
        "seed {seed}: catch-up from half-way"
    );

    // Two views live from the start, the other two only from half-way: the
    // first command with all four catches them up (views at different
    // positions, inside a command).
    let Some(db3) = Db::new(pg) else { return };
    let s3 = db3.store();
    play(
        s3.as_ref(),
        &log[..half],
        &[View::JobAccounting, View::WorkflowProgress],
    );
    play(s3.as_ref(), &log[half..], &View::ALL);
    rebuild::catch_up(s3.as_ref(), &View::ALL).unwrap();
    assert_eq!(
        tables(s3.as_ref()),
        live,
        "seed {seed}: views at different positions"
    );
}

#[test]
fn random_logs_sqlite() {
    for seed in 1..=6 {
        differential(seed, false);
    }
}

#[test]
fn random_logs_postgres() {
    for seed in 11..=13 {
        differential(seed, true);
    }
}
