//! biomero_task_execution: one row per task with its name, version, owner
//! (from its workflow), status, start and end times and error.
//!
//! TaskCreated writes the row from the log; TaskAdded fills in the owner;
//! later events change the columns they determine (one `UPDATE`, or in
//! memory during a catch-up).

use crate::domain::{Event, Payload, Value};
use crate::error::Result;
use crate::projections::cache::{Ctx, TaskInfo};
use crate::projections::lookup;
use crate::projections::queries::{self, TaskExecutionRow};
use crate::store::{Backend, NoRow, Sql, Tx};
use chrono::NaiveDateTime;
use std::sync::OnceLock;
use uuid::Uuid;

pub const TABLE: &str = "biomero_task_execution";

/// A change of an existing row.
#[derive(Debug, Clone, PartialEq)]
pub enum WfaPatch {
    Status(String),
    /// end_time.
    Completed(NaiveDateTime),
    /// end_time and error_type.
    Failed(NaiveDateTime, Option<String>),
    /// user_id and group_id.
    Owner(Option<i64>, Option<i64>),
    Delete,
}

impl WfaPatch {
    /// The change applied to a row in memory; `false` when there is no row.
    pub(crate) fn apply(self, row: &mut Option<TaskExecutionRow>) -> bool {
        let Some(r) = row else { return false };
        match self {
            WfaPatch::Status(s) => r.status = s,
            WfaPatch::Completed(end) => r.end_time = Some(end),
            WfaPatch::Failed(end, error) => {
                r.end_time = Some(end);
                r.error_type = error;
            }
            WfaPatch::Owner(user, group) => {
                r.user_id = user;
                r.group_id = group;
            }
            WfaPatch::Delete => *row = None,
        }
        true
    }

    /// The same change as one statement; `false` when there is no row.
    pub(crate) fn execute(&self, tx: &mut dyn Tx, task: Uuid, no_row: Option<NoRow>) -> Result<()> {
        let id = Sql::Uuid(task);
        let (sql, params) = match self {
            WfaPatch::Status(s) => (
                format!("UPDATE {TABLE} SET status = $2 WHERE task_id = $1"),
                vec![id, Sql::Text(s.clone())],
            ),
            WfaPatch::Completed(end) => (
                format!(
                    "UPDATE {TABLE} SET end_time = {} WHERE task_id = $1",
                    queries::time_param(tx.backend(), 2)
                ),
                vec![id, Sql::Time(*end)],
            ),
            WfaPatch::Failed(end, error) => (
                format!(
                    "UPDATE {TABLE} SET end_time = {}, error_type = $3 WHERE task_id = $1",
                    queries::time_param(tx.backend(), 2)
                ),
                vec![id, Sql::Time(*end), error.clone().into()],
            ),
            WfaPatch::Owner(user, group) => (
                format!("UPDATE {TABLE} SET user_id = $2, group_id = $3 WHERE task_id = $1"),
                vec![id, (*user).into(), (*group).into()],
            ),
            WfaPatch::Delete => (format!("DELETE FROM {TABLE} WHERE task_id = $1"), vec![id]),
        };
        tx.queue(TABLE, &sql, params, no_row)
    }
}

pub fn apply(ctx: &mut Ctx<'_>, event: &Event) -> Result<()> {
    let origin = event.originator_id;
    let patch = match &event.payload {
        Payload::TaskCreated { .. } => return task_created(ctx, origin),
        Payload::TaskAdded { task_id } => return task_added(ctx, *task_id),
        Payload::StatusUpdated { status } => {
            let Some(s) = text(status, origin, "status") else {
                return Ok(());
            };
            let Some(s) = s else {
                log::warn!("[WFA] task {origin}: status None cannot be stored (status is NOT NULL); row not updated");
                return Ok(());
            };
            WfaPatch::Status(s)
        }
        Payload::TaskCompleted { .. } => WfaPatch::Completed(event.timestamp.naive_utc()),
        Payload::TaskFailed { error_message } => {
            let Some(error) = text(error_message, origin, "error message") else {
                return Ok(());
            };
            WfaPatch::Failed(event.timestamp.naive_utc(), error)
        }
        _ => return Ok(()),
    };
    ctx.patch_task(
        origin,
        patch,
        Some(NoRow::debug(format!(
            "[WFA] no row for task {origin}; event not projected"
        ))),
    )
}

/// A value for a VARCHAR column; `None` (after a warning) when it cannot be
/// stored.
fn text(v: &Value, task: Uuid, what: &str) -> Option<Option<String>> {
    match lookup::text_column(v) {
        Ok(t) => Some(t),
        Err(why) => {
            log::warn!("[WFA] task {task}: {what} {why}; row not updated");
            None
        }
    }
}

