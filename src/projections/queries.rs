//! The read side of the four views: what the Python view classes
//! (JobAccounting, JobProgress, WorkflowProgress, WorkflowAnalytics) answer,
//! as plain Rust data, plus whole-table listings for tests.
//!
//! Filters compare with 32-bit columns; a filter value outside that range
//! matches no row (instead of a database error). Aggregates that the
//! reference left to SQL (durations, dates) are computed here from the stored
//! times so that SQLite and Postgres give the same answers.

use crate::error::Result;
use crate::projections::{job_accounting, job_progress, workflow_analytics, workflow_progress};
use crate::store::{Backend, Kind, Sql, Tx};
use chrono::{NaiveDate, NaiveDateTime};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A row of `biomero_job_view`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobViewRow {
    pub slurm_job_id: i64,
    pub user: i64,
    pub group: i64,
    pub task_id: Option<Uuid>,
}

/// A row of `biomero_job_progress_view`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobProgressRow {
    pub slurm_job_id: i64,
    pub status: String,
    pub progress: Option<String>,
}

/// A row of `biomero_workflow_progress_view`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkflowProgressRow {
    pub workflow_id: Uuid,
    pub status: Option<String>,
    pub progress: Option<String>,
    pub user: Option<i64>,
    pub group: Option<i64>,
    pub name: Option<String>,
    pub task: Option<String>,
    pub main_task_name: Option<String>,
    /// Naive UTC.
    pub start_time: NaiveDateTime,
}

/// A row of `biomero_task_execution`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskExecutionRow {
    pub task_id: Uuid,
    pub task_name: String,
    pub task_version: Option<String>,
    pub user_id: Option<i64>,
    pub group_id: Option<i64>,
    pub status: String,
    /// Naive UTC.
    pub start_time: NaiveDateTime,
    pub end_time: Option<NaiveDateTime>,
    pub error_type: Option<String>,
}

/// `get_jobs` answers: `(key, job ids ascending)` pairs. See [`get_jobs`].
pub type JobsByUser = Vec<(Option<i64>, Vec<i64>)>;

/// `(task_name, task_version)`, the key of the analytics answers.
pub type TaskKey = (String, Option<String>);

// ------------------------------------------------------------------ cells

fn int(v: &Sql) -> Option<i64> {
    v.as_i64()
}

fn text(v: &Sql) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn bad_row(table: &str, what: &str) -> crate::error::Error {
    crate::error::Error::Database {
        backend: "view",
        message: format!("{table}: {what} is NULL or unreadable"),
    }
}

/// Appends `AND col = $n` for each given filter. `None` when a filter is
/// outside the 32-bit range (no row can match).
fn filters(
    cols: (&str, &str),
    user: Option<i64>,
    group: Option<i64>,
    params: &mut Vec<Sql>,
) -> Option<String> {
    let mut sql = String::new();
    for (col, v) in [(cols.0, user), (cols.1, group)] {
        if let Some(v) = v {
            i32::try_from(v).ok()?;
            params.push(Sql::Int(v));
            sql.push_str(&format!(" AND {col} = ${}", params.len()));
        }
    }
    Some(sql)
}

// ------------------------------------------------------------ JobAccounting

const JOB_COLUMNS: &str = "slurm_job_id, \"user\", \"group\", task_id";
const JOB_KINDS: [Kind; 4] = [Kind::Int, Kind::Int, Kind::Int, Kind::Uuid];

fn job_row(r: &[Sql]) -> Result<JobViewRow> {
    let t = job_accounting::TABLE;
    Ok(JobViewRow {
        slurm_job_id: int(&r[0]).ok_or_else(|| bad_row(t, "slurm_job_id"))?,
        user: int(&r[1]).ok_or_else(|| bad_row(t, "user"))?,
        group: int(&r[2]).ok_or_else(|| bad_row(t, "group"))?,
        task_id: r[3].as_uuid(),
    })
}

