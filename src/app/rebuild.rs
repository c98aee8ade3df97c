//! Operator work on the views: rebuild from the first event, catch up after
//! events written elsewhere, and report where everything stands.
//!
//! Rebuild streams the log in batches (memory does not grow with the log).
//! On SQLite each batch commits with its tracking rows, so an interrupted
//! rebuild resumes with a catch-up. On Postgres the whole rebuild is one
//! transaction: readers keep seeing the old rows until it commits, and
//! writers wait for it (they queue on the event table's lock).
//!
//! The projectors run with a [`Cache`] of bounded size: the facts they look
//! up and the rows they change stay in memory and each batch ends with one
//! write per changed row. On SQLite the same cache serves every batch
//! although each batch commits: the rebuild applies every event in id order
//! up to the end it fixed at the start, the facts describe the log up to the
//! event being applied, and events appended meanwhile by other writers get
//! higher ids than that end (the final catch-up applies them). View rows that
//! such writers change between two batches are overwritten by the rebuild,
//! as without the cache, and the final catch-up reapplies every event after
//! the end in order (see `projections::cache` for the whole argument).

use crate::error::Result;
use crate::projections::cache::Cache;
use crate::projections::{self, View};
use crate::store::{self, Backend, EventStore, Kind, Sql, Tx};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Events a rebuild applies per batch (and per commit on SQLite).
pub const REBUILD_BATCH: usize = 10_000;

/// Progress callback: `(done, total)` events; an error stops the rebuild
/// (work committed so far stays, and a catch-up finishes it).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64) -> Result<()>;

fn reset(tx: &mut dyn Tx, views: &[View]) -> Result<()> {
    tx.lock_log()?;
    for v in views {
        tx.execute(&format!("DELETE FROM {}", v.view_table()), &[])?;
        projections::set_position(tx, *v, 0)?;
    }
    Ok(())
}

/// Applies the next batch after `positions` and writes its rows; returns the
/// events read.
pub(crate) fn step(
    tx: &mut dyn Tx,
    cache: &mut Cache,
    views: &[View],
    positions: &mut [i64],
    upto: i64,
    batch: usize,
) -> Result<u64> {
    let (count, _) = projections::dispatch::apply_next(tx, cache, views, positions, upto, batch)?;
    cache.flush(tx)?;
    if count == 0 {
        positions.iter_mut().for_each(|p| *p = (*p).max(upto));
    }
    for (v, p) in views.iter().zip(positions.iter()) {
        projections::set_position(tx, *v, *p)?;
    }
    Ok(count as u64)
}

fn count_between(tx: &mut dyn Tx, after: i64, upto: i64) -> Result<u64> {
    let rows = tx.query(
        &format!(
            "SELECT COUNT(*) FROM {} WHERE id > $1 AND id <= $2",
            store::schema::EVENTS_TABLE
        ),
        &[Sql::Int(after), Sql::Int(upto)],
        &[Kind::Int],
    )?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64)
}

/// The stored events after `start` up to `upto` (all of them from 0).
fn count_from(tx: &mut dyn Tx, start: i64, upto: i64) -> Result<u64> {
    if start == 0 {
        count_events(tx)
    } else {
        count_between(tx, start, upto)
    }
}

/// Every stored event. (No `WHERE` on id: SQLite then counts the entries of
/// the smallest index instead of reading the whole table.)
fn count_events(tx: &mut dyn Tx) -> Result<u64> {
    let rows = tx.query(
        &format!("SELECT COUNT(*) FROM {}", store::schema::EVENTS_TABLE),
        &[],
        &[Kind::Int],
    )?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64)
}

/// Empties the views' tables and replays every event from notification 1.
/// Returns the number of events replayed.
pub fn rebuild(
    store: &dyn EventStore,
    views: &[View],
    progress: Option<Progress<'_>>,
) -> Result<u64> {
    rebuild_with(store, views, progress, Cache::for_rebuild(), REBUILD_BATCH)
}

