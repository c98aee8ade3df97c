//! The four view projectors and the dispatch that runs them inside the
//! writer's transaction.
//!
//! A projector keeps no state in memory beyond one run of events (one
//! transaction, or the batches of one SQLite rebuild): what it needs is read
//! from the event store or its own view table, through the run's [`cache`]
//! (see there why that cache never changes a view row). Before applying new events a projector applies every event
//! between its tracking position and them, so it never skips one; its
//! tracking row advances in the same transaction.

pub mod cache;
pub mod correct;
pub mod job_accounting;
pub mod job_progress;
pub mod lookup;
pub mod queries;
pub mod workflow_analytics;
pub mod workflow_progress;

use crate::domain::{Event, EventType, Payload, Upcasters};
use crate::error::{Error, Result};
use crate::store::schema::APPLICATION_NAME;
use crate::store::{Kind, Notification, NotificationRef, Sql, StoredEvent, Tx};
use cache::{Cache, Ctx, Mode, Need};

/// How many stored events a catch-up reads (and applies before writing its
/// rows) at a time.
pub const BATCH: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    JobAccounting,
    JobProgress,
    WorkflowProgress,
    WorkflowAnalytics,
}

impl View {
    pub const ALL: [View; 4] = [
        View::JobAccounting,
        View::JobProgress,
        View::WorkflowProgress,
        View::WorkflowAnalytics,
    ];

    /// The name used in `views=`.
    pub fn name(self) -> &'static str {
        match self {
            View::JobAccounting => "job_accounting",
            View::JobProgress => "job_progress",
            View::WorkflowProgress => "workflow_progress",
            View::WorkflowAnalytics => "workflow_analytics",
        }
    }

    /// The reference's class name.
    pub fn class_name(self) -> &'static str {
        match self {
            View::JobAccounting => "JobAccounting",
            View::JobProgress => "JobProgress",
            View::WorkflowProgress => "WorkflowProgress",
            View::WorkflowAnalytics => "WorkflowAnalytics",
        }
    }

    /// Accepts `"job_accounting"` or the class name `"JobAccounting"`.
    pub fn parse(name: &str) -> Result<View> {
        View::ALL
            .into_iter()
            .find(|v| v.name() == name || v.class_name() == name)
            .ok_or_else(|| {
                Error::value(format!(
                    "views: unknown view {name:?} (known: job_accounting, job_progress, workflow_progress, workflow_analytics)"
                ))
            })
    }

    pub fn tracking_table(self) -> &'static str {
        match self {
            View::JobAccounting => "jobaccounting_tracking",
            View::JobProgress => "jobprogress_tracking",
            View::WorkflowProgress => "workflowprogress_tracking",
            View::WorkflowAnalytics => "workflowanalytics_tracking",
        }
    }

    /// The reference's events table of the listener (dropped by BIOMERO's
    /// reset path; biomero_rs never writes it).
    pub fn events_table(self) -> &'static str {
        match self {
            View::JobAccounting => "jobaccounting_events",
            View::JobProgress => "jobprogress_events",
            View::WorkflowProgress => "workflowprogress_events",
            View::WorkflowAnalytics => "workflowanalytics_events",
        }
    }

    pub fn view_table(self) -> &'static str {
        match self {
            View::JobAccounting => job_accounting::TABLE,
            View::JobProgress => job_progress::TABLE,
            View::WorkflowProgress => workflow_progress::TABLE,
            View::WorkflowAnalytics => workflow_analytics::TABLE,
        }
    }

    /// Applies one event (at notification `ctx.id`) to this view's rows.
    pub fn apply(self, ctx: &mut Ctx<'_>, event: &Event) -> Result<()> {
        match self {
            View::JobAccounting => job_accounting::apply(ctx, event),
            View::JobProgress => job_progress::apply(ctx, event),
            View::WorkflowProgress => workflow_progress::apply(ctx, event),
            View::WorkflowAnalytics => workflow_analytics::apply(ctx, event),
        }
    }
}

/// The tracking tables of every view (the store creates them with the
/// events table).
pub fn tracking_tables() -> Vec<&'static str> {
    View::ALL.iter().map(|v| v.tracking_table()).collect()
}

/// Parses a `views=` list; duplicates are dropped, order is the canonical one.
pub fn parse_views<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<View>> {
    let mut views = Vec::new();
    for n in names {
        views.push(View::parse(n)?);
    }
    views.sort();
    views.dedup();
    Ok(views)
}

