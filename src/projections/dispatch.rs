//! Running the projectors: a command's new events inside its transaction
//! (after any events its views have not seen), catch-up after events
//! written without them, and the batches of a rebuild. Every event is
//! observed by the run's cache, whichever views apply it, so the facts stay
//! those of the log up to the event (see `cache.rs`).

use crate::domain::Event;
use crate::error::Result;
use crate::projections::apply::apply_one;
use crate::projections::cache::{Cache, Mode};
use crate::projections::correct;
use crate::projections::decode::decode_projected;
use crate::projections::registry::View;
use crate::projections::tracking::{
    positions_with_own, set_position, set_positions, set_positions_to_appended, Positions,
};
use crate::store::Tx;

/// How many stored events a catch-up reads (and applies before writing its
/// rows) at a time.
pub const BATCH: usize = 10_000;

/// Applies the next stored events after the lowest of `positions` (at most
/// `limit`, up to `upto`, in id order, following the events the cache has
/// seen) to each view that has not seen them, and advances `positions` past
/// them. Rows changed in memory are written by the caller's
/// [`Cache::flush`]. Returns how many events were read and the last id.
pub fn apply_next(
    tx: &mut dyn Tx,
    cache: &mut Cache,
    views: &[View],
    positions: &mut [i64],
    upto: i64,
    limit: usize,
) -> Result<(usize, Option<i64>)> {
    let Some(after) = positions.iter().copied().min() else {
        return Ok((0, None));
    };
    // Decoded first (borrowing the rows), then applied: the projectors need
    // the transaction for their lookups.
    let mut events: Vec<(i64, Event)> = Vec::with_capacity(limit.min(16_384));
    let (count, last) = tx.scan_notifications(after, Some(upto), limit, &mut |n| {
        if let Some(ev) = decode_projected(n) {
            events.push((n.id, ev));
        }
    })?;
    for (id, ev) in &events {
        apply_one(tx, cache, views, positions, *id, ev)?;
    }
    if let Some(last) = last {
        for pos in positions.iter_mut() {
            *pos = (*pos).max(last);
        }
    }
    Ok((count, last))
}

/// Applies the stored events in `(min position, upto]` to each view that has
/// not seen them, in batches, writing the cache's rows after each batch.
/// Returns how many events were read.
pub fn catch_up_to(
    tx: &mut dyn Tx,
    cache: &mut Cache,
    views: &[View],
    positions: &mut [i64],
    upto: i64,
) -> Result<u64> {
    let mut read = 0;
    while positions.iter().copied().min().is_some_and(|p| p < upto) {
        crate::sys::interrupt::check()?;
        let (count, last) = apply_next(tx, cache, views, positions, upto, BATCH)?;
        cache.flush(tx)?;
        read += count as u64;
        if last.is_none() {
            break;
        }
    }
    for pos in positions.iter_mut() {
        *pos = (*pos).max(upto);
    }
    Ok(read)
}

/// How many events of other writers a carried cache reads to stay valid;
/// after more, [`project`] starts a fresh one.
pub const CARRY_GAP: usize = 1_000;