/// JobAccounting.get_jobs: with neither filter, every user with their job
/// ids (users in the order of their lowest job id); with a filter, one entry
/// keyed by the `user` argument as given (so `None` when only `group` is
/// given) holding the matching job ids. Job ids ascending.
pub fn get_jobs(tx: &mut dyn Tx, user: Option<i64>, group: Option<i64>) -> Result<JobsByUser> {
    if user.is_none() && group.is_none() {
        let rows = tx.query(
            &format!(
                "SELECT \"user\", slurm_job_id FROM {} ORDER BY slurm_job_id",
                job_accounting::TABLE
            ),
            &[],
            &[Kind::Int, Kind::Int],
        )?;
        let mut out: JobsByUser = Vec::new();
        for r in rows {
            let (u, j) = (
                int(&r[0]),
                int(&r[1]).ok_or_else(|| bad_row(job_accounting::TABLE, "slurm_job_id"))?,
            );
            match out.iter_mut().find(|(k, _)| *k == u) {
                Some((_, jobs)) => jobs.push(j),
                None => out.push((u, vec![j])),
            }
        }
        return Ok(out);
    }
    let mut params = Vec::new();
    let Some(cond) = filters(("\"user\"", "\"group\""), user, group, &mut params) else {
        return Ok(vec![(user, Vec::new())]);
    };
    let rows = tx.query(
        &format!(
            "SELECT slurm_job_id FROM {} WHERE 1 = 1{cond} ORDER BY slurm_job_id",
            job_accounting::TABLE
        ),
        &params,
        &[Kind::Int],
    )?;
    Ok(vec![(
        user,
        rows.iter().filter_map(|r| int(&r[0])).collect(),
    )])
}

/// JobAccounting.get_task_id: the task of a Slurm job, if known.
pub fn get_task_id(tx: &mut dyn Tx, job_id: i64) -> Result<Option<Uuid>> {
    Ok(get_job(tx, job_id)?.and_then(|r| r.task_id))
}

/// One row of biomero_job_view.
pub fn get_job(tx: &mut dyn Tx, job_id: i64) -> Result<Option<JobViewRow>> {
    if i32::try_from(job_id).is_err() {
        return Ok(None);
    }
    let rows = tx.query(
        &format!(
            "SELECT {JOB_COLUMNS} FROM {} WHERE slurm_job_id = $1",
            job_accounting::TABLE
        ),
        &[Sql::Int(job_id)],
        &JOB_KINDS,
    )?;
    rows.first().map(|r| job_row(r)).transpose()
}

/// Every row of biomero_job_view by slurm_job_id.
pub fn all_jobs(tx: &mut dyn Tx) -> Result<Vec<JobViewRow>> {
    let rows = tx.query(
        &format!(
            "SELECT {JOB_COLUMNS} FROM {} ORDER BY slurm_job_id",
            job_accounting::TABLE
        ),
        &[],
        &JOB_KINDS,
    )?;
    rows.iter().map(|r| job_row(r)).collect()
}

// -------------------------------------------------------------- JobProgress

const JOB_PROGRESS_COLUMNS: &str = "slurm_job_id, status, progress";
const JOB_PROGRESS_KINDS: [Kind; 3] = [Kind::Int, Kind::Text, Kind::Text];

fn job_progress_row(r: &[Sql]) -> Result<JobProgressRow> {
    let t = job_progress::TABLE;
    Ok(JobProgressRow {
        slurm_job_id: int(&r[0]).ok_or_else(|| bad_row(t, "slurm_job_id"))?,
        status: text(&r[1]).ok_or_else(|| bad_row(t, "status"))?,
        progress: text(&r[2]),
    })
}

/// JobProgress: the status and progress of a Slurm job, if known.
pub fn get_job_progress(tx: &mut dyn Tx, job_id: i64) -> Result<Option<JobProgressRow>> {
    if i32::try_from(job_id).is_err() {
        return Ok(None);
    }
    let rows = tx.query(
        &format!(
            "SELECT {JOB_PROGRESS_COLUMNS} FROM {} WHERE slurm_job_id = $1",
            job_progress::TABLE
        ),
        &[Sql::Int(job_id)],
        &JOB_PROGRESS_KINDS,
    )?;
    rows.first().map(|r| job_progress_row(r)).transpose()
}

