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
fn step(
    tx: &mut dyn Tx,
    cache: &mut Cache,
    views: &[View],
    positions: &mut [i64],
    upto: i64,
    batch: usize,
) -> Result<u64> {
    let (count, _) = projections::apply_next(tx, cache, views, positions, upto, batch)?;
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

/// [`rebuild`] with a given cache and batch size (tests use tiny ones to
/// exercise eviction); `cache` must come from [`Cache::for_rebuild`].
#[doc(hidden)]
pub fn rebuild_with(
    store: &dyn EventStore,
    views: &[View],
    progress: Option<Progress<'_>>,
    mut cache: Cache,
    batch: usize,
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
            let total = count_events(tx)?;
            let mut positions = vec![0; views.len()];
            let mut done = 0;
            report(0, total)?;
            while positions.iter().any(|p| *p < upto) {
                crate::interrupt::check()?; // rolls the whole rebuild back
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
                Ok((tx.max_notification_id()?, count_events(tx)?))
            })?;
            report(0, total)?;
            let mut positions = vec![0; views.len()];
            let mut done = 0;
            while positions.iter().any(|p| *p < upto) {
                // Batches committed so far stay; a catch-up finishes.
                crate::interrupt::check()?;
                done += store::write_tx(store, |tx| {
                    let mut p = positions.clone();
                    let n = step(tx, &mut cache, views, &mut p, upto, batch)?;
                    positions = p;
                    Ok(n)
                })?;
                report(done, total)?;
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
