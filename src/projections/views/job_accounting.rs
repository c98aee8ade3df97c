//! biomero_job_view: which user, group and task a Slurm job belongs to
//! (docs/projections.md, "biomero_job_view").
//!
//! JobIdAdded(T, J): T's workflow W (established by TaskAdded(W, T)) gives
//! the user and group; the row of J is upserted, so a recycled Slurm id
//! overwrites the old row (as in biomero 2.8.3).

use crate::domain::{Event, Payload};
use crate::error::Result;
use crate::projections::cache::Ctx;
use crate::projections::convert;
use crate::projections::projector::Projector;
use crate::projections::view::{self, view_row, Keyed, NoPatch, ViewRow, ViewSpec, ViewTable};
use crate::store::{Kind, Tx};
use uuid::Uuid;

pub const TABLE: &str = "biomero_job_view";

view_row! {
    /// A row of `biomero_job_view`.
    pub struct JobViewRow in TABLE;
    key slurm_job_id: i64 => "The Slurm job id.",
    user: i64 => "The OMERO user id.",
    group: i64 => "The OMERO group id.",
    task_id: Option<Uuid> => "The id of the task that ran the job, or None.",
}

impl ViewRow for JobViewRow {
    type Key = i32;
    fn key(&self) -> i32 {
        self.slurm_job_id as i32
    }
}

/// The JobAccounting view.
pub struct JobAccounting;

impl ViewTable for JobAccounting {
    type Row = JobViewRow;
    type Patch = NoPatch;
    const SPEC: ViewSpec = ViewSpec {
        name: "job_accounting",
        class_name: "JobAccounting",
        table: TABLE,
        tracking_table: "jobaccounting_tracking",
        events_table: "jobaccounting_events",
        model: "JobView",
        model_doc: "A row of ``biomero_job_view``: which user and group a Slurm job\nbelongs to, and its task.\n\nImmutable; compares, hashes and pickles by value.",
        columns: <JobViewRow as view::Cells>::COLUMNS,
        keyed_by: Keyed::Job,
        task_column: Some("task_id"),
    };
}

impl Projector for JobAccounting {
    fn apply(ctx: &mut Ctx<'_>, event: &Event) -> Result<()> {
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
        let job = match convert::job_id_column(job_id) {
            Ok(j) => j,
            Err(why) => {
                log::warn!(
                    "[JA] task {task_id}: {why}; the event is stored but {TABLE} gets no row for it"
                );
                return Ok(());
            }
        };
        let (user, group) = match (
            convert::int_column(&wf.user),
            convert::int_column(&wf.group),
        ) {
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
        ctx.put::<JobAccounting>(JobViewRow {
            slurm_job_id: job.into(),
            user: user.into(),
            group: group.into(),
            task_id: Some(task_id),
        })
    }
}

fn describe(v: std::result::Result<Option<i32>, String>) -> String {
    match v {
        Ok(Some(i)) => i.to_string(),
        Ok(None) => "None".into(),
        Err(why) => why,
    }
}

// ------------------------------------------------------------------ queries

/// `get_jobs` answers: `(key, job ids ascending)` pairs. See [`get_jobs`].
pub type JobsByUser = Vec<(Option<i64>, Vec<i64>)>;

/// JobAccounting.get_jobs: with neither filter, every user with their job
/// ids (users in the order of their lowest job id); with a filter, one entry
/// keyed by the `user` argument as given (so `None` when only `group` is
/// given) holding the matching job ids. Job ids ascending.
pub fn get_jobs(tx: &mut dyn Tx, user: Option<i64>, group: Option<i64>) -> Result<JobsByUser> {
    if user.is_none() && group.is_none() {
        let rows = tx.query(
            &format!("SELECT \"user\", slurm_job_id FROM {TABLE} ORDER BY slurm_job_id"),
            &[],
            &[Kind::Int, Kind::Int],
        )?;
        let mut out: JobsByUser = Vec::new();
        for r in rows {
            let (u, j) = (
                r[0].as_i64(),
                r[1].as_i64()
                    .ok_or_else(|| view::bad_row(TABLE, "slurm_job_id"))?,
            );
            match out.iter_mut().find(|(k, _)| *k == u) {
                Some((_, jobs)) => jobs.push(j),
                None => out.push((u, vec![j])),
            }
        }
        return Ok(out);
    }
    let mut params = Vec::new();
    let Some(cond) = view::filters(("\"user\"", "\"group\""), user, group, &mut params) else {
        return Ok(vec![(user, Vec::new())]);
    };
    let rows = tx.query(
        &format!("SELECT slurm_job_id FROM {TABLE} WHERE 1 = 1{cond} ORDER BY slurm_job_id"),
        &params,
        &[Kind::Int],
    )?;
    Ok(vec![(
        user,
        rows.iter().filter_map(|r| r[0].as_i64()).collect(),
    )])
}

/// JobAccounting.get_task_id: the task of a Slurm job, if known.
pub fn get_task_id(tx: &mut dyn Tx, job_id: i64) -> Result<Option<Uuid>> {
    Ok(get_job(tx, job_id)?.and_then(|r| r.task_id))
}

/// One row of biomero_job_view (none for an id outside the 32-bit range).
pub fn get_job(tx: &mut dyn Tx, job_id: i64) -> Result<Option<JobViewRow>> {
    match i32::try_from(job_id) {
        Ok(job) => view::get::<JobAccounting>(tx, job),
        Err(_) => Ok(None),
    }
}

/// Every row of biomero_job_view by slurm_job_id.
pub fn all_jobs(tx: &mut dyn Tx) -> Result<Vec<JobViewRow>> {
    view::all::<JobAccounting>(tx)
}
