//! biomero_job_view: which user, group and task a Slurm job belongs to.
//!
//! JobIdAdded(T, J): T's workflow W (established by TaskAdded(W, T)) gives
//! the user and group; the row of J is upserted, so a recycled Slurm id
//! overwrites the old row (as in biomero 2.8.3).

use crate::domain::{Event, Payload};
use crate::error::Result;
use crate::projections::cache::Ctx;
use crate::projections::lookup;
use crate::projections::queries::JobViewRow;
use crate::store::{Sql, Tx};
use std::sync::OnceLock;

pub const TABLE: &str = "biomero_job_view";

pub fn apply(ctx: &mut Ctx<'_>, event: &Event) -> Result<()> {
    let Payload::JobIdAdded { job_id } = &event.payload else {
        return Ok(());
    };
    let task_id = event.originator_id;
    let Some(task) = ctx.task(task_id)? else {
        log::debug!("[JA] JobIdAdded ignored: task {task_id} has no TaskCreated");
        return Ok(());
    };
    let Some(wf) = ctx.task_workflow(&task)? else {
        log::debug!("[JA] JobIdAdded event ignored: task_id={task_id} not found in tasks");
        return Ok(());
    };
    let job = match lookup::job_id_column(job_id) {
        Ok(j) => j,
        Err(why) => {
            log::warn!(
                "[JA] task {task_id}: {why}; the event is stored but {TABLE} gets no row for it"
            );
            return Ok(());
        }
    };
    let (user, group) = match (lookup::int_column(&wf.user), lookup::int_column(&wf.group)) {
        (Ok(Some(u)), Ok(Some(g))) => (u, g),
        (u, g) => {
            log::warn!(
                "[JA] job {job} of task {task_id}: workflow {} has user {} and group {}, which {TABLE} cannot hold; row skipped",
                wf.id,
                describe(u),
                describe(g)
            );
            return Ok(());
        }
    };
    log::debug!("[JA] Upserted job into view table: job_id={job}, user={user}, group={group}, task_id={task_id}");
    ctx.put_job(JobViewRow {
        slurm_job_id: job.into(),
        user: user.into(),
        group: group.into(),
        task_id: Some(task_id),
    })
}

fn describe(v: std::result::Result<Option<i32>, String>) -> String {
    match v {
        Ok(Some(i)) => i.to_string(),
        Ok(None) => "None".into(),
        Err(why) => why,
    }
}

/// The upsert of a whole row: SQL and parameters.
fn upsert(row: &JobViewRow) -> (&'static str, Vec<Sql>) {
    static SQL: OnceLock<String> = OnceLock::new();
    (
        SQL.get_or_init(|| format!(
            "INSERT INTO {TABLE} (slurm_job_id, \"user\", \"group\", task_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (slurm_job_id) DO UPDATE SET \"user\" = excluded.\"user\", \
             \"group\" = excluded.\"group\", task_id = excluded.task_id"
        )),
        vec![
            Sql::Int(row.slurm_job_id),
            Sql::Int(row.user),
            Sql::Int(row.group),
            row.task_id.map_or(Sql::Null, Sql::Uuid),
        ],
    )
}

/// Upserts a row.
pub(crate) fn write(tx: &mut dyn Tx, row: &JobViewRow) -> Result<()> {
    let (sql, params) = upsert(row);
    tx.execute(sql, &params)?;
    Ok(())
}

/// [`write`], queued with the transaction's other view writes.
pub(crate) fn queue_write(tx: &mut dyn Tx, row: &JobViewRow) -> Result<()> {
    let (sql, params) = upsert(row);
    tx.queue(TABLE, sql, params, None)
}
