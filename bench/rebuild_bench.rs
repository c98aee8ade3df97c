//! Rebuild benchmark: throughput and peak memory of
//! `biomero_rs::app::rebuild::rebuild` (all four views) on a generated SQLite log.
//!
//! ```text
//! cargo run --release --example rebuild_bench -- [--events N] [--dir DIR] [--sizes a,b,...] [--reuse]
//! ```
//!
//! For each size (default N/4 and N, N = 1,000,000) it
//! 1. generates a realistic log of that many events into `DIR/rebuild_bench_<n>.db`
//!    in a child process (`gen` sub-command): concurrent workflows of 4-5
//!    BIOMERO tasks each (`_SLURM_Image_Transfer.py`, an optional
//!    `convert_*` job, the workflow's own Slurm job, `SLURM_Get_Results.py`,
//!    `SLURM_Import_Results.py`), with Slurm job ids, a status and a
//!    progress update per polling interval for every running job, results,
//!    some failures; events are appended through the store's `append` in
//!    transactions of 50,000 events;
//! 2. rebuilds the views in a fresh child process (`rebuild` sub-command), so
//!    that the generator's memory does not count, and reports events,
//!    wall seconds, events/s, the rebuild's CPU seconds (user + system; on a
//!    shared machine the wall time includes waiting for a CPU) and the
//!    child's peak RSS (VmHWM), with its RSS after each tenth of the log.
//!
//! `--reuse` keeps an existing file of the right size instead of generating
//! it again. The rebuild uses the store's default (durable) settings:
//! WAL with `synchronous=FULL`, one commit per batch.

use biomero_rs::domain::{Event, Payload, Upcasters, Value};
use biomero_rs::projections::View;
use biomero_rs::store::{self, StoredEvent};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use uuid::Uuid;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen") => generate(Path::new(&args[1]), args[2].parse().expect("event count")),
        Some("rebuild") => rebuild(Path::new(&args[1])),
        _ => drive(&args),
    };
    if let Err(e) = result {
        eprintln!("rebuild_bench: {e}");
        std::process::exit(1);
    }
}

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn url_of(path: &Path, sync_normal: bool) -> String {
    format!(
        "sqlite:///{}{}",
        path.display(),
        if sync_normal {
            "?synchronous=normal"
        } else {
            ""
        }
    )
}

// ------------------------------------------------------------------ driver

fn drive(args: &[String]) -> Res<()> {
    let mut events: u64 = 1_000_000;
    let mut dir = std::env::temp_dir();
    let mut sizes: Option<Vec<u64>> = None;
    let mut reuse = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--events" => events = it.next().ok_or("--events N")?.replace('_', "").parse()?,
            "--dir" => dir = PathBuf::from(it.next().ok_or("--dir DIR")?),
            "--sizes" => {
                sizes = Some(
                    it.next()
                        .ok_or("--sizes a,b")?
                        .split(',')
                        .map(|s| s.replace('_', "").parse())
                        .collect::<std::result::Result<_, _>>()?,
                )
            }
            "--reuse" => reuse = true,
            "-h" | "--help" => {
                println!(
                    "usage: rebuild_bench [--events N] [--dir DIR] [--sizes a,b,...] [--reuse]\n\
                     default: N = 1000000, sizes N/4 and N, DIR = the temp folder"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (see --help)").into()),
        }
    }
    let sizes = sizes.unwrap_or_else(|| vec![events / 4, events]);
    let exe = std::env::current_exe()?;
    println!(
        "{:>10}  {:>9}  {:>12}  {:>11}  {:>14}  {:>12}",
        "events", "seconds", "events/s", "CPU seconds", "events/CPU-s", "peak RSS MB"
    );
    for n in sizes {
        let path = dir.join(format!("rebuild_bench_{n}.db"));
        let ready = reuse && path.exists() && count_events(&path).ok() == Some(n);
        if !ready {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            let t = Instant::now();
            let status = Command::new(&exe)
                .args(["gen", &path.display().to_string(), &n.to_string()])
                .status()?;
            if !status.success() {
                return Err(format!("generating {n} events failed").into());
            }
            eprintln!(
                "generated {n} events in {:.1} s ({})",
                t.elapsed().as_secs_f64(),
                path.display()
            );
        }
        let out = Command::new(&exe)
            .args(["rebuild", &path.display().to_string()])
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "rebuild of {n} events failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| -> Res<f64> {
            let line = text
                .lines()
                .find(|l| l.starts_with("RESULT"))
                .ok_or("no RESULT line")?;
            let v = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .ok_or_else(|| format!("no {name} in {line}"))?;
            Ok(v.parse()?)
        };
        let (done, secs, cpu, hwm) = (
            field("events")?,
            field("seconds")?,
            field("cpu_seconds")?,
            field("vmhwm_kb")?,
        );
        println!(
            "{:>10}  {:>9.2}  {:>12.0}  {:>11.2}  {:>14.0}  {:>12.1}",
            done as u64,
            secs,
            done / secs,
            cpu,
            done / cpu.max(0.01),
            hwm / 1024.0
        );
        for l in text
            .lines()
            .filter(|l| l.starts_with("ROWS") || l.starts_with("RSS_MB"))
        {
            eprintln!("  {l}");
        }
    }
    Ok(())
}