/// The timestamp of a stored event: read straight from the state's
/// `"timestamp": {"_type_": "datetime_iso", "_data_": "..."}` where it has
/// that form, else by decoding the event.
fn event_time(n: &crate::store::NotificationRef<'_>) -> Option<DateTime<Utc>> {
    fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from + needle.len())
    }
    let quick = find(n.state, b"\"timestamp\"", 0)
        .and_then(|at| find(n.state, b"\"_data_\":\"", at))
        .and_then(|start| {
            let len = n.state.get(start..)?.iter().position(|b| *b == b'"')?;
            let text = std::str::from_utf8(&n.state[start..start + len]).ok()?;
            crate::domain::events::parse_timestamp(text)
        });
    quick.or_else(|| projections::decode::decode_ref(n).map(|e| e.timestamp))
}

/// The first notification (lowest id) whose event's timestamp is at or
/// after `cutoff`, as the reference's SlurmClient finds it (`MIN(id) ...
/// WHERE timestamp >= cutoff`), on both backends; `None` when there is none.
/// Reads the log from the start and stops at the first match.
pub fn first_at_or_after(tx: &mut dyn Tx, cutoff: DateTime<Utc>) -> Result<Option<i64>> {
    let mut after = 0;
    loop {
        let mut found = None;
        let (count, last) = tx.scan_notifications(after, None, REBUILD_BATCH, &mut |n| {
            if found.is_none() && event_time(n).is_some_and(|t| t >= cutoff) {
                found = Some(n.id);
            }
        })?;
        if found.is_some() {
            return Ok(found);
        }
        match last {
            Some(last) if count > 0 => after = last,
            _ => return Ok(None),
        }
    }
}

/// A partial rebuild from a cutoff: empties the views' tables and applies
/// every event from the first one whose timestamp is at or after `since`
/// (that event included), while the facts a projector looks up (a task's
/// TaskCreated, a workflow's owner) still come from the whole log. A cutoff
/// after the last event means a full replay (as in the reference). Returns
/// the number of events applied.
pub fn rebuild_since(
    store: &dyn EventStore,
    views: &[View],
    progress: Option<Progress<'_>>,
    since: DateTime<Utc>,
) -> Result<u64> {
    crate::migrations::ensure_view_tables_in(store)?;
    let first = store::read_tx(store, |tx| first_at_or_after(tx, since))?.unwrap_or(1);
    log::info!("biomero_rs rebuild: cutoff {since} -> from notification {first}");
    rebuild_from(store, views, progress, first)
}

/// Empties the views' tables and applies every event from notification
/// `first` on (1: a full rebuild). Returns the number of events applied.
pub fn rebuild_from(
    store: &dyn EventStore,
    views: &[View],
    progress: Option<Progress<'_>>,
    first: i64,
) -> Result<u64> {
    let start = first.max(1) - 1;
    rebuild_range(
        store,
        views,
        progress,
        Cache::for_rebuild_from(start),
        REBUILD_BATCH,
        start,
    )
}

/// [`rebuild`] with a given cache and batch size (tests use tiny ones to
/// exercise eviction); `cache` must come from [`Cache::for_rebuild`].
#[doc(hidden)]
pub fn rebuild_with(
    store: &dyn EventStore,
    views: &[View],
    progress: Option<Progress<'_>>,
    cache: Cache,
    batch: usize,
) -> Result<u64> {
    rebuild_range(store, views, progress, cache, batch, 0)
}

