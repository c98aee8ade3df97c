//! The four view projectors and the dispatch that runs them inside the
//! writer's transaction.
//!
//! A projector keeps no state in memory: what it needs is read, in the
//! transaction, from the event store or its own view table. Before applying
//! new events a projector applies every event between its tracking position
//! and them, so it never skips one; its tracking row advances in the same
//! transaction.

pub mod job_accounting;
pub mod job_progress;
pub mod lookup;
pub mod queries;
pub mod workflow_analytics;
pub mod workflow_progress;

use crate::domain::{Event, Upcasters};
use crate::error::{Error, Result};
use crate::store::schema::APPLICATION_NAME;
use crate::store::{Kind, Notification, Sql, Tx};

/// How many stored events a catch-up reads at a time.
pub const BATCH: usize = 2000;

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

    /// Applies one event (at notification `id`) to this view's rows.
    pub fn apply(self, tx: &mut dyn Tx, id: i64, event: &Event) -> Result<()> {
        match self {
            View::JobAccounting => job_accounting::apply(tx, id, event),
            View::JobProgress => job_progress::apply(tx, id, event),
            View::WorkflowProgress => workflow_progress::apply(tx, id, event),
            View::WorkflowAnalytics => workflow_analytics::apply(tx, id, event),
        }
    }
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
    let rows = tx.query(
        &format!(
            "SELECT notification_id FROM {} WHERE application_name = $1",
            view.tracking_table()
        ),
        &[Sql::Text(APPLICATION_NAME.into())],
        &[Kind::Int],
    )?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}

pub fn set_position(tx: &mut dyn Tx, view: View, id: i64) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO {} (application_name, notification_id) VALUES ($1, $2) \
             ON CONFLICT (application_name) DO UPDATE SET notification_id = excluded.notification_id",
            view.tracking_table()
        ),
        &[Sql::Text(APPLICATION_NAME.into()), Sql::Int(id)],
    )?;
    Ok(())
}

/// Decodes a stored notification; unknown topics and undecodable states are
/// logged and give `None` (they cannot be projected).
pub fn decode(n: &Notification) -> Option<Event> {
    let e = &n.event;
    match Event::decode(
        e.originator_id,
        e.originator_version,
        &e.topic,
        &e.state,
        Upcasters::standard(),
    ) {
        Ok(Some(ev)) => Some(ev),
        Ok(None) => {
            log::warn!(
                "notification {}: unknown topic {:?}, not projected",
                n.id,
                e.topic
            );
            None
        }
        Err(err) => {
            log::warn!("notification {}: {err}; not projected", n.id);
            None
        }
    }
}

/// Applies a batch of stored notifications (in id order) to each view that
/// has not seen them, and advances `positions` past the batch.
pub fn apply_batch(tx: &mut dyn Tx, views: &[View], positions: &mut [i64], batch: &[Notification]) -> Result<()> {
    for n in batch {
        if let Some(ev) = decode(n) {
            for (view, pos) in views.iter().zip(positions.iter()) {
                if *pos < n.id {
                    view.apply(tx, n.id, &ev)?;
                }
            }
        }
    }
    if let Some(last) = batch.last() {
        for pos in positions.iter_mut() {
            *pos = (*pos).max(last.id);
        }
    }
    Ok(())
}

/// Applies the stored events in `(min position, upto]` to each view that has
/// not seen them, in batches. Returns how many events were read.
pub fn catch_up_to(tx: &mut dyn Tx, views: &[View], positions: &mut [i64], upto: i64) -> Result<u64> {
    let mut read = 0;
    let Some(mut after) = positions.iter().copied().min() else { return Ok(0) };
    while after < upto {
        let batch = tx.notifications(after, Some(upto), BATCH)?;
        let Some(last) = batch.last().map(|n| n.id) else { break };
        apply_batch(tx, views, positions, &batch)?;
        read += batch.len() as u64;
        after = last;
    }
    for pos in positions.iter_mut() {
        *pos = (*pos).max(upto);
    }
    Ok(read)
}

/// Runs the projectors on a command's new events, inside its transaction:
/// first any events between each view's position and them, then the new ones,
/// then the tracking rows.
pub fn project(tx: &mut dyn Tx, views: &[View], new: &[(i64, &Event)]) -> Result<()> {
    let (Some(first), Some(last)) = (new.first().map(|n| n.0), new.last().map(|n| n.0)) else {
        return Ok(());
    };
    if views.is_empty() {
        return Ok(());
    }
    let mut positions = views
        .iter()
        .map(|v| position(tx, *v))
        .collect::<Result<Vec<_>>>()?;
    catch_up_to(tx, views, &mut positions, first - 1)?;
    for (id, ev) in new {
        for view in views {
            view.apply(tx, *id, ev)?;
        }
    }
    for view in views {
        set_position(tx, *view, last)?;
    }
    Ok(())
}

/// Brings the views up to the end of the log (events written without them).
/// Returns how many events were applied.
pub fn catch_up(tx: &mut dyn Tx, views: &[View]) -> Result<u64> {
    tx.lock_log()?;
    let upto = tx.max_notification_id()?;
    let mut positions = views
        .iter()
        .map(|v| position(tx, *v))
        .collect::<Result<Vec<_>>>()?;
    let before = positions.clone();
    let applied = catch_up_to(tx, views, &mut positions, upto)?;
    for ((view, pos), old) in views.iter().zip(&positions).zip(&before) {
        if pos != old {
            set_position(tx, *view, *pos)?;
        }
    }
    Ok(applied)
}
