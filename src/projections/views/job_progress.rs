//! biomero_job_progress_view: the latest status and progress of each Slurm
//! job (docs/projections.md, "biomero_job_progress_view").
//!
//! JobIdAdded(T, J) makes J the task's current job (read back from the log:
//! the task's latest JobIdAdded); StatusUpdated and ProgressUpdated of T
//! then update J's row, keeping the other column.

use crate::domain::{Event, Payload, Value};
use crate::error::Result;
use crate::projections::cache::Ctx;
use crate::projections::convert;
use crate::projections::facts::Need;
use crate::projections::projector::Projector;
use crate::projections::view::{self, view_row, Keyed, Patch, ViewRow, ViewSpec, ViewTable};
use crate::store::{Sql, Tx};

pub const TABLE: &str = "biomero_job_progress_view";

view_row! {
    /// A row of `biomero_job_progress_view`.
    pub struct JobProgressRow in TABLE;
    key slurm_job_id: i64 => "The Slurm job id.",
    status: String => "The job's last status (such as ``'RUNNING'``).",
    progress: Option<String> => "The job's last progress (such as ``'43%'``), or None.",
}

impl ViewRow for JobProgressRow {
    type Key = i32;
    fn key(&self) -> i32 {
        self.slurm_job_id as i32
    }
}

/// A change of one job's row. The row is created when missing (progress
/// None, respectively status `UNKNOWN`); the other column is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum JpPatch {
    Status(String),
    Progress(Option<String>),
}

impl Patch<JobProgressRow> for JpPatch {
    fn sets(&self) -> Vec<(&'static str, Sql)> {
        match self {
            JpPatch::Status(s) => vec![("status", Sql::Text(s.clone()))],
            JpPatch::Progress(p) => vec![("progress", p.clone().into())],
        }
    }

    fn apply(self, r: &mut JobProgressRow) {
        match self {
            JpPatch::Status(s) => r.status = s,
            JpPatch::Progress(p) => r.progress = p,
        }
    }

    fn create(&self, job: i32) -> Option<JobProgressRow> {
        Some(JobProgressRow {
            slurm_job_id: job.into(),
            status: "UNKNOWN".into(),
            progress: None,
        })
    }
}

/// The JobProgress view.
pub struct JobProgress;

impl ViewTable for JobProgress {
    type Row = JobProgressRow;
    type Patch = JpPatch;
    const SPEC: ViewSpec = ViewSpec {
        name: "job_progress",
        class_name: "JobProgress",
        table: TABLE,
        tracking_table: "jobprogress_tracking",
        events_table: "jobprogress_events",
        model: "JobProgressView",
        model_doc: "A row of ``biomero_job_progress_view``: the last status and progress\nof a Slurm job.\n\nImmutable; compares, hashes and pickles by value.",
        columns: <JobProgressRow as view::Cells>::COLUMNS,
        keyed_by: Keyed::Job,
        task_column: None,
    };
}

impl Projector for JobProgress {
    /// A status update needs the task's current job.
    fn needs(event: &Event) -> Need {
        match event.payload {
            Payload::StatusUpdated { .. } => Need {
                job: true,
                ..Need::default()
            },
            _ => Need::default(),
        }
    }

    fn apply(ctx: &mut Ctx<'_>, event: &Event) -> Result<()> {
        let task_id = event.originator_id;
        let (status, progress) = match &event.payload {
            Payload::StatusUpdated { status } => (Some(status), None),
            Payload::ProgressUpdated { progress } => (None, Some(progress)),
            _ => return Ok(()),
        };
        let Some(job) = ctx.latest_job_id_with(task_id, convert::job_id_column)? else {
            return Ok(());
        };
        let job = match job {
            Ok(j) => j,
            Err(why) => {
                log::warn!("[JP] task {task_id}: {why}; {TABLE} gets no row for this update");
                return Ok(());
            }
        };
        let patch = match (status, progress) {
            (Some(s), _) => match text(s, "status", job) {
                Some(s) => JpPatch::Status(s),
                None => return Ok(()),
            },
            (_, Some(p)) => match convert::text_column(p) {
                Ok(p) => JpPatch::Progress(p),
                Err(why) => {
                    log::warn!("[JP] job {job}: progress {why}; row not updated");
                    return Ok(());
                }
            },
            _ => unreachable!("one of status and progress is set"),
        };
        log::debug!("[JP] Inserted/Updated job progress in view table: job_id={job}, {patch:?}");
        ctx.patch::<JobProgress>(job, patch, None)
    }
}

/// A status as stored text; `None` (after a warning) when the NOT NULL column
/// cannot hold it.
fn text(v: &Value, what: &str, job: i32) -> Option<String> {
    match convert::text_column(v) {
        Ok(Some(t)) => Some(t),
        Ok(None) => {
            log::warn!("[JP] job {job}: {what} None cannot be stored ({what} is NOT NULL); row not updated");
            None
        }
        Err(why) => {
            log::warn!("[JP] job {job}: {what} {why}; row not updated");
            None
        }
    }
}

// ------------------------------------------------------------------ queries

/// JobProgress: the status and progress of a Slurm job, if known.
pub fn get_job_progress(tx: &mut dyn Tx, job_id: i64) -> Result<Option<JobProgressRow>> {
    match i32::try_from(job_id) {
        Ok(job) => view::get::<JobProgress>(tx, job),
        Err(_) => Ok(None),
    }
}

/// Every row of biomero_job_progress_view by slurm_job_id.
pub fn all_job_progress(tx: &mut dyn Tx) -> Result<Vec<JobProgressRow>> {
    view::all::<JobProgress>(tx)
}
