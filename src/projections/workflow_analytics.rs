//! biomero_task_execution: one row per task with its name, version, owner
//! (from its workflow), status, start and end times and error.
//!
//! TaskCreated writes the row from the log; TaskAdded fills in the owner;
//! later events read the row, change what they determine and upsert it.

use crate::domain::{Event, Payload, Value};
use crate::error::Result;
use crate::projections::lookup::{self, TaskInfo};
use crate::projections::queries::{self, TaskExecutionRow};
use crate::store::{Sql, Tx};
use uuid::Uuid;

pub const TABLE: &str = "biomero_task_execution";

pub fn apply(tx: &mut dyn Tx, id: i64, event: &Event) -> Result<()> {
    let origin = event.originator_id;
    match &event.payload {
        Payload::TaskCreated { .. } => task_created(tx, id, origin),
        Payload::TaskAdded { task_id } => task_added(tx, id, *task_id),
        Payload::StatusUpdated { status } => {
            let Some(s) = text(status, origin, "status") else { return Ok(()) };
            let Some(s) = s else {
                log::warn!("[WFA] task {origin}: status None cannot be stored (status is NOT NULL); row not updated");
                return Ok(());
            };
            update(tx, origin, |row| row.status = s)
        }
        Payload::TaskCompleted { .. } => {
            let end = event.timestamp.naive_utc();
            update(tx, origin, |row| row.end_time = Some(end))
        }
        Payload::TaskFailed { error_message } => {
            let end = event.timestamp.naive_utc();
            let Some(error) = text(error_message, origin, "error message") else { return Ok(()) };
            update(tx, origin, |row| {
                row.end_time = Some(end);
                row.error_type = error;
            })
        }
        _ => Ok(()),
    }
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
fn owner(tx: &mut dyn Tx, task: &TaskInfo, id: i64) -> Result<Option<(Option<i64>, Option<i64>)>> {
    let Some(wf) = lookup::task_workflow(tx, task, id)? else { return Ok(Some((None, None))) };
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

fn task_created(tx: &mut dyn Tx, id: i64, task_id: Uuid) -> Result<()> {
    let Some(task) = lookup::task(tx, task_id, id)? else { return Ok(()) };
    let Some(name) = text(&task.name, task_id, "task name") else { return Ok(()) };
    let Some(name) = name else {
        log::warn!("[WFA] task {task_id}: task name None cannot be stored (task_name is NOT NULL); row skipped");
        return Ok(());
    };
    let Some(version) = text(&task.version, task_id, "task version") else { return Ok(()) };
    let Some((user_id, group_id)) = owner(tx, &task, id)? else { return Ok(()) };
    write(
        tx,
        &TaskExecutionRow {
            task_id,
            task_name: name,
            task_version: version,
            user_id,
            group_id,
            status: "CREATED".into(),
            start_time: task.created.naive_utc(),
            end_time: None,
            error_type: None,
        },
    )
}

fn task_added(tx: &mut dyn Tx, id: i64, task_id: Uuid) -> Result<()> {
    let Some(mut row) = queries::get_task_execution(tx, task_id)? else { return Ok(()) };
    let Some(task) = lookup::task(tx, task_id, id)? else { return Ok(()) };
    let Some((user_id, group_id)) = owner(tx, &task, id)? else {
        // The row cannot show the task's owner: drop it rather than keep a
        // row that says it has none (later events then find no row).
        tx.execute(&format!("DELETE FROM {TABLE} WHERE task_id = $1"), &[Sql::Uuid(task_id)])?;
        return Ok(());
    };
    if (row.user_id, row.group_id) != (user_id, group_id) {
        row.user_id = user_id;
        row.group_id = group_id;
        write(tx, &row)?;
    }
    Ok(())
}

fn update(tx: &mut dyn Tx, task_id: Uuid, change: impl FnOnce(&mut TaskExecutionRow)) -> Result<()> {
    let Some(mut row) = queries::get_task_execution(tx, task_id)? else {
        log::debug!("[WFA] no row for task {task_id}; event not projected");
        return Ok(());
    };
    change(&mut row);
    write(tx, &row)
}

fn write(tx: &mut dyn Tx, row: &TaskExecutionRow) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO {TABLE} (task_id, task_name, task_version, user_id, group_id, status, start_time, end_time, error_type) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (task_id) DO UPDATE SET task_name = excluded.task_name, task_version = excluded.task_version, \
             user_id = excluded.user_id, group_id = excluded.group_id, status = excluded.status, \
             start_time = excluded.start_time, end_time = excluded.end_time, error_type = excluded.error_type"
        ),
        &[
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
    )?;
    log::debug!("[WFA] Updated/Inserted task execution into view table: {row:?}");
    Ok(())
}