/// Runs the projectors on a command's new events, inside its transaction:
/// first any events between each view's position and them, then the new ones,
/// then the tracking rows. `positions` are the views' positions as read in
/// this transaction ([`append_and_positions`]).
///
/// When every view is up to date (the usual case) the rows are changed with
/// one statement each ([`Mode::Live`]); after events written without these
/// views, the catch-up and the new events go through the cache's rows
/// ([`Mode::Batch`]).
///
/// `carried` is the cache of the writer's previous command, or `None`: its
/// facts describe the log up to [`Cache::seen`]. The transaction holds the
/// log's lock and the new events are the newest, so the log up to them is
/// final; the facts are brought up to the event before them by observing
/// the events other writers appended since (one query, none when there are
/// none), which makes them exactly what lookups in the log would give (see
/// the [`cache`] module). A gap of more than [`CARRY_GAP`] events, or a log
/// that does not continue the cache's (ids at or below `seen`), starts a
/// fresh cache. On return `carried` holds the cache for the next command;
/// the caller drops it if the transaction does not commit.
pub fn project(
    tx: &mut dyn Tx,
    views: &[View],
    new: &[(i64, &Event)],
    positions: Positions,
    carried: &mut Option<Cache>,
) -> Result<()> {
    let taken = carried.take();
    let (Some(first), Some(last)) = (new.first().map(|n| n.0), new.last().map(|n| n.0)) else {
        return Ok(());
    };
    if views.is_empty() {
        return Ok(());
    }
    if correct::needed(&positions.std, &positions.own) {
        correct::correct(tx, views, &positions.std, &positions.own)?;
    }
    let mut positions = positions.std;
    let start = positions.iter().copied().min().unwrap_or(0);
    let all = vec![first - 1; views.len()];
    if start < first - 1 {
        let mut cache = Cache::new(Mode::Batch, start.min(first - 1));
        catch_up_to(tx, &mut cache, views, &mut positions, first - 1)?;
        for (id, ev) in new {
            apply_one(tx, &mut cache, views, &all, *id, ev)?;
        }
        cache.flush(tx)?;
        return set_positions(tx, views, last);
    }
    let mut cache = match taken {
        Some(mut c) if c.mode() == Mode::Live && c.seen() < first => {
            if c.seen() < first - 1 && !observe_gap(tx, &mut c, first - 1)? {
                Cache::new(Mode::Live, first - 1)
            } else {
                c
            }
        }
        _ => Cache::new(Mode::Live, first - 1),
    };
    for (id, ev) in new {
        apply_one(tx, &mut cache, views, &all, *id, ev)?;
    }
    cache.flush(tx)?;
    set_positions(tx, views, last)?;
    *carried = Some(cache);
    Ok(())
}

/// [`project`] for a command sent in one round trip (`Tx::commit_in_one`):
/// applies the new events to the carried live cache, at the ids
/// `cache.seen() + 1, ...` (their own are not known yet), and queues the
/// positions as the last id its own append draws (the log's end). Lookups
/// fail (the transaction is offline); the caller guards the append with
/// [`one_trip_check`](crate::projections::tracking::one_trip_check) over
/// what the cache recorded, and renumbers the facts after the commit.
pub fn project_ahead(
    tx: &mut dyn Tx,
    views: &[View],
    new: &[&Event],
    cache: &mut Cache,
) -> Result<()> {
    let seen = cache.seen();
    let all = vec![seen; views.len()];
    for (k, ev) in new.iter().enumerate() {
        apply_one(tx, cache, views, &all, seen + 1 + k as i64, ev)?;
    }
    cache.flush(tx)?;
    set_positions_to_appended(tx, views)
}

/// Observes the events after `cache.seen()` up to `upto`; `false` (the
/// cache is then unusable) when there are more than [`CARRY_GAP`].
fn observe_gap(tx: &mut dyn Tx, cache: &mut Cache, upto: i64) -> Result<bool> {
    let mut events: Vec<(i64, Event)> = Vec::new();
    let (count, _) = tx.scan_notifications(cache.seen(), Some(upto), CARRY_GAP + 1, &mut |n| {
        if let Some(ev) = decode_projected(n) {
            events.push((n.id, ev));
        }
    })?;
    if count > CARRY_GAP {
        return Ok(false);
    }
    for (id, ev) in &events {
        cache.observe(*id, ev);
    }
    cache.observed_up_to(upto);
    Ok(true)
}

/// Brings the views up to the end of the log (events written without them).
/// Returns how many events were applied.
pub fn catch_up(tx: &mut dyn Tx, views: &[View]) -> Result<u64> {
    tx.lock_log()?;
    let upto = tx.max_notification_id()?;
    let both = positions_with_own(tx, views)?;
    // Rows another writer projected first (this also records the positions
    // as biomero_rs's own).
    correct::correct(tx, views, &both.std, &both.own)?;
    let mut positions = both.std;
    let before = positions.clone();
    let start = positions.iter().copied().min().unwrap_or(upto);
    let mut cache = Cache::new(Mode::Batch, start);
    let applied = catch_up_to(tx, &mut cache, views, &mut positions, upto)?;
    for ((view, pos), old) in views.iter().zip(&positions).zip(&before) {
        if pos != old {
            set_position(tx, *view, *pos)?;
        }
    }
    Ok(applied)
}
