//! Operator work on the views: rebuild from the first event (or from a
//! cutoff), catch up after events written elsewhere, and report where
//! everything stands.
//!
//! A rebuild runs on a connection of its own and fills temporary tables of
//! the views' names beside the live ones (`app::shadow`), in batches that
//! take no lock other writers wait for: commands go on meanwhile and keep
//! projecting into the live tables, and dashboards keep reading them. When
//! the log's end is reached, the rebuild follows what was appended meanwhile
//! and then, in one transaction that holds the log's lock, applies the last
//! events and makes the live rows equal to the shadow's (writing only the
//! rows that differ) with the tracking positions at the log's end. Until
//! that commit the live tables are exactly as before; an interrupted
//! rebuild (Ctrl-C, kill -9, a lost connection) leaves nothing to clean up
//! and nothing to catch up. One rebuild at a time runs per database (the
//! session's rebuild lock); a second waits, or is refused naming the first.
//!
//! The projectors run with one [`Cache`] of bounded size across the
//! batches: the facts they look up and the rows they change stay in memory
//! and each batch ends with one write per changed row. The cache stays valid
//! across the batches' commits because the rebuild applies every event in id
//! order, the events it reads are final (committed, below every id a writer
//! can still get) and nobody else writes the shadow tables (see
//! `projections::cache`).

use crate::app::shadow::Shadow;
use crate::error::Result;
use crate::projections::cache::Cache;
use crate::projections::{self, View};
use crate::store::session::{locked_tx, quiet_tx, Session};
use crate::store::{self, EventStore, Kind, Sql, Tx};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Events a rebuild applies per batch (and per transaction).
pub const REBUILD_BATCH: usize = 10_000;

/// When fewer new events than this were appended while the rebuild read
/// the log, it switches (applying them under the log's lock); otherwise it
/// reads them first, without the lock.
const SWITCH_GAP: i64 = 2_000;

/// At most this many rounds of reading what was appended meanwhile (a log
/// written faster than the rebuild reads it would otherwise never end).
const MAX_ROUNDS: usize = 8;

/// Progress callback: `(done, total)` events; an error stops the rebuild
/// (the live tables stay as they were).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64) -> Result<()>;

/// Where a rebuild starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// From the first event.
    All,
    /// From the first event whose timestamp is at or after the cutoff.
    Since(DateTime<Utc>),
    /// From this notification id (included).
    From(i64),
}

/// Applies the next batch after `positions` (at most `batch` events, up
/// to `upto`) and writes the rows it changed; returns the events read.
fn advance(
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
    Ok(count as u64)
}

