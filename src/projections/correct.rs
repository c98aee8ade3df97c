//! Correction of the view rows after another writer.
//!
//! Python BIOMERO 2.8.3 with its listeners projects events too, and its rows
//! can be wrong (it delays some writes until a later event and keeps facts in
//! process memory; docs/projections.md, "Rules for every view"). Its
//! tracking rows then say the events were projected, so a plain catch-up
//! would never revisit them.
//!
//! biomero_rs therefore records, next to each projector's tracking row
//! (application name `WorkflowTracker`, which Python reads and writes), a
//! second row under the application name
//! [`OWN_APPLICATION`](crate::projections::tracking::OWN_APPLICATION) holding how far
//! biomero_rs itself projected. Python's recorder only reads its own
//! application's row, so it ignores this one. Every position biomero_rs
//! writes, it writes to both rows (in one statement).
//!
//! When the `WorkflowTracker` row is ahead of the `biomero_rs` row, the
//! events in between were projected by someone else. [`correct`] then takes
//! the aggregates those events touched, closes the set over what their rows
//! depend on (a task's workflow, a workflow's tasks, the tasks that share a
//! Slurm job id row), deletes the rows of that set and applies every event
//! of those aggregates again in log order, with the usual lookups (facts as
//! of each event). Its cost is proportional to the events of the affected
//! aggregates, not to the log. When the `WorkflowTracker` row is behind the
//! `biomero_rs` row, someone rewound it (BIOMERO's reset drops and replays),
//! and everything up to it counts as foreign.

use crate::domain::{Event, Payload};
use crate::error::Result;
use crate::projections::apply::apply_one;
use crate::projections::cache::{Cache, Mode};
use crate::projections::convert;
use crate::projections::decode::decode_ref;
use crate::projections::registry::View;
use crate::projections::tracking::set_position;
use crate::projections::view::{self, Keyed};
use crate::store::{Kind, Sql, Tx};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use uuid::Uuid;

/// Stored events read per query while the touched aggregates are collected.
const SCAN: usize = 10_000;

/// Events of the affected aggregates applied between two flushes.
const FLUSH_EVERY: usize = 10_000;

/// The first notification id that `view` may not have projected itself:
/// events in `(foreign_from, std]` were projected by another writer.
fn foreign_from(std: i64, own: i64) -> i64 {
    if own > std {
        0
    } else {
        own
    }
}

/// Whether any of the views has rows projected by another writer.
pub fn needed(std: &[i64], own: &[i64]) -> bool {
    std.iter().zip(own).any(|(s, o)| *s > foreign_from(*s, *o))
}

/// What one aggregate's events say about the rows that depend on it.
#[derive(Default)]
struct Closure {
    workflows: BTreeSet<Uuid>,
    tasks: BTreeSet<Uuid>,
    jobs: BTreeSet<i32>,
    /// Every decodable event of the affected aggregates, by notification id.
    events: Vec<(i64, Event)>,
}

/// Re-derives the rows of the views whose `WorkflowTracker` position
/// (`std`) is ahead of biomero_rs's own (`own`), for the aggregates touched
/// by the events in between; then records both positions as biomero_rs's.
/// Runs in the caller's transaction, which holds the log's lock. Returns the
/// number of events applied again.
pub fn correct(tx: &mut dyn Tx, views: &[View], std: &[i64], own: &[i64]) -> Result<u64> {
    let foreign: Vec<(View, i64, i64)> = views
        .iter()
        .zip(std.iter().zip(own))
        .filter_map(|(v, (s, o))| {
            let from = foreign_from(*s, *o);
            (*s > from).then_some((*v, from, *s))
        })
        .collect();
    if foreign.is_empty() {
        return Ok(0);
    }
    let lo = foreign.iter().map(|f| f.1).min().unwrap_or(0);
    let hi = foreign.iter().map(|f| f.2).max().unwrap_or(0);

    // The aggregates the foreign events touched.
    let mut touched: HashSet<Uuid> = HashSet::new();
    let mut after = lo;
    loop {
        let (count, last) = tx.scan_notifications(after, Some(hi), SCAN, &mut |n| {
            touched.insert(n.originator_id);
        })?;
        match last {
            Some(last) if count > 0 => after = last,
            _ => break,
        }
    }
    let closure = close(tx, touched)?;
    log::info!(
        "biomero_rs: events {}..={hi} were projected by another writer; re-deriving the rows of \
         {} workflows, {} tasks and {} Slurm jobs ({} events)",
        lo + 1,
        closure.workflows.len(),
        closure.tasks.len(),
        closure.jobs.len(),
        closure.events.len()
    );

    for (view, _, _) in &foreign {
        let spec = view.spec();
        let keys: Vec<Sql> = match spec.keyed_by {
            Keyed::Job => closure.jobs.iter().map(|j| Sql::Int(*j as i64)).collect(),
            Keyed::Workflow => closure.workflows.iter().map(|w| Sql::Uuid(*w)).collect(),
            Keyed::Task => closure.tasks.iter().map(|t| Sql::Uuid(*t)).collect(),
        };
        let sql = view::delete_sql(spec);
        for k in &keys {
            tx.execute(&sql, std::slice::from_ref(k))?;
        }
    }

    let mut cache = Cache::new(Mode::Batch, lo.max(1));
    let zeros = vec![0i64; views.len()];
    let mut since_flush = 0;
    for (id, ev) in &closure.events {
        let now: Vec<View> = foreign.iter().filter(|f| *id <= f.2).map(|f| f.0).collect();
        if now.is_empty() {
            cache.observe(*id, ev);
            continue;
        }
        apply_one(tx, &mut cache, &now, &zeros[..now.len()], *id, ev)?;
        since_flush += 1;
        if since_flush >= FLUSH_EVERY {
            cache.flush(tx)?;
            since_flush = 0;
        }
    }
    cache.flush(tx)?;
    for (view, _, s) in &foreign {
        set_position(tx, *view, *s)?;
    }
    Ok(closure.events.len() as u64)
}

