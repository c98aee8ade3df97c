//! biomero_workflow_progress_view: per workflow its status, progress, owner,
//! name, latest task, main task name and start time (docs/projections.md,
//! "biomero_workflow_progress_view").
//!
//! The row is the state: each event changes the columns it determines of
//! the workflow's row (one `UPDATE`, or in memory during a catch-up). What
//! the row does not hold (task names, the workflow of a task, the latest
//! task progress) is read from the event log up to the event being applied.

use crate::domain::{Event, Payload, Value};
use crate::error::Result;
use crate::projections::cache::Ctx;
use crate::projections::convert;
use crate::projections::facts::{Need, TaskInfo, WorkflowInfo};
use crate::projections::projector::Projector;
use crate::projections::view::{self, view_row, Keyed, Patch, ViewRow, ViewSpec, ViewTable};
use crate::store::{NoRow, Sql, Tx};
use chrono::NaiveDateTime;
use uuid::Uuid;

pub const TABLE: &str = "biomero_workflow_progress_view";

view_row! {
    /// A row of `biomero_workflow_progress_view`.
    pub struct WorkflowProgressRow in TABLE;
    key workflow_id: Uuid => "The workflow's id.",
    status: Option<String> => "The workflow's status (``'JOB_RUNNING'``, ``'DONE'``, ...), or None.",
    progress: Option<String> => "The workflow's progress (such as ``'67.2%'``), or None.",
    user: Option<i64> => "The OMERO user id, or None.",
    group: Option<i64> => "The OMERO group id, or None.",
    name: Option<String> => "The workflow's name, or None.",
    task: Option<String> => "The name of the task running now, or None.",
    main_task_name: Option<String> => "The name of the workflow's main (Slurm) task, or None.",
    start_time: NaiveDateTime => "When the workflow was initiated (naive UTC ``datetime``).",
}

impl ViewRow for WorkflowProgressRow {
    type Key = Uuid;
    fn key(&self) -> Uuid {
        self.workflow_id
    }
}

/// A change of an existing row.
#[derive(Debug, Clone, PartialEq)]
pub enum WfpPatch {
    /// status, and progress unless None.
    Status {
        status: String,
        progress: Option<String>,
    },
    /// task and main_task_name.
    Task {
        task: Option<String>,
        main_task_name: Option<String>,
    },
}

impl Patch<WorkflowProgressRow> for WfpPatch {
    fn sets(&self) -> Vec<(&'static str, Sql)> {
        match self {
            WfpPatch::Status { status, progress } => {
                let mut sets = vec![("status", Sql::Text(status.clone()))];
                if let Some(p) = progress {
                    sets.push(("progress", Sql::Text(p.clone())));
                }
                sets
            }
            WfpPatch::Task {
                task,
                main_task_name,
            } => vec![
                ("task", task.clone().into()),
                ("main_task_name", main_task_name.clone().into()),
            ],
        }
    }

    fn apply(self, row: &mut WorkflowProgressRow) {
        match self {
            WfpPatch::Status { status, progress } => {
                row.status = Some(status);
                if progress.is_some() {
                    row.progress = progress;
                }
            }
            WfpPatch::Task {
                task,
                main_task_name,
            } => {
                row.task = task;
                row.main_task_name = main_task_name;
            }
        }
    }
}

/// The WorkflowProgress view.
pub struct WorkflowProgress;

impl ViewTable for WorkflowProgress {
    type Row = WorkflowProgressRow;
    type Patch = WfpPatch;
    const SPEC: ViewSpec = ViewSpec {
        name: "workflow_progress",
        class_name: "WorkflowProgress",
        table: TABLE,
        tracking_table: "workflowprogress_tracking",
        events_table: "workflowprogress_events",
        model: "WorkflowProgressView",
        model_doc: "A row of ``biomero_workflow_progress_view``: a workflow's status,\nprogress, owner and current task. ``start_time`` is naive UTC.\n\nImmutable; compares, hashes and pickles by value.",
        columns: <WorkflowProgressRow as view::Cells>::COLUMNS,
        keyed_by: Keyed::Workflow,
        task_column: None,
    };
}

impl Projector for WorkflowProgress {
    /// A status update needs the task's TaskCreated and the latest progress.
    fn needs(event: &Event) -> Need {
        match event.payload {
            Payload::StatusUpdated { .. } => Need {
                created: true,
                job: false,
                progress: true,
            },
            _ => Need::default(),
        }
    }