/// The task's user and group from its workflow, when it belongs to one.
/// `None` (after a warning) when they cannot be stored.
fn owner(ctx: &mut Ctx<'_>, task: &TaskInfo) -> Result<Option<(Option<i64>, Option<i64>)>> {
    let Some(wf) = ctx.task_workflow(task)? else {
        return Ok(Some((None, None)));
    };
    match (lookup::int_column(&wf.user), lookup::int_column(&wf.group)) {
        (Ok(u), Ok(g)) => Ok(Some((u.map(i64::from), g.map(i64::from)))),
        (u, g) => {
            log::warn!(
                "[WFA] task {}: workflow {} has user {:?} and group {:?}, which {TABLE} cannot hold; row skipped",
                task.id,
                wf.id,
                u,
                g
            );
            Ok(None)
        }
    }
}

fn task_created(ctx: &mut Ctx<'_>, task_id: Uuid) -> Result<()> {
    let Some(task) = ctx.task(task_id)? else {
        return Ok(());
    };
    let Some(name) = text(&task.name, task_id, "task name") else {
        return Ok(());
    };
    let Some(name) = name else {
        log::warn!("[WFA] task {task_id}: task name None cannot be stored (task_name is NOT NULL); row skipped");
        return Ok(());
    };
    let Some(version) = text(&task.version, task_id, "task version") else {
        return Ok(());
    };
    let Some((user_id, group_id)) = owner(ctx, &task)? else {
        return Ok(());
    };
    let row = TaskExecutionRow {
        task_id,
        task_name: name,
        task_version: version,
        user_id,
        group_id,
        status: "CREATED".into(),
        start_time: task.created.naive_utc(),
        end_time: None,
        error_type: None,
    };
    log::debug!("[WFA] Updated/Inserted task execution into view table: {row:?}");
    ctx.put_task(row)
}

fn task_added(ctx: &mut Ctx<'_>, task_id: Uuid) -> Result<()> {
    let Some(task) = ctx.task(task_id)? else {
        return Ok(());
    };
    let patch = match owner(ctx, &task)? {
        Some((user_id, group_id)) => WfaPatch::Owner(user_id, group_id),
        // The row cannot show the task's owner: drop it rather than keep a
        // row that says it has none (later events then find no row).
        None => WfaPatch::Delete,
    };
    ctx.patch_task(task_id, patch, None)
}

/// The upsert of a whole row: SQL and parameters.
fn upsert(backend: Backend, row: &TaskExecutionRow) -> (&'static str, Vec<Sql>) {
    static SQL: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    (
        SQL[backend as usize].get_or_init(|| format!(
            "INSERT INTO {TABLE} (task_id, task_name, task_version, user_id, group_id, status, start_time, end_time, error_type) \
             VALUES ($1, $2, $3, $4, $5, $6, {}, {}, $9) \
             ON CONFLICT (task_id) DO UPDATE SET task_name = excluded.task_name, task_version = excluded.task_version, \
             user_id = excluded.user_id, group_id = excluded.group_id, status = excluded.status, \
             start_time = excluded.start_time, end_time = excluded.end_time, error_type = excluded.error_type",
            queries::time_param(backend, 7),
            queries::time_param(backend, 8)
        )),
        vec![
            Sql::Uuid(row.task_id),
            Sql::Text(row.task_name.clone()),
            row.task_version.clone().into(),
            row.user_id.into(),
            row.group_id.into(),
            Sql::Text(row.status.clone()),
            Sql::Time(row.start_time),
            row.end_time.into(),
            row.error_type.clone().into(),
        ],
    )
}

/// Upserts a whole row.
pub(crate) fn write(tx: &mut dyn Tx, row: &TaskExecutionRow) -> Result<()> {
    let (sql, params) = upsert(tx.backend(), row);
    tx.execute(sql, &params)?;
    Ok(())
}

/// [`write`], queued with the transaction's other view writes.
pub(crate) fn queue_write(tx: &mut dyn Tx, row: &TaskExecutionRow) -> Result<()> {
    let (sql, params) = upsert(tx.backend(), row);
    tx.queue(TABLE, sql, params, None)
}

pub(crate) fn delete(tx: &mut dyn Tx, task: Uuid) -> Result<()> {
    tx.execute(
        &format!("DELETE FROM {TABLE} WHERE task_id = $1"),
        &[Sql::Uuid(task)],
    )?;
    Ok(())
}