/// Every row of biomero_job_progress_view by slurm_job_id.
pub fn all_job_progress(tx: &mut dyn Tx) -> Result<Vec<JobProgressRow>> {
    let rows = tx.query(
        &format!(
            "SELECT {JOB_PROGRESS_COLUMNS} FROM {} ORDER BY slurm_job_id",
            job_progress::TABLE
        ),
        &[],
        &JOB_PROGRESS_KINDS,
    )?;
    rows.iter().map(|r| job_progress_row(r)).collect()
}

// --------------------------------------------------------- WorkflowProgress

const WORKFLOW_COLUMNS: &str =
    "workflow_id, status, progress, \"user\", \"group\", name, task, main_task_name, start_time";
const WORKFLOW_KINDS: [Kind; 9] = [
    Kind::Uuid,
    Kind::Text,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Text,
    Kind::Text,
    Kind::Time,
];

fn workflow_row(r: &[Sql]) -> Result<WorkflowProgressRow> {
    let t = workflow_progress::TABLE;
    Ok(WorkflowProgressRow {
        workflow_id: r[0].as_uuid().ok_or_else(|| bad_row(t, "workflow_id"))?,
        status: text(&r[1]),
        progress: text(&r[2]),
        user: int(&r[3]),
        group: int(&r[4]),
        name: text(&r[5]),
        task: text(&r[6]),
        main_task_name: text(&r[7]),
        start_time: r[8].as_time().ok_or_else(|| bad_row(t, "start_time"))?,
    })
}

/// WorkflowProgress: one workflow's row, if known (times as stored).
pub fn get_workflow(tx: &mut dyn Tx, workflow_id: Uuid) -> Result<Option<WorkflowProgressRow>> {
    one_workflow(tx, workflow_id, WORKFLOW_COLUMNS)
}

fn one_workflow(
    tx: &mut dyn Tx,
    workflow_id: Uuid,
    columns: &str,
) -> Result<Option<WorkflowProgressRow>> {
    let rows = tx.query(
        &format!(
            "SELECT {columns} FROM {} WHERE workflow_id = $1",
            workflow_progress::TABLE
        ),
        &[Sql::Uuid(workflow_id)],
        &WORKFLOW_KINDS,
    )?;
    rows.first().map(|r| workflow_row(r)).transpose()
}

/// A select list with its time columns read as UTC: on Postgres the stored
/// wall time of the session's `TimeZone` (what the reference writes, see
/// [`time_param`]) converted back; on SQLite as stored (UTC).
fn utc_columns(backend: Backend, columns: &str) -> String {
    match backend {
        Backend::Sqlite => columns.to_owned(),
        Backend::Postgres => columns
            .replace("start_time", "start_time::timestamptz")
            .replace("end_time", "end_time::timestamptz"),
    }
}

/// The placeholder `$n` of a UTC time written to a view column: on Postgres
/// as `timestamptz`, which the column (`timestamp without time zone`)
/// stores as the wall time of the session's `TimeZone`, as the reference's
/// aware datetimes are stored; on SQLite the UTC text, as the reference
/// writes it.
pub fn time_param(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("${n}"),
        Backend::Postgres => format!("${n}::timestamptz"),
    }
}

/// [`get_workflow`] for the projectors: times in UTC ([`utc_columns`]).
pub fn get_workflow_utc(tx: &mut dyn Tx, workflow_id: Uuid) -> Result<Option<WorkflowProgressRow>> {
    let columns = utc_columns(tx.backend(), WORKFLOW_COLUMNS);
    one_workflow(tx, workflow_id, &columns)
}