    fn apply(ctx: &mut Ctx<'_>, event: &Event) -> Result<()> {
        let wf_or_task = event.originator_id;
        match &event.payload {
            Payload::WorkflowInitiated {
                name, user, group, ..
            } => initiated(ctx, event, name, user, group),
            Payload::WorkflowCompleted => set_status(
                ctx,
                wf_or_task,
                "WorkflowCompleted",
                wfs::DONE,
                Some("100%"),
            ),
            Payload::WorkflowFailed { .. } => {
                set_status(ctx, wf_or_task, "WorkflowFailed", wfs::FAILED, None)
            }
            Payload::TaskAdded { task_id } => task_added(ctx, wf_or_task, *task_id),
            Payload::StatusUpdated { status } => status_updated(ctx, wf_or_task, status),
            // ProgressUpdated changes no column: the latest task progress is
            // read from the log when a status update needs it.
            _ => Ok(()),
        }
    }
}

/// biomero.constants.workflow_status.
pub mod wfs {
    pub const INITIALIZING: &str = "INITIALIZING";
    pub const TRANSFERRING: &str = "TRANSFERRING";
    pub const CONVERTING: &str = "CONVERTING";
    pub const RETRIEVING: &str = "RETRIEVING";
    pub const IMPORTING: &str = "IMPORTING";
    pub const IMPORTED: &str = "IMPORTED";
    pub const POSTPROCESSING: &str = "POSTPROCESSING";
    pub const DONE: &str = "DONE";
    pub const FAILED: &str = "FAILED";
    pub const RUNNING: &str = "RUNNING";
    pub const JOB_STATUS: &str = "JOB_";
}

