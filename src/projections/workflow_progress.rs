//! biomero_workflow_progress_view: per workflow its status, progress, owner,
//! name, latest task, main task name and start time.
//!
//! The row is the state: each event reads the workflow's row, changes the
//! columns the event determines and upserts it. What the row does not hold
//! (task names, the workflow of a task, the latest task progress) is read
//! from the event log up to the event being applied.

use crate::domain::{Event, Payload, Value};
use crate::error::Result;
use crate::projections::lookup::{self, TaskInfo, WorkflowInfo};
use crate::projections::queries::{self, WorkflowProgressRow};
use crate::store::{Sql, Tx};
use uuid::Uuid;

pub const TABLE: &str = "biomero_workflow_progress_view";

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

pub fn apply(tx: &mut dyn Tx, id: i64, event: &Event) -> Result<()> {
    let wf_or_task = event.originator_id;
    match &event.payload {
        Payload::WorkflowInitiated { name, user, group, .. } => initiated(tx, event, name, user, group),
        Payload::WorkflowCompleted => set_status(tx, wf_or_task, "WorkflowCompleted", wfs::DONE, Some("100%")),
        Payload::WorkflowFailed { .. } => set_status(tx, wf_or_task, "WorkflowFailed", wfs::FAILED, None),
        Payload::TaskAdded { task_id } => task_added(tx, id, wf_or_task, *task_id),
        Payload::StatusUpdated { status } => status_updated(tx, id, wf_or_task, status),
        // ProgressUpdated changes no column: the latest task progress is read
        // from the log when a status update needs it.
        _ => Ok(()),
    }
}

fn initiated(tx: &mut dyn Tx, event: &Event, name: &Value, user: &Value, group: &Value) -> Result<()> {
    let wf = event.originator_id;
    let (user, group, name) = match (lookup::int_column(user), lookup::int_column(group), lookup::text_column(name)) {
        (Ok(u), Ok(g), Ok(n)) => (u, g, n),
        (u, g, n) => {
            let why: Vec<String> = [u.err().map(|e| format!("user {e}")), g.err().map(|e| format!("group {e}")), n.err().map(|e| format!("name {e}"))]
                .into_iter()
                .flatten()
                .collect();
            log::warn!("[WFP] workflow {wf}: {}; {TABLE} gets no row for it", why.join(", "));
            return Ok(());
        }
    };
    write(
        tx,
        &WorkflowProgressRow {
            workflow_id: wf,
            status: Some(wfs::INITIALIZING.into()),
            progress: Some("0%".into()),
            user: user.map(i64::from),
            group: group.map(i64::from),
            name,
            task: None,
            main_task_name: None,
            start_time: event.timestamp.naive_utc(),
        },
    )
}

fn set_status(tx: &mut dyn Tx, wf: Uuid, what: &str, status: &str, progress: Option<&str>) -> Result<()> {
    let Some(mut row) = queries::get_workflow(tx, wf)? else {
        log::warn!("[WFP] {what} event for unknown workflow: wf_id={wf}. Skipping status update.");
        return Ok(());
    };
    row.status = Some(status.into());
    if let Some(p) = progress {
        row.progress = Some(p.into());
    }
    write(tx, &row)
}

fn task_added(tx: &mut dyn Tx, id: i64, wf_id: Uuid, task_id: Uuid) -> Result<()> {
    let Some(mut row) = queries::get_workflow(tx, wf_id)? else {
        log::debug!("[WFP] Task added to a workflow without a row: task_id={task_id}, wf_id={wf_id}");
        return Ok(());
    };
    let Some(task) = lookup::task(tx, task_id, id)? else { return Ok(()) };
    if task.workflow_id != wf_id {
        log::warn!("[WFP] task {task_id} added to workflow {wf_id} was created for workflow {}; ignored", task.workflow_id);
        return Ok(());
    }
    let Some(wf) = lookup::workflow(tx, wf_id, id)? else { return Ok(()) };
    row.task = name_text(&task);
    row.main_task_name = main_task_name(tx, &wf, id, row.task.clone())?;
    write(tx, &row)
}