/// Closes `touched` over the rows that depend on each other: a task's
/// workflow (its TaskCreated), a workflow's tasks (its TaskAdded events),
/// the task whose job-id row a task's Slurm job shares. Loads every event of
/// the closure.
fn close(tx: &mut dyn Tx, touched: HashSet<Uuid>) -> Result<Closure> {
    let mut out = Closure::default();
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut queue: VecDeque<Uuid> = touched.into_iter().collect();
    let mut jobs_asked: HashSet<i32> = HashSet::new();
    let mut by_id: HashMap<i64, Event> = HashMap::new();
    while let Some(id) = queue.pop_front() {
        if !seen.insert(id) {
            continue;
        }
        let mut found: Vec<(i64, Event)> = Vec::new();
        tx.scan_events(id, 0, &mut |n| {
            if let Some(ev) = decode_ref(n) {
                found.push((n.id, ev));
            }
            Ok(())
        })?;
        let mut new_jobs = Vec::new();
        for (_, ev) in &found {
            match &ev.payload {
                Payload::WorkflowInitiated { .. } => {
                    out.workflows.insert(id);
                }
                Payload::TaskAdded { task_id } => {
                    out.workflows.insert(id);
                    queue.push_back(*task_id);
                }
                Payload::TaskCreated { workflow_id, .. } => {
                    out.tasks.insert(id);
                    queue.push_back(*workflow_id);
                }
                Payload::JobIdAdded { job_id } => {
                    out.tasks.insert(id);
                    if let Ok(j) = convert::job_id_column(job_id) {
                        out.jobs.insert(j);
                        if jobs_asked.insert(j) {
                            new_jobs.push(j);
                        }
                    }
                }
                _ => {}
            }
        }
        // The task that holds a shared Slurm id's row now.
        for j in new_jobs {
            for t in job_holders(tx, j)? {
                queue.push_back(t);
            }
        }
        by_id.extend(found);
    }
    let mut events: Vec<(i64, Event)> = by_id.into_iter().collect();
    events.sort_by_key(|(id, _)| *id);
    out.events = events;
    Ok(out)
}

/// The tasks that the rows of Slurm job `job` name now (in the views keyed
/// by job that record the job's task).
fn job_holders(tx: &mut dyn Tx, job: i32) -> Result<Vec<uuid::Uuid>> {
    let mut out = Vec::new();
    for v in View::ALL {
        let spec = v.spec();
        let (Keyed::Job, Some(column)) = (spec.keyed_by, spec.task_column) else {
            continue;
        };
        let rows = tx.query(
            &format!(
                "SELECT \"{column}\" FROM {} WHERE {} = $1",
                spec.table,
                spec.key().ident()
            ),
            &[Sql::Int(job.into())],
            &[Kind::Uuid],
        )?;
        out.extend(rows.iter().filter_map(|r| r[0].as_uuid()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_ranges() {
        // biomero_rs projected everything itself.
        assert!(!needed(&[7, 7], &[7, 7]));
        // A fresh database: nothing projected by anyone.
        assert!(!needed(&[0], &[0]));
        // Another writer advanced the WorkflowTracker row past ours.
        assert!(needed(&[9, 7], &[7, 7]));
        assert_eq!(foreign_from(9, 7), 7);
        // No own row yet (Python's database): everything it projected.
        assert!(needed(&[5], &[0]));
        assert_eq!(foreign_from(5, 0), 0);
        // The WorkflowTracker row was rewound (BIOMERO's reset): all of it.
        assert!(needed(&[3], &[8]));
        assert_eq!(foreign_from(3, 8), 0);
    }
}