/// [`advance`], then the tracking positions (verify's rebuild into
/// temporary tracking tables).
pub(crate) fn step(
    tx: &mut dyn Tx,
    cache: &mut Cache,
    views: &[View],
    positions: &mut [i64],
    upto: i64,
    batch: usize,
) -> Result<u64> {
    let count = advance(tx, cache, views, positions, upto, batch)?;
    for (v, p) in views.iter().zip(positions.iter()) {
        projections::set_position(tx, *v, *p)?;
    }
    Ok(count)
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

/// Rebuilds the views from the first event (waiting for another rebuild
/// of the database to end). Returns the number of events applied.
pub fn rebuild(
    store: &dyn EventStore,
    views: &[View],
    progress: Option<Progress<'_>>,
) -> Result<u64> {
    run(store, views, Start::All, progress, true)
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

/// A partial rebuild from a cutoff: the views get the rows of every event
/// from the first one whose timestamp is at or after `since` (that event
/// included), while the facts a projector looks up (a task's TaskCreated, a
/// workflow's owner) still come from the whole log. A cutoff after the last
/// event means a full replay (as in the reference). Returns the number of
/// events applied.
pub fn rebuild_since(
    store: &dyn EventStore,
    views: &[View],
    progress: Option<Progress<'_>>,
    since: DateTime<Utc>,
) -> Result<u64> {
    run(store, views, Start::Since(since), progress, true)
}

/// Rebuilds the views from the events from notification `first` on (1: a
/// full rebuild). Returns the number of events applied.
pub fn rebuild_from(
    store: &dyn EventStore,
    views: &[View],
    progress: Option<Progress<'_>>,
    first: i64,
) -> Result<u64> {
    run(store, views, Start::From(first), progress, true)
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
    rebuild_in(store, views, Start::All, Some(cache), batch, true, progress)
}

/// Rebuilds `views` beside the live tables from `start` and switches them
/// at once (see the module documentation). With `wait`, waits for another
/// rebuild of the database to end; without, fails naming it. Returns the
/// number of events applied.
pub fn run(
    store: &dyn EventStore,
    views: &[View],
    start: Start,
    progress: Option<Progress<'_>>,
    wait: bool,
) -> Result<u64> {
    rebuild_in(store, views, start, None, REBUILD_BATCH, wait, progress)
}

fn rebuild_in(
    store: &dyn EventStore,
    views: &[View],
    start: Start,
    cache: Option<Cache>,
    batch: usize,
    wait: bool,
    progress: Option<Progress<'_>>,
) -> Result<u64> {
    crate::migrations::ensure_view_tables_in(store)?;
    if views.is_empty() {
        return Ok(0);
    }
    let mut session = store.session()?;
    let session = session.as_mut();
    session.lock_rebuild(wait)?;
    let shadow = quiet_tx(session, |tx| Shadow::create(tx, views))?;
    let result = build_and_switch(session, &shadow, views, start, cache, batch, progress);
    // A closed connection drops them too; a memory database keeps its one.
    if let Err(e) = quiet_tx(session, |tx| shadow.drop_tables(tx)) {
        log::debug!("biomero_rs rebuild: dropping the temporary tables: {e}");
    }
    result
}

fn build_and_switch(
    session: &mut dyn Session,
    shadow: &Shadow,
    views: &[View],
    start: Start,
    cache: Option<Cache>,
    batch: usize,
    mut progress: Option<Progress<'_>>,
) -> Result<u64> {
    let mut report = |done: u64, total: u64| -> Result<()> {
        match progress.as_mut() {
            Some(p) => p(done, total),
            None => Ok(()),
        }
    };
    let first = match start {
        Start::All => 1,
        Start::From(first) => first.max(1),
        Start::Since(since) => {
            let first = quiet_tx(session, |tx| first_at_or_after(tx, since))?.unwrap_or(1);
            log::info!("biomero_rs rebuild: cutoff {since} -> from notification {first}");
            first
        }
    };
    let start = first - 1;
    let mut cache = cache.unwrap_or_else(|| Cache::for_rebuild_from(start));
    let (mut upto, mut total) = quiet_tx(session, |tx| {
        let upto = tx.max_notification_id()?;
        Ok((upto, count_from(tx, start, upto)?))
    })?;
    report(0, total)?;
    let mut positions = vec![start.min(upto); views.len()];
    let mut done = 0;
    let mut rounds = 0;
    loop {
        while positions.iter().any(|p| *p < upto) {
            crate::sys::interrupt::check()?;
            done += quiet_tx(session, |tx| {
                advance(tx, &mut cache, views, &mut positions, upto, batch)
            })?;
            report(done, total)?;
        }
        // What was appended meanwhile: read without the lock while it is
        // much, then applied under the lock with the switch.
        let end = quiet_tx(session, |tx| tx.max_notification_id())?;
        if end - upto <= SWITCH_GAP || rounds >= MAX_ROUNDS {
            break;
        }
        total += quiet_tx(session, |tx| count_between(tx, upto, end))?;
        upto = end;
        rounds += 1;
    }
    crate::sys::interrupt::check()?;
    let (late, end, switched) = locked_tx(session, |tx| {
        let end = tx.max_notification_id()?.max(upto);
        let mut p = positions.clone();
        let late = projections::dispatch::catch_up_to(tx, &mut cache, views, &mut p, end)?;
        let switched = shadow.switch(tx)?;
        projections::tracking::set_positions(tx, views, end)?;
        Ok((late, end, switched))
    })?;
    for (view, s) in &switched {
        log::info!(
            "biomero_rs rebuild: {} switched at notification {end}: {} rows removed, {} written \
             (the others were equal)",
            view.view_table(),
            s.deleted,
            s.written
        );
    }
    report(done + late, total + late)?;
    Ok(done + late)
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