/// Empties the views' tables and applies the events after notification
/// `start` (positions start there), with `cache` from
/// [`Cache::for_rebuild_from`]`(start)`.
fn rebuild_range(
    store: &dyn EventStore,
    views: &[View],
    progress: Option<Progress<'_>>,
    mut cache: Cache,
    batch: usize,
    start: i64,
) -> Result<u64> {
    crate::migrations::ensure_view_tables_in(store)?;
    let mut progress = progress;
    let mut report = |done: u64, total: u64| -> Result<()> {
        match progress.as_mut() {
            Some(p) => p(done, total),
            None => Ok(()),
        }
    };
    match store.backend() {
        Backend::Postgres => store::write_tx(store, |tx| {
            reset(tx, views)?;
            let upto = tx.max_notification_id()?;
            let total = count_from(tx, start, upto)?;
            let mut positions = vec![start.min(upto); views.len()];
            let mut done = 0;
            report(0, total)?;
            while positions.iter().any(|p| *p < upto) {
                crate::sys::interrupt::check()?; // rolls the whole rebuild back
                done += step(tx, &mut cache, views, &mut positions, upto, batch)?;
                report(done, total)?;
            }
            Ok(done)
        }),
        Backend::Sqlite => {
            // Commands that run meanwhile leave their events to this
            // rebuild's final catch-up instead of doing its work.
            let _running = store.rebuild_guard()?;
            let (upto, total) = store::write_tx(store, |tx| {
                reset(tx, views)?;
                let upto = tx.max_notification_id()?;
                Ok((upto, count_from(tx, start, upto)?))
            })?;
            report(0, total)?;
            let mut positions = vec![start.min(upto); views.len()];
            let mut done = 0;
            while positions.iter().any(|p| *p < upto) {
                // Batches committed so far stay; a catch-up finishes.
                crate::sys::interrupt::check()?;
                done += store::write_tx(store, |tx| {
                    let mut p = positions.clone();
                    let n = step(tx, &mut cache, views, &mut p, upto, batch)?;
                    positions = p;
                    Ok(n)
                })?;
                report(done, total)?;
                // Room for commands waiting for the write lock (they poll).
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            // Events appended meanwhile by writers without these views.
            let late = store::write_tx(store, |tx| projections::catch_up(tx, views))?;
            Ok(done + late)
        }
    }
}

/// Applies the events after each view's tracking position.
pub fn catch_up(store: &dyn EventStore, views: &[View]) -> Result<u64> {
    crate::migrations::ensure_view_tables_in(store)?;
    store::write_tx(store, |tx| projections::catch_up(tx, views))
}

/// Where the log and each projector stand.
#[derive(Debug, Clone)]
pub struct Status {
    pub backend: &'static str,
    pub url: String,
    pub events: u64,
    pub max_notification_id: i64,
    pub topics: BTreeMap<String, u64>,
    /// (view name, tracking position, lag in events)
    pub views: Vec<(&'static str, i64, u64)>,
}

pub fn status(store: &dyn EventStore) -> Result<Status> {
    store::read_tx(store, |tx| {
        let max = tx.max_notification_id()?;
        let mut topics = BTreeMap::new();
        let mut events = 0;
        for row in tx.query(
            &format!(
                "SELECT topic, COUNT(*) FROM {} GROUP BY topic ORDER BY topic",
                store::schema::EVENTS_TABLE
            ),
            &[],
            &[Kind::Text, Kind::Int],
        )? {
            let n = row[1].as_i64().unwrap_or(0) as u64;
            events += n;
            topics.insert(row[0].as_str().unwrap_or_default().to_owned(), n);
        }
        let mut views = Vec::new();
        for v in View::ALL {
            let pos = if tx.table_exists(v.tracking_table())? {
                projections::position(tx, v)?
            } else {
                0
            };
            views.push((v.name(), pos, count_between(tx, pos, max)?));
        }
        Ok(Status {
            backend: store.backend().name(),
            url: store.masked_url(),
            events,
            max_notification_id: max,
            topics,
            views,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_are_read_from_the_state() {
        let state = br#"{"timestamp":{"_type_":"datetime_iso","_data_":"2024-06-01T08:00:00.250000+00:00"},"status":"RUNNING"}"#;
        let n = crate::store::NotificationRef {
            id: 1,
            originator_id: uuid::Uuid::from_u128(1),
            originator_version: 1,
            topic: "biomero.eventsourcing:Task.StatusUpdated",
            state,
        };
        let t = event_time(&n).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-06-01T08:00:00.250+00:00");
        let broken = crate::store::NotificationRef { state: b"{}", ..n };
        assert_eq!(event_time(&broken), None);
    }
}