/// The last notification id this view has applied (0 when none).
pub fn position(tx: &mut dyn Tx, view: View) -> Result<i64> {
    Ok(positions(tx, &[view])?[0])
}

/// The select list that reads the positions of `views` (`$1` = the
/// application name), then, with `own`, biomero_rs's own positions (`$2`,
/// see [`correct`]).
fn positions_exprs(views: &[View], own: bool) -> String {
    let mut cols: Vec<String> = views
        .iter()
        .map(|v| {
            format!(
                "(SELECT notification_id FROM {} WHERE application_name = $1)",
                v.tracking_table()
            )
        })
        .collect();
    if own {
        cols.extend(views.iter().map(|v| {
            format!(
                "(SELECT notification_id FROM {} WHERE application_name = $2)",
                v.tracking_table()
            )
        }));
    }
    cols.join(", ")
}

fn positions_of(row: &[Sql], n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| row.get(i).and_then(Sql::as_i64).unwrap_or(0))
        .collect()
}

/// The positions of `views`, in one statement.
pub fn positions(tx: &mut dyn Tx, views: &[View]) -> Result<Vec<i64>> {
    Ok(positions_with_own(tx, views)?.std)
}

/// The views' positions as every writer records them (`std`, the
/// `WorkflowTracker` rows) and as biomero_rs recorded its own projection
/// (`own`, see [`correct`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    pub std: Vec<i64>,
    pub own: Vec<i64>,
}

fn position_params() -> [Sql; 2] {
    [
        Sql::Text(APPLICATION_NAME.into()),
        Sql::Text(correct::OWN_APPLICATION.into()),
    ]
}

fn split_positions(row: &[Sql], n: usize) -> Positions {
    let all = positions_of(row, 2 * n);
    Positions {
        std: all[..n].to_vec(),
        own: all[n..].to_vec(),
    }
}

/// [`positions`] with biomero_rs's own positions, in one statement.
pub fn positions_with_own(tx: &mut dyn Tx, views: &[View]) -> Result<Positions> {
    if views.is_empty() {
        return Ok(Positions::default());
    }
    let kinds = vec![Kind::Int; 2 * views.len()];
    let rows = tx.query(
        &format!("SELECT {}", positions_exprs(views, true)),
        &position_params(),
        &kinds,
    )?;
    Ok(split_positions(
        rows.first().map_or(&[], |r| r),
        views.len(),
    ))
}

/// Appends a command's events and reads the positions of `views` (in one
/// round trip where the backend can): the notification ids, and the
/// positions for [`project`].
pub fn append_and_positions(
    tx: &mut dyn Tx,
    views: &[View],
    events: &[StoredEvent],
) -> Result<(Vec<i64>, Positions)> {
    if views.is_empty() {
        return Ok((tx.append(events)?, Positions::default()));
    }
    let kinds = vec![Kind::Int; 2 * views.len()];
    let (ids, row) = tx.append_and_select(
        events,
        &positions_exprs(views, true),
        &position_params(),
        &kinds,
    )?;
    Ok((ids, split_positions(&row, views.len())))
}

fn set_position_sql(view: View) -> String {
    format!(
        "INSERT INTO {} (application_name, notification_id) VALUES ($1, $3), ($2, $3) \
         ON CONFLICT (application_name) DO UPDATE SET notification_id = excluded.notification_id",
        view.tracking_table()
    )
}

/// Sets the view's position, in its `WorkflowTracker` row and in biomero_rs's
/// own row (one statement; see [`correct`]).
pub fn set_position(tx: &mut dyn Tx, view: View, id: i64) -> Result<()> {
    let [a, b] = position_params();
    tx.queue(
        view.tracking_table(),
        &set_position_sql(view),
        vec![a, b, Sql::Int(id)],
        None,
    )
}

/// Sets every view's position to `id` (queued with the view writes: one
/// statement with them on Postgres).
pub fn set_positions(tx: &mut dyn Tx, views: &[View], id: i64) -> Result<()> {
    for v in views {
        set_position(tx, *v, id)?;
    }
    Ok(())
}

/// Decodes a stored notification; unknown topics and undecodable states are
/// logged and give `None` (they cannot be projected).
pub fn decode(n: &Notification) -> Option<Event> {
    decode_ref(&n.as_ref())
}