/// WorkflowProgress: the workflows of a user and/or group (all without
/// filters), newest start_time first (then by workflow_id).
pub fn list_workflows(
    tx: &mut dyn Tx,
    user: Option<i64>,
    group: Option<i64>,
) -> Result<Vec<WorkflowProgressRow>> {
    let mut params = Vec::new();
    let Some(cond) = filters(("\"user\"", "\"group\""), user, group, &mut params) else {
        return Ok(Vec::new());
    };
    let rows = tx.query(
        &format!(
            "SELECT {WORKFLOW_COLUMNS} FROM {} WHERE 1 = 1{cond} ORDER BY start_time DESC, workflow_id",
            workflow_progress::TABLE
        ),
        &params,
        &WORKFLOW_KINDS,
    )?;
    rows.iter().map(|r| workflow_row(r)).collect()
}

/// Every row of biomero_workflow_progress_view by workflow_id.
pub fn all_workflows(tx: &mut dyn Tx) -> Result<Vec<WorkflowProgressRow>> {
    let rows = tx.query(
        &format!(
            "SELECT {WORKFLOW_COLUMNS} FROM {} ORDER BY workflow_id",
            workflow_progress::TABLE
        ),
        &[],
        &WORKFLOW_KINDS,
    )?;
    rows.iter().map(|r| workflow_row(r)).collect()
}

// -------------------------------------------------------- WorkflowAnalytics

const TASK_COLUMNS: &str =
    "task_id, task_name, task_version, user_id, group_id, status, start_time, end_time, error_type";
const TASK_KINDS: [Kind; 9] = [
    Kind::Uuid,
    Kind::Text,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Time,
    Kind::Time,
    Kind::Text,
];

fn task_row(r: &[Sql]) -> Result<TaskExecutionRow> {
    let t = workflow_analytics::TABLE;
    Ok(TaskExecutionRow {
        task_id: r[0].as_uuid().ok_or_else(|| bad_row(t, "task_id"))?,
        task_name: text(&r[1]).ok_or_else(|| bad_row(t, "task_name"))?,
        task_version: text(&r[2]),
        user_id: int(&r[3]),
        group_id: int(&r[4]),
        status: text(&r[5]).ok_or_else(|| bad_row(t, "status"))?,
        start_time: r[6].as_time().ok_or_else(|| bad_row(t, "start_time"))?,
        end_time: r[7].as_time(),
        error_type: text(&r[8]),
    })
}

/// One row of biomero_task_execution (times as stored).
pub fn get_task_execution(tx: &mut dyn Tx, task_id: Uuid) -> Result<Option<TaskExecutionRow>> {
    one_task(tx, task_id, TASK_COLUMNS)
}

/// [`get_task_execution`] for the projectors: times in UTC.
pub fn get_task_execution_utc(tx: &mut dyn Tx, task_id: Uuid) -> Result<Option<TaskExecutionRow>> {
    let columns = utc_columns(tx.backend(), TASK_COLUMNS);
    one_task(tx, task_id, &columns)
}

fn one_task(tx: &mut dyn Tx, task_id: Uuid, columns: &str) -> Result<Option<TaskExecutionRow>> {
    let rows = tx.query(
        &format!(
            "SELECT {columns} FROM {} WHERE task_id = $1",
            workflow_analytics::TABLE
        ),
        &[Sql::Uuid(task_id)],
        &TASK_KINDS,
    )?;
    rows.first().map(|r| task_row(r)).transpose()
}

/// Every row of biomero_task_execution by task_id.
pub fn all_task_executions(tx: &mut dyn Tx) -> Result<Vec<TaskExecutionRow>> {
    let rows = tx.query(
        &format!(
            "SELECT {TASK_COLUMNS} FROM {} ORDER BY task_id",
            workflow_analytics::TABLE
        ),
        &[],
        &TASK_KINDS,
    )?;
    rows.iter().map(|r| task_row(r)).collect()
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
    let Some(cond) = filters(("user_id", "group_id"), user, group, &mut params) else {
        return Ok(Vec::new());
    };
    let rows = tx.query(
        &format!(
            "SELECT {TASK_COLUMNS} FROM {} WHERE 1 = 1{extra}{cond} ORDER BY task_id",
            workflow_analytics::TABLE
        ),
        &params,
        &TASK_KINDS,
    )?;
    rows.iter().map(|r| task_row(r)).collect()
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