fn count_events(path: &Path) -> Res<u64> {
    let c = rusqlite::Connection::open(path)?;
    Ok(
        c.query_row("SELECT COUNT(*) FROM workflowtracker_events", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

// ----------------------------------------------------------------- rebuild

fn vm(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of this process so far (/proc/self/stat,
/// clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rebuild(path: &Path) -> Res<()> {
    let store = biomero_rs::app::db::open(&url_of(path, false))?;
    let t = Instant::now();
    let cpu0 = cpu_seconds();
    // VmRSS after each tenth of the log, to show that memory does not grow
    // with it.
    let mut trace = Vec::new();
    let mut next = 0;
    let mut progress = |done: u64, total: u64| {
        if done > 0 && done >= next {
            trace.push(format!(
                "{}k:{:.1}",
                done / 1000,
                vm("VmRSS:") as f64 / 1024.0
            ));
            next = done + total / 10;
        }
        Ok(())
    };
    let n = biomero_rs::app::rebuild::rebuild(store.as_ref(), &View::ALL, Some(&mut progress))?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!("RSS_MB {}", trace.join(" "));
    println!(
        "RESULT events={n} seconds={secs:.3} cpu_seconds={cpu:.2} vmhwm_kb={} vmrss_kb={}",
        vm("VmHWM:"),
        vm("VmRSS:")
    );
    let rows = store::read_tx(store.as_ref(), |tx| {
        let mut out = Vec::new();
        for v in View::ALL {
            let r = tx.query(
                &format!("SELECT COUNT(*) FROM {}", v.view_table()),
                &[],
                &[store::Kind::Int],
            )?;
            out.push(format!("{}={}", v.name(), r[0][0].as_i64().unwrap_or(0)));
        }
        Ok(out.join(" "))
    })?;
    println!("ROWS {rows}");
    Ok(())
}

// --------------------------------------------------------------- generator

/// One simulated workflow: its events, produced one at a time.
struct Sim {
    id: Uuid,
    queue: std::collections::VecDeque<(Uuid, Payload)>,
}

struct Gen {
    rng: StdRng,
    clock: DateTime<Utc>,
    next_job: u64,
    versions: std::collections::HashMap<Uuid, i64>,
}

const WORKFLOWS: [(&str, &str); 4] = [
    ("cellpose", "v1.2.7"),
    ("stardist", "v1.3.2"),
    ("cellexpansion", "v2.0.1"),
    ("omero-biomero-demo", "v0.9.0"),
];

fn s(x: &str) -> Value {
    Value::Str(x.to_owned())
}

impl Gen {
    fn workflow(&mut self) -> Sim {
        let wf = Uuid::new_v4();
        let (name, version) = WORKFLOWS[self.rng.gen_range(0..WORKFLOWS.len())];
        let user = self.rng.gen_range(2..60);
        let group = self.rng.gen_range(3..12);
        let mut q = std::collections::VecDeque::new();
        q.push_back((
            wf,
            Payload::WorkflowInitiated {
                name: s(name),
                description: s(&format!("Run {name} on 12 images")),
                user: Value::Int(user),
                group: Value::Int(group),
            },
        ));
        q.push_back((wf, Payload::WorkflowStarted));
        let mut tasks: Vec<(String, String, bool, u32)> =
            vec![("_SLURM_Image_Transfer.py".into(), "2.0.0".into(), false, 0)];
        if self.rng.gen_bool(0.8) {
            tasks.push((
                "convert_zarr_to_tiff".into(),
                "1.14.0".into(),
                true,
                self.rng.gen_range(3..25),
            ));
        }
        tasks.push((
            name.into(),
            version.into(),
            true,
            self.rng.gen_range(20..300),
        ));
        tasks.push(("SLURM_Get_Results.py".into(), "2.0.0".into(), false, 0));
        tasks.push(("SLURM_Import_Results.py".into(), "2.0.0".into(), false, 0));
        let fails = self.rng.gen_bool(0.05);
        for (i, (tname, tversion, slurm, polls)) in tasks.into_iter().enumerate() {
            let t = Uuid::new_v4();
            let input = Value::Dict(vec![
                (
                    "image_ids".into(),
                    Value::List((1..13).map(Value::Int).collect()),
                ),
                ("workflow".into(), s(name)),
                ("email".into(), Value::Bool(false)),
            ]);
            q.push_back((
                t,
                Payload::TaskCreated {
                    workflow_id: wf,
                    task_name: s(&tname),
                    task_version: s(&tversion),
                    input_data: input,
                    params: Value::Dict(vec![
                        ("diameter".into(), Value::Int(30)),
                        ("use_gpu".into(), Value::Bool(true)),
                    ]),
                },
            ));
            q.push_back((wf, Payload::TaskAdded { task_id: t }));
            q.push_back((t, Payload::TaskStarted));
            if slurm {
                self.next_job += 1;
                q.push_back((
                    t,
                    Payload::JobIdAdded {
                        job_id: s(&self.next_job.to_string()),
                    },
                ));
                for p in 0..polls {
                    let status = if p < polls / 10 { "PENDING" } else { "RUNNING" };
                    q.push_back((t, Payload::StatusUpdated { status: s(status) }));
                    let pct = (p * 100 / polls.max(1)).min(100);
                    q.push_back((
                        t,
                        Payload::ProgressUpdated {
                            progress: s(&format!("{pct}%")),
                        },
                    ));
                }
            } else {
                q.push_back((
                    t,
                    Payload::StatusUpdated {
                        status: s("RUNNING"),
                    },
                ));
            }
            if fails && i == 2 {
                q.push_back((
                    t,
                    Payload::StatusUpdated {
                        status: s("FAILED"),
                    },
                ));
                q.push_back((
                    t,
                    Payload::TaskFailed {
                        error_message: s("Slurm job failed: OUT_OF_MEMORY"),
                    },
                ));
                q.push_back((
                    wf,
                    Payload::WorkflowFailed {
                        error_message: s("Task failed"),
                    },
                ));
                break;
            }
            q.push_back((
                t,
                Payload::StatusUpdated {
                    status: s("COMPLETED"),
                },
            ));
            q.push_back((
                t,
                Payload::ResultAdded {
                    result: Value::Dict(vec![
                        ("command".into(), s(&format!("sbatch {tname}"))),
                        (
                            "env".into(),
                            Value::Dict(vec![("DATA_PATH".into(), s("/data/my-scratch"))]),
                        ),
                        ("stdout".into(), s("Submitted batch job; finished OK\n")),
                        ("stderr".into(), s("")),
                    ]),
                },
            ));
            q.push_back((t, Payload::TaskCompleted { result: s("done") }));
        }
        if !fails {
            q.push_back((wf, Payload::WorkflowCompleted));
        }
        Sim { id: wf, queue: q }
    }

    fn event(&mut self, origin: Uuid, payload: Payload) -> StoredEvent {
        let v = self.versions.entry(origin).or_insert(-1);
        *v += 1;
        let version = *v;
        self.clock += Duration::microseconds(self.rng.gen_range(50_000..400_000));
        let e = Event {
            originator_id: origin,
            originator_version: version,
            timestamp: self.clock,
            payload,
        };
        StoredEvent {
            originator_id: origin,
            originator_version: version,
            topic: e.topic().to_owned(),
            state: e.encode_state(Upcasters::standard()),
        }
    }
}

fn generate(path: &Path, n: u64) -> Res<()> {
    let store = biomero_rs::app::db::open(&url_of(path, true))?;
    let mut g = Gen {
        rng: StdRng::seed_from_u64(20_240_601),
        clock: Utc.with_ymd_and_hms(2024, 6, 1, 8, 0, 0).unwrap(),
        next_job: 4_100_000,
        versions: Default::default(),
    };
    // About 40 workflows run at once; each event comes from a random one.
    let mut active: Vec<Sim> = (0..40).map(|_| g.workflow()).collect();
    let mut written = 0u64;
    while written < n {
        let chunk = (n - written).min(50_000);
        let mut events = Vec::with_capacity(chunk as usize);
        while (events.len() as u64) < chunk {
            let i = g.rng.gen_range(0..active.len());
            let (origin, payload) = active[i].queue.pop_front().expect("not empty");
            events.push(g.event(origin, payload));
            if active[i].queue.is_empty() {
                active[i] = g.workflow();
            }
        }
        store::write_tx(store.as_ref(), |tx| tx.append(&events))?;
        written += chunk;
        // Finished aggregates never get events again: forget their versions.
        if g.versions.len() > 200_000 {
            let live: std::collections::HashSet<Uuid> = active
                .iter()
                .flat_map(|a| a.queue.iter().map(|(id, _)| *id).chain([a.id]))
                .collect();
            g.versions.retain(|id, _| live.contains(id));
        }
    }
    Ok(())
}
