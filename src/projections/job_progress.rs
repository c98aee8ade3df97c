//! biomero_job_progress_view: the latest status and progress of each Slurm
//! job.
//!
//! JobIdAdded(T, J) makes J the task's current job (read back from the log:
//! the task's latest JobIdAdded); StatusUpdated and ProgressUpdated of T
//! then update J's row, keeping the other column.

use crate::domain::{Event, Payload, Value};
use crate::error::Result;
use crate::projections::cache::Ctx;
use crate::projections::lookup;
use crate::projections::queries::JobProgressRow;
use crate::store::{Sql, Tx};
use std::sync::OnceLock;

pub const TABLE: &str = "biomero_job_progress_view";

/// A change of one job's row. The row is created when missing (progress
/// None, respectively status `UNKNOWN`); the other column is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum JpPatch {
    Status(String),
    Progress(Option<String>),
}

impl JpPatch {
    /// The change applied to a row in memory.
    pub(crate) fn apply(self, job: i32, row: &mut Option<JobProgressRow>) {
        let r = row.get_or_insert_with(|| JobProgressRow {
            slurm_job_id: job.into(),
            status: "UNKNOWN".into(),
            progress: None,
        });
        match self {
            JpPatch::Status(s) => r.status = s,
            JpPatch::Progress(p) => r.progress = p,
        }
    }

    /// The same change as one (queued) statement.
    pub(crate) fn execute(&self, tx: &mut dyn Tx, job: i32) -> Result<()> {
        let (sql, status, progress) = match self {
            JpPatch::Status(s) => (
                "ON CONFLICT (slurm_job_id) DO UPDATE SET status = excluded.status",
                Sql::Text(s.clone()),
                Sql::Null,
            ),
            JpPatch::Progress(p) => (
                "ON CONFLICT (slurm_job_id) DO UPDATE SET progress = excluded.progress",
                Sql::Text("UNKNOWN".into()),
                p.clone().into(),
            ),
        };
        tx.queue(
            TABLE,
            &format!(
                "INSERT INTO {TABLE} (slurm_job_id, status, progress) VALUES ($1, $2, $3) {sql}"
            ),
            vec![Sql::Int(job.into()), status, progress],
            None,
        )
    }
}

pub fn apply(ctx: &mut Ctx<'_>, event: &Event) -> Result<()> {
    let task_id = event.originator_id;
    let (status, progress) = match &event.payload {
        Payload::StatusUpdated { status } => (Some(status), None),
        Payload::ProgressUpdated { progress } => (None, Some(progress)),
        _ => return Ok(()),
    };
    let Some(job) = ctx.latest_job_id_with(task_id, lookup::job_id_column)? else {
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
        (_, Some(p)) => match lookup::text_column(p) {
            Ok(p) => JpPatch::Progress(p),
            Err(why) => {
                log::warn!("[JP] job {job}: progress {why}; row not updated");
                return Ok(());
            }
        },
        _ => unreachable!("one of status and progress is set"),
    };
    log::debug!("[JP] Inserted/Updated job progress in view table: job_id={job}, {patch:?}");
    ctx.patch_job_progress(job, patch)
}

/// A status as stored text; `None` (after a warning) when the NOT NULL column
/// cannot hold it.
fn text(v: &Value, what: &str, job: i32) -> Option<String> {
    match lookup::text_column(v) {
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

/// Upserts a whole row.
pub(crate) fn write(tx: &mut dyn Tx, row: &JobProgressRow) -> Result<()> {
    static SQL: OnceLock<String> = OnceLock::new();
    tx.execute(
        SQL.get_or_init(|| {
            format!(
                "INSERT INTO {TABLE} (slurm_job_id, status, progress) VALUES ($1, $2, $3) \
                 ON CONFLICT (slurm_job_id) DO UPDATE SET status = excluded.status, progress = excluded.progress"
            )
        }),
        &[
            Sql::Int(row.slurm_job_id),
            Sql::Text(row.status.clone()),
            row.progress.clone().into(),
        ],
    )?;
    Ok(())
}

pub(crate) fn delete(tx: &mut dyn Tx, job: i32) -> Result<()> {
    tx.execute(
        &format!("DELETE FROM {TABLE} WHERE slurm_job_id = $1"),
        &[Sql::Int(job.into())],
    )?;
    Ok(())
}
