//! biomero_task_execution: one row per task with its name, version, owner
//! (from its workflow), status, start and end times and error
//! (docs/projections.md, "biomero_task_execution").
//!
//! TaskCreated writes the row from the log (with the workflow it names);
//! TaskAdded fills in the owner;
//! later events change the columns they determine (one `UPDATE`, or in
//! memory during a catch-up).

use crate::domain::{Event, Payload, Value};
use crate::error::Result;
use crate::projections::cache::Ctx;
use crate::projections::convert;
use crate::projections::facts::TaskInfo;
use crate::projections::projector::Projector;
use crate::projections::view::{self, view_row, Keyed, Patch, ViewRow, ViewSpec, ViewTable};
use crate::store::{NoRow, Sql, Tx};
use chrono::{NaiveDate, NaiveDateTime};
use std::collections::BTreeMap;
use uuid::Uuid;

pub const TABLE: &str = "biomero_task_execution";

view_row! {
    /// A row of `biomero_task_execution`.
    pub struct TaskExecutionRow in TABLE;
    key task_id: Uuid => "The id of the task.",
    task_name: String => "The task's name.",
    task_version: Option<String> => "The task's version, or None.",
    user_id: Option<i64> => "The OMERO user id, or None.",
    group_id: Option<i64> => "The OMERO group id, or None.",
    status: String => "The task's status (``'CREATED'``, ``'COMPLETED'``, ``'FAILED'``, ...).",
    start_time: NaiveDateTime => "When the task was created (naive UTC ``datetime``).",
    end_time: Option<NaiveDateTime> => "When the task completed or failed (naive UTC ``datetime``), or None.",
    error_type: Option<String> => "Why the task failed, or None.",
    #[since = "views_003"]
    workflow_id: Option<Uuid> => "The id of the workflow the task was created for, or None (rows written by Python BIOMERO until biomero_rs derives them again).",
}

impl ViewRow for TaskExecutionRow {
    type Key = Uuid;
    fn key(&self) -> Uuid {
        self.task_id
    }
}

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
}

impl Patch<TaskExecutionRow> for WfaPatch {
    fn sets(&self) -> Vec<(&'static str, Sql)> {
        match self {
            WfaPatch::Status(s) => vec![("status", Sql::Text(s.clone()))],
            WfaPatch::Completed(end) => vec![("end_time", Sql::Time(*end))],
            WfaPatch::Failed(end, error) => vec![
                ("end_time", Sql::Time(*end)),
                ("error_type", error.clone().into()),
            ],
            WfaPatch::Owner(user, group) => {
                vec![("user_id", (*user).into()), ("group_id", (*group).into())]
            }
        }
    }

    fn apply(self, r: &mut TaskExecutionRow) {
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
        }
    }
}

/// The WorkflowAnalytics view.
pub struct WorkflowAnalytics;

impl ViewTable for WorkflowAnalytics {
    type Row = TaskExecutionRow;
    type Patch = WfaPatch;
    const SPEC: ViewSpec = ViewSpec {
        name: "workflow_analytics",
        class_name: "WorkflowAnalytics",
        table: TABLE,
        tracking_table: "workflowanalytics_tracking",
        events_table: "workflowanalytics_events",
        model: "TaskExecution",
        model_doc: "A row of ``biomero_task_execution``: one task's name, version, owner,\nstatus, times (naive UTC) and error type.\n\nImmutable; compares, hashes and pickles by value.",
        columns: <TaskExecutionRow as view::Cells>::COLUMNS,
        keyed_by: Keyed::Task,
        task_column: None,
    };
}

impl Projector for WorkflowAnalytics {
    fn apply(ctx: &mut Ctx<'_>, event: &Event) -> Result<()> {
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
        ctx.patch::<WorkflowAnalytics>(
            origin,
            patch,
            Some(NoRow::debug(format!(
                "[WFA] no row for task {origin}; event not projected"
            ))),
        )
    }
}

