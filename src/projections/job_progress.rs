//! biomero_job_progress_view: the latest status and progress of each Slurm
//! job.
//!
//! JobIdAdded(T, J) makes J the task's current job (read back from the log:
//! the task's latest JobIdAdded); StatusUpdated and ProgressUpdated of T
//! then update J's row, keeping the other column.

use crate::domain::{Event, Payload, Value};
use crate::error::Result;
use crate::projections::{lookup, queries};
use crate::store::{Sql, Tx};

pub const TABLE: &str = "biomero_job_progress_view";

pub fn apply(tx: &mut dyn Tx, id: i64, event: &Event) -> Result<()> {
    let task_id = event.originator_id;
    let (status, progress) = match &event.payload {
        Payload::StatusUpdated { status } => (Some(status), None),
        Payload::ProgressUpdated { progress } => (None, Some(progress)),
        _ => return Ok(()),
    };
    let Some(job_value) = lookup::latest_job_id(tx, task_id, id)? else { return Ok(()) };
    let job = match lookup::job_id_column(&job_value) {
        Ok(j) => i64::from(j),
        Err(why) => {
            log::warn!("[JP] task {task_id}: {why}; {TABLE} gets no row for this update");
            return Ok(());
        }
    };
    let row = queries::get_job_progress(tx, job)?;
    let (new_status, new_progress) = match (status, progress) {
        (Some(s), _) => (text(s, "status", job)?, row.and_then(|r| r.progress)),
        (_, Some(p)) => (
            Some(row.map_or_else(|| "UNKNOWN".to_owned(), |r| r.status)),
            match lookup::text_column(p) {
                Ok(p) => p,
                Err(why) => {
                    log::warn!("[JP] job {job}: progress {why}; row not updated");
                    return Ok(());
                }
            },
        ),
        _ => unreachable!("one of status and progress is set"),
    };
    let Some(new_status) = new_status else { return Ok(()) };
    tx.execute(
        &format!(
            "INSERT INTO {TABLE} (slurm_job_id, status, progress) VALUES ($1, $2, $3) \
             ON CONFLICT (slurm_job_id) DO UPDATE SET status = excluded.status, progress = excluded.progress"
        ),
        &[Sql::Int(job), Sql::Text(new_status.clone()), new_progress.clone().into()],
    )?;
    log::debug!("[JP] Inserted/Updated job progress in view table: job_id={job}, status={new_status}, progress={new_progress:?}");
    Ok(())
}

/// A status as stored text; `None` (after a warning) when the NOT NULL column
/// cannot hold it.
fn text(v: &Value, what: &str, job: i64) -> Result<Option<String>> {
    Ok(match lookup::text_column(v) {
        Ok(Some(t)) => Some(t),
        Ok(None) => {
            log::warn!("[JP] job {job}: {what} None cannot be stored ({what} is NOT NULL); row not updated");
            None
        }
        Err(why) => {
            log::warn!("[JP] job {job}: {what} {why}; row not updated");
            None
        }
    })
}