/// A task name as stored (numbers as Python's `str()`); other values, which
/// the reference cannot handle either, count as no name.
fn name_text(task: &TaskInfo) -> Option<String> {
    lookup::text_column(&task.name).ok().flatten()
}

/// The first task of the workflow (in TaskAdded order) that is not an
/// infrastructure task (`_slurm_`, `slurm_`, `convert_`, case-insensitive),
/// with its original case; failing that, `fallback` (the workflow's task).
fn main_task_name(tx: &mut dyn Tx, wf: &WorkflowInfo, id: i64, fallback: Option<String>) -> Result<Option<String>> {
    for (task, _, _) in lookup::workflow_tasks(tx, wf, id)? {
        if let Some(name) = name_text(&task) {
            let lower = name.to_lowercase();
            if !["_slurm_", "slurm_", "convert_"].iter().any(|p| lower.starts_with(p)) {
                return Ok(Some(name));
            }
        }
    }
    Ok(fallback)
}

fn status_updated(tx: &mut dyn Tx, id: i64, task_id: Uuid, status: &Value) -> Result<()> {
    let Some(task) = lookup::task(tx, task_id, id)? else { return Ok(()) };
    let Some(task_name) = task.name.as_str().map(str::to_lowercase) else {
        log::warn!("[WFP] task {task_id}: task name {:?} is not a str; status update not projected", task.name);
        return Ok(());
    };
    let wf = lookup::task_workflow(tx, &task, id)?;
    let Some(mut row) = (match &wf {
        Some(wf) => queries::get_workflow(tx, wf.id)?,
        None => None,
    }) else {
        log::warn!(
            "[WFP] Task.StatusUpdated event for unknown workflow: task_id={task_id}, wf_id={:?}. Skipping status update.",
            wf.as_ref().map(|w| w.id)
        );
        return Ok(());
    };
    let wf = wf.expect("a row implies a workflow");
    let is_postprocessing = status.as_str() == Some(wfs::POSTPROCESSING);
    let (new_status, new_progress) = match task_name.as_str() {
        "_slurm_image_transfer.py" => (wfs::TRANSFERRING.to_owned(), "5%".to_owned()),
        n if n.starts_with("convert_") => (wfs::CONVERTING.to_owned(), "25%".to_owned()),
        "slurm_get_results.py" if is_postprocessing => (wfs::POSTPROCESSING.to_owned(), "95%".to_owned()),
        "slurm_get_results.py" => (wfs::RETRIEVING.to_owned(), "90%".to_owned()),
        "slurm_import_results.py" => {
            let Some(s) = status_str(status, task_id) else { return Ok(()) };
            // getattr(workflow_status, s, s)
            let mapped = if s == "JOB_STATUS" { wfs::JOB_STATUS.to_owned() } else { s.to_owned() };
            (mapped, if is_postprocessing { "95%" } else { "90%" }.to_owned())
        }
        "slurm_run_workflow.py" => (wfs::RUNNING.to_owned(), "50%".to_owned()),
        _ => {
            let Some(s) = status_str(status, task_id) else { return Ok(()) };
            let mut progress = "50%".to_owned();
            if let Some(p) = lookup::latest_task_progress(tx, &wf, id)? {
                if truthy(&p) {
                    match lookup::interpolate_progress(&p) {
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
    row.status = Some(new_status);
    row.progress = Some(new_progress);
    write(tx, &row)
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

fn write(tx: &mut dyn Tx, row: &WorkflowProgressRow) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO {TABLE} (workflow_id, status, progress, \"user\", \"group\", name, task, main_task_name, start_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (workflow_id) DO UPDATE SET status = excluded.status, progress = excluded.progress, \
             \"user\" = excluded.\"user\", \"group\" = excluded.\"group\", name = excluded.name, task = excluded.task, \
             main_task_name = excluded.main_task_name, start_time = excluded.start_time"
        ),
        &[
            Sql::Uuid(row.workflow_id),
            row.status.clone().into(),
            row.progress.clone().into(),
            row.user.into(),
            row.group.into(),
            row.name.clone().into(),
            row.task.clone().into(),
            row.main_task_name.clone().into(),
            Sql::Time(row.start_time),
        ],
    )?;
    log::debug!("[WFP] Inserted wf progress in view table: {row:?}");
    Ok(())
}