/// A value for a VARCHAR column; `None` (after a warning) when it cannot be
/// stored.
fn text(v: &Value, task: Uuid, what: &str) -> Option<Option<String>> {
    match convert::text_column(v) {
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
    match (
        convert::int_column(&wf.user),
        convert::int_column(&wf.group),
    ) {
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
        workflow_id: Some(task.workflow_id),
    };
    log::debug!("[WFA] Updated/Inserted task execution into view table: {row:?}");
    ctx.put::<WorkflowAnalytics>(row)
}

fn task_added(ctx: &mut Ctx<'_>, task_id: Uuid) -> Result<()> {
    let Some(task) = ctx.task(task_id)? else {
        return Ok(());
    };
    match owner(ctx, &task)? {
        Some((user_id, group_id)) => {
            ctx.patch::<WorkflowAnalytics>(task_id, WfaPatch::Owner(user_id, group_id), None)
        }
        // The row cannot show the task's owner: drop it rather than keep a
        // row that says it has none (later events then find no row).
        None => ctx.delete::<WorkflowAnalytics>(task_id),
    }
}

// ------------------------------------------------------------------ queries

/// `(task_name, task_version)`, the key of the analytics answers.
pub type TaskKey = (String, Option<String>);

/// One row of biomero_task_execution (times as stored).
pub fn get_task_execution(tx: &mut dyn Tx, task_id: Uuid) -> Result<Option<TaskExecutionRow>> {
    view::get::<WorkflowAnalytics>(tx, task_id)
}

/// Every row of biomero_task_execution by task_id.
pub fn all_task_executions(tx: &mut dyn Tx) -> Result<Vec<TaskExecutionRow>> {
    view::all::<WorkflowAnalytics>(tx)
}

/// The task rows matching the filters (and `extra`, a condition on the
/// columns with `$1`.. already in `params`).
fn task_rows(
    tx: &mut dyn Tx,
    extra: &str,
    mut params: Vec<Sql>,
    user: Option<i64>,
    group: Option<i64>,
) -> Result<Vec<TaskExecutionRow>> {
    let Some(cond) = view::filters(("user_id", "group_id"), user, group, &mut params) else {
        return Ok(Vec::new());
    };
    view::select::<WorkflowAnalytics>(tx, &format!("1 = 1{extra}{cond}"), &params, "task_id")
}

/// WorkflowAnalytics.get_task_counts: executions per (name, version).
pub fn get_task_counts(
    tx: &mut dyn Tx,
    user: Option<i64>,
    group: Option<i64>,
) -> Result<BTreeMap<TaskKey, i64>> {
    let mut out = BTreeMap::new();
    for r in task_rows(tx, "", Vec::new(), user, group)? {
        *out.entry((r.task_name, r.task_version)).or_insert(0) += 1;
    }
    Ok(out)
}

/// WorkflowAnalytics.get_average_task_duration: the mean of end_time -
/// start_time in seconds (with microseconds) per (name, version), over the
/// rows with an end_time. (The reference gives whole seconds on SQLite.)
pub fn get_average_task_duration(
    tx: &mut dyn Tx,
    user: Option<i64>,
    group: Option<i64>,
) -> Result<BTreeMap<TaskKey, f64>> {
    let mut sums: BTreeMap<TaskKey, (i128, i128)> = BTreeMap::new();
    for r in task_rows(tx, " AND end_time IS NOT NULL", Vec::new(), user, group)? {
        let Some(end) = r.end_time else { continue };
        let micros = (end - r.start_time).num_microseconds().map_or_else(
            || i128::from((end - r.start_time).num_milliseconds()) * 1000,
            i128::from,
        );
        let e = sums.entry((r.task_name, r.task_version)).or_insert((0, 0));
        e.0 += micros;
        e.1 += 1;
    }
    Ok(sums
        .into_iter()
        .map(|(k, (sum, n))| (k, mean_seconds(sum, n)))
        .collect())
}

/// `sum / n / 1e6`, rounded once where the numbers allow it.
fn mean_seconds(sum_micros: i128, n: i128) -> f64 {
    let denominator = n * 1_000_000;
    const EXACT: i128 = 1 << 53;
    if sum_micros.abs() <= EXACT && denominator <= EXACT {
        sum_micros as f64 / denominator as f64
    } else {
        (sum_micros as f64 / n as f64) / 1e6
    }
}

/// WorkflowAnalytics.get_task_failures: the distinct error types (sorted)
/// per (name, version), over the rows with an error_type.
pub fn get_task_failures(
    tx: &mut dyn Tx,
    user: Option<i64>,
    group: Option<i64>,
) -> Result<BTreeMap<TaskKey, Vec<String>>> {
    let mut out: BTreeMap<TaskKey, Vec<String>> = BTreeMap::new();
    for r in task_rows(tx, " AND error_type IS NOT NULL", Vec::new(), user, group)? {
        let Some(err) = r.error_type else { continue };
        out.entry((r.task_name, r.task_version))
            .or_default()
            .push(err);
    }
    for errors in out.values_mut() {
        errors.sort();
        errors.dedup();
    }
    Ok(out)
}

/// WorkflowAnalytics.get_task_usage_over_time: executions of `task_name` per
/// start_time date (UTC).
pub fn get_task_usage_over_time(
    tx: &mut dyn Tx,
    task_name: &str,
    user: Option<i64>,
    group: Option<i64>,
) -> Result<BTreeMap<NaiveDate, i64>> {
    let mut out = BTreeMap::new();
    for r in task_rows(
        tx,
        " AND task_name = $1",
        vec![Sql::Text(task_name.to_owned())],
        user,
        group,
    )? {
        *out.entry(r.start_time.date()).or_insert(0) += 1;
    }
    Ok(out)
}