fn initiated(
    ctx: &mut Ctx<'_>,
    event: &Event,
    name: &Value,
    user: &Value,
    group: &Value,
) -> Result<()> {
    let wf = event.originator_id;
    let (user, group, name) = match (
        convert::int_column(user),
        convert::int_column(group),
        convert::text_column(name),
    ) {
        (Ok(u), Ok(g), Ok(n)) => (u, g, n),
        (u, g, n) => {
            let why: Vec<String> = [
                u.err().map(|e| format!("user {e}")),
                g.err().map(|e| format!("group {e}")),
                n.err().map(|e| format!("name {e}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            log::warn!(
                "[WFP] workflow {wf}: {}; {TABLE} gets no row for it",
                why.join(", ")
            );
            return Ok(());
        }
    };
    let row = WorkflowProgressRow {
        workflow_id: wf,
        status: Some(wfs::INITIALIZING.into()),
        progress: Some("0%".into()),
        user: user.map(i64::from),
        group: group.map(i64::from),
        name,
        task: None,
        main_task_name: None,
        start_time: event.timestamp.naive_utc(),
    };
    log::debug!("[WFP] Inserted wf progress in view table: {row:?}");
    ctx.put::<WorkflowProgress>(row)
}

fn set_status(
    ctx: &mut Ctx<'_>,
    wf: Uuid,
    what: &str,
    status: &str,
    progress: Option<&str>,
) -> Result<()> {
    let patch = WfpPatch::Status {
        status: status.into(),
        progress: progress.map(str::to_owned),
    };
    ctx.patch::<WorkflowProgress>(
        wf,
        patch,
        Some(NoRow::warn(format!(
            "[WFP] {what} event for unknown workflow: wf_id={wf}. Skipping status update."
        ))),
    )
}

fn task_added(ctx: &mut Ctx<'_>, wf_id: Uuid, task_id: Uuid) -> Result<()> {
    let Some(task) = ctx.task(task_id)? else {
        return Ok(());
    };
    if task.workflow_id != wf_id {
        log::warn!(
            "[WFP] task {task_id} added to workflow {wf_id} was created for workflow {}; ignored",
            task.workflow_id
        );
        return Ok(());
    }
    let Some(wf) = ctx.workflow(wf_id)? else {
        return Ok(());
    };
    let task_name = name_text(&task);
    let main_task_name = main_task_name(ctx, &wf, task_name.clone())?;
    let patch = WfpPatch::Task {
        task: task_name,
        main_task_name,
    };
    ctx.patch::<WorkflowProgress>(
        wf_id,
        patch,
        Some(NoRow::debug(format!(
            "[WFP] Task added to a workflow without a row: task_id={task_id}, wf_id={wf_id}"
        ))),
    )
}

/// A task name as stored (numbers as Python's `str()`); other values, which
/// the reference cannot handle either, count as no name.
fn name_text(task: &TaskInfo) -> Option<String> {
    convert::text_column(&task.name).ok().flatten()
}

/// The first task of the workflow (in TaskAdded order) that is not an
/// infrastructure task (`_slurm_`, `slurm_`, `convert_`, case-insensitive),
/// with its original case; failing that, `fallback` (the workflow's task).
fn main_task_name(
    ctx: &mut Ctx<'_>,
    wf: &WorkflowInfo,
    fallback: Option<String>,
) -> Result<Option<String>> {
    for (task, _) in ctx.workflow_tasks(wf, Need::default())? {
        if let Some(name) = name_text(&task) {
            let lower = name.to_lowercase();
            if !["_slurm_", "slurm_", "convert_"]
                .iter()
                .any(|p| lower.starts_with(p))
            {
                return Ok(Some(name));
            }
        }
    }
    Ok(fallback)
}

fn status_updated(ctx: &mut Ctx<'_>, task_id: Uuid, status: &Value) -> Result<()> {
    let Some(task) = ctx.task(task_id)? else {
        return Ok(());
    };
    let Some(task_name) = task.name.as_str().map(str::to_lowercase) else {
        log::warn!(
            "[WFP] task {task_id}: task name {:?} is not a str; status update not projected",
            task.name
        );
        return Ok(());
    };
    let Some(wf) = ctx.task_workflow(&task)? else {
        log::warn!(
            "[WFP] Task.StatusUpdated event for unknown workflow: task_id={task_id}, wf_id=None. Skipping status update."
        );
        return Ok(());
    };
    let is_postprocessing = status.as_str() == Some(wfs::POSTPROCESSING);
    let (new_status, new_progress) = match task_name.as_str() {
        "_slurm_image_transfer.py" => (wfs::TRANSFERRING.to_owned(), "5%".to_owned()),
        n if n.starts_with("convert_") => (wfs::CONVERTING.to_owned(), "25%".to_owned()),
        "slurm_get_results.py" if is_postprocessing => {
            (wfs::POSTPROCESSING.to_owned(), "95%".to_owned())
        }
        "slurm_get_results.py" => (wfs::RETRIEVING.to_owned(), "90%".to_owned()),
        "slurm_import_results.py" => {
            let Some(s) = status_str(status, task_id) else {
                return Ok(());
            };
            // getattr(workflow_status, s, s)
            let mapped = if s == "JOB_STATUS" {
                wfs::JOB_STATUS.to_owned()
            } else {
                s.to_owned()
            };
            (
                mapped,
                if is_postprocessing { "95%" } else { "90%" }.to_owned(),
            )
        }
        "slurm_run_workflow.py" => (wfs::RUNNING.to_owned(), "50%".to_owned()),
        _ => {
            let Some(s) = status_str(status, task_id) else {
                return Ok(());
            };
            let mut progress = "50%".to_owned();
            if let Some(p) = ctx.latest_task_progress(&wf)? {
                if truthy(&p) {
                    match ctx.interpolate_progress(&p) {
                        Some(x) => progress = x,
                        None => log::warn!(
                            "[WFP] workflow {}: task progress {} is not an integer percentage; progress stays 50%",
                            wf.id,
                            crate::domain::codec::encode(&p)
                        ),
                    }
                }
            }
            (format!("{}{s}", wfs::JOB_STATUS), progress)
        }
    };
    let patch = WfpPatch::Status {
        status: new_status,
        progress: Some(new_progress),
    };
    ctx.patch::<WorkflowProgress>(
        wf.id,
        patch,
        Some(NoRow::warn(format!(
            "[WFP] Task.StatusUpdated event for unknown workflow: task_id={task_id}, wf_id={:?}. Skipping status update.",
            Some(wf.id)
        ))),
    )
}

fn status_str(status: &Value, task_id: Uuid) -> Option<&str> {
    let s = status.as_str();
    if s.is_none() {
        log::warn!(
            "[WFP] task {task_id}: status {} is not a str; workflow status not updated",
            crate::domain::codec::encode(status)
        );
    }
    s
}

/// Python's truth value of a stored value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::BigInt(_) => true,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::List(l) => !l.is_empty(),
        Value::Dict(d) => !d.is_empty(),
        Value::Decimal(d) => !matches!(d.parse::<f64>(), Ok(f) if f == 0.0),
        Value::Uuid(_) | Value::DateTime(_) => true,
    }
}

// ------------------------------------------------------------------ queries

/// WorkflowProgress: one workflow's row, if known (times as stored).
pub fn get_workflow(tx: &mut dyn Tx, workflow_id: Uuid) -> Result<Option<WorkflowProgressRow>> {
    view::get::<WorkflowProgress>(tx, workflow_id)
}

/// WorkflowProgress: the workflows of a user and/or group (all without
/// filters), newest start_time first (then by workflow_id).
pub fn list_workflows(
    tx: &mut dyn Tx,
    user: Option<i64>,
    group: Option<i64>,
) -> Result<Vec<WorkflowProgressRow>> {
    let mut params = Vec::new();
    let Some(cond) = view::filters(("\"user\"", "\"group\""), user, group, &mut params) else {
        return Ok(Vec::new());
    };
    view::select::<WorkflowProgress>(
        tx,
        &format!("1 = 1{cond}"),
        &params,
        "start_time DESC, workflow_id",
    )
}

/// Every row of biomero_workflow_progress_view by workflow_id.
pub fn all_workflows(tx: &mut dyn Tx) -> Result<Vec<WorkflowProgressRow>> {
    view::all::<WorkflowProgress>(tx)
}