/// [`decode`] of a borrowed notification.
pub fn decode_ref(n: &NotificationRef<'_>) -> Option<Event> {
    match Event::decode(
        n.originator_id,
        n.originator_version,
        n.topic,
        n.state,
        Upcasters::standard(),
    ) {
        Ok(Some(ev)) => Some(ev),
        Ok(None) => {
            log::warn!(
                "notification {}: unknown topic {:?}, not projected",
                n.id,
                n.topic
            );
            None
        }
        Err(err) => {
            log::warn!("notification {}: {err}; not projected", n.id);
            None
        }
    }
}

/// The topics that no projector reads (they change no view row and no fact
/// of the cache); stored events of these topics are not even decoded.
fn ignored(ty: EventType) -> bool {
    matches!(
        ty,
        EventType::WorkflowStarted | EventType::TaskStarted | EventType::ResultAdded
    )
}

/// [`decode`] for projection: `None` without decoding for ignored topics
/// (status and progress updates, most of a log, take the codec's fast path
/// in [`Event::decode`]).
pub fn decode_projected(n: &NotificationRef<'_>) -> Option<Event> {
    match EventType::from_topic(n.topic) {
        Some(ty) if ignored(ty) => None,
        _ => decode_ref(n),
    }
}

/// Applies one event at notification `id` to the views whose position is
/// below it, after the cache has observed it.
fn apply_one(
    tx: &mut dyn Tx,
    cache: &mut Cache,
    views: &[View],
    positions: &[i64],
    id: i64,
    ev: &Event,
) -> Result<()> {
    cache.observe(id, ev);
    let mut ctx = Ctx { tx, cache, id };
    let on = |v: View| {
        views
            .iter()
            .zip(positions)
            .any(|(view, pos)| *view == v && *pos < id)
    };
    // What the views will ask about the task of a status update, in one
    // statement (known facts are not asked again).
    if let Payload::StatusUpdated { .. } = ev.payload {
        let wfp = on(View::WorkflowProgress);
        let need = Need {
            created: wfp,
            job: on(View::JobProgress),
            progress: wfp,
        };
        if need.created || need.job {
            ctx.ensure_tasks(&[ev.originator_id], need)?;
        }
    }
    for (view, pos) in views.iter().zip(positions) {
        if *pos < id {
            view.apply(&mut ctx, ev)?;
        }
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredEvent;

    fn note(topic: EventType, state: &str) -> Notification {
        Notification {
            id: 7,
            event: StoredEvent {
                originator_id: uuid::Uuid::from_u128(42),
                originator_version: 3,
                topic: topic.topic().to_owned(),
                state: state.as_bytes().to_vec(),
            },
        }
    }

    #[test]
    fn the_fast_update_decoder_agrees_with_the_codec() {
        let ts = r#"{"timestamp":{"_type_":"datetime_iso","_data_":"2024-06-01T08:00:00.250000+00:00"},"#;
        let ts0 = r#"{"timestamp":{"_type_":"datetime_iso","_data_":"2024-06-01T08:00:00+00:00"},"#;
        let cases = [
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"RUNNING"}}"#),
                true,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts0}"status":"RUNNING"}}"#),
                true,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":""}}"#),
                true,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"Déjà vu ✓"}}"#),
                true,
            ),
            (
                EventType::ProgressUpdated,
                format!(r#"{ts}"progress":"43%"}}"#),
                true,
            ),
            // Other forms: the codec decides (same event or not projected).
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"a\"b"}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"a\u00e9"}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":null}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":7}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"progress":"7"}}"#),
                false,
            ),
            (
                EventType::ProgressUpdated,
                format!(r#"{ts}"status":"7"}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"x","class_version":1}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"x"}} "#),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts} "status":"x"}}"#),
                false,
            ),
            (
                EventType::StatusUpdated,
                r#"{"timestamp":{"_type_":"datetime_iso","_data_":"not a time"},"status":"x"}"#
                    .to_owned(),
                false,
            ),
            (
                EventType::StatusUpdated,
                format!(r#"{ts}"status":"x""#),
                false,
            ),
        ];
        for (ty, state, fast) in cases {
            let n = note(ty, &state);
            let quick = crate::domain::events::decode_update(ty, state.as_bytes());
            assert_eq!(quick.is_some(), fast, "{state}");
            if let Some((timestamp, payload)) = quick {
                // The general decoder reads the same event.
                let e = Event::decode_tree(
                    n.event.originator_id,
                    n.event.originator_version,
                    ty,
                    state.as_bytes(),
                    Upcasters::standard(),
                )
                .unwrap();
                assert_eq!((e.timestamp, e.payload), (timestamp, payload), "{state}");
            }
            assert_eq!(decode_projected(&n.as_ref()), decode(&n), "{state}");
        }
    }
}
