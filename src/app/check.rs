//! `check`: whether a database's views are current, for deployments (a
//! Docker `HEALTHCHECK`, a Kubernetes probe, a gate before an upgrade).
//!
//! Read-only and fast: one read transaction outside the shared stores (see
//! [`store::inspect`]), nothing adopted, migrated or created, a handful of
//! indexed queries. The facts it reads ([`Health`]) are also what `status`
//! shows; [`problems`] turns them into one line per problem.
//!
//! A rebuild cannot be left half-done: it changes the live tables in one
//! transaction (see `app::rebuild`). What an older version's interrupted
//! rebuild left behind shows as lag.

use crate::error::Result;
use crate::projections::views::workflow_progress::wfs;
use crate::projections::{self, View};
use crate::store::{self, catalog, schema::EVENTS_TABLE, Kind, Sql, Tx};
use chrono::NaiveDateTime;

/// Where one view stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewHealth {
    pub view: View,
    /// Whether its tracking table exists.
    pub tracked: bool,
    /// The last notification id it applied (its `WorkflowTracker` row).
    pub position: i64,
    /// How far biomero_rs itself projected (its own row); below `position`
    /// when another writer projected the events in between (their rows are
    /// re-derived by the next command or catch-up).
    pub own: i64,
    /// Events in the log after `position`.
    pub lag: u64,
}

/// Work that has not ended: how much, and since when.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unfinished {
    pub count: u64,
    /// The start time of the oldest (naive UTC).
    pub oldest: Option<NaiveDateTime>,
}

/// The facts `check` and `status` report.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// The stamped revision of the view schema.
    pub stamp: Option<String>,
    pub head: &'static str,
    /// View tables that do not exist.
    pub missing_tables: Vec<&'static str>,
    /// Whether the events table exists.
    pub has_log: bool,
    pub max_notification_id: i64,
    pub views: Vec<ViewHealth>,
    /// Workflows whose status is neither done nor failed.
    pub workflows: Unfinished,
    /// Tasks without an end time.
    pub tasks: Unfinished,
    /// The rebuild that runs now (pid, host, since when), if one does.
    pub rebuild: Option<String>,
}

/// What `check` requires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Events a view may be behind the log.
    pub max_lag: u64,
    /// Whether unfinished workflows or tasks are a problem.
    pub idle: bool,
}

fn count_after(tx: &mut dyn Tx, after: i64) -> Result<u64> {
    let rows = tx.query(
        &format!("SELECT COUNT(*) FROM {EVENTS_TABLE} WHERE id > $1"),
        &[Sql::Int(after)],
        &[Kind::Int],
    )?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64)
}

fn unfinished(tx: &mut dyn Tx, table: &str, condition: &str) -> Result<Unfinished> {
    if !catalog::table_present(tx, table)? {
        return Ok(Unfinished::default());
    }
    let rows = tx.query(
        &format!("SELECT COUNT(*), MIN(start_time) FROM {table} WHERE {condition}"),
        &[],
        &[Kind::Int, Kind::Time],
    )?;
    let row = rows.into_iter().next().unwrap_or_default();
    Ok(Unfinished {
        count: row.first().and_then(Sql::as_i64).unwrap_or(0) as u64,
        oldest: row.get(1).and_then(Sql::as_time),
    })
}

/// Reads the facts in `tx` (any read transaction); `rebuild` is the running
/// rebuild's description.
pub fn health_in(tx: &mut dyn Tx, rebuild: Option<String>) -> Result<Health> {
    let state = crate::migrations::state(tx)?;
    let has_log = catalog::table_present(tx, EVENTS_TABLE)?;
    let max = if has_log {
        tx.max_notification_id()?
    } else {
        0
    };
    let mut views = Vec::new();
    for view in View::ALL {
        let tracked = catalog::table_present(tx, view.tracking_table())?;
        let (position, own) = if tracked {
            let p = projections::tracking::positions_with_own(tx, &[view])?;
            (p.std[0], p.own[0])
        } else {
            (0, 0)
        };
        let lag = if has_log && position < max {
            count_after(tx, position)?
        } else {
            0
        };
        views.push(ViewHealth {
            view,
            tracked,
            position,
            own,
            lag,
        });
    }
    let workflows = unfinished(
        tx,
        projections::views::workflow_progress::TABLE,
        &format!(
            "status IS NULL OR status NOT IN ('{}', '{}')",
            wfs::DONE,
            wfs::FAILED
        ),
    )?;
    let tasks = unfinished(
        tx,
        projections::views::workflow_analytics::TABLE,
        "end_time IS NULL",
    )?;
    Ok(Health {
        stamp: state.stamp,
        head: crate::migrations::head(),
        missing_tables: state.missing,
        has_log,
        max_notification_id: max,
        views,
        workflows,
        tasks,
        rebuild,
    })
}

/// The facts of the database of `url`, read-only (see the module
/// documentation).
pub fn health(url: &str) -> Result<Health> {
    store::inspect(url, health_in)
}

fn since(t: &Option<NaiveDateTime>) -> String {
    t.map(|t| format!(", the oldest started {} UTC", t.format("%Y-%m-%d %H:%M:%S")))
        .unwrap_or_default()
}

/// One line per problem (none: the views are current within `limits`).
pub fn problems(h: &Health, limits: Limits) -> Vec<String> {
    let mut out = Vec::new();
    if !h.missing_tables.is_empty() {
        out.push(format!(
            "schema: view tables missing: {} (run `biomero-rs migrate`)",
            h.missing_tables.join(", ")
        ));
    }
    match &h.stamp {
        Some(s) if s == h.head => {}
        Some(s) => out.push(format!(
            "schema: at revision {s}, not at {} (run `biomero-rs migrate`)",
            h.head
        )),
        None => out.push(format!(
            "schema: not stamped, not at {} (run `biomero-rs migrate`)",
            h.head
        )),
    }
    if !h.has_log {
        out.push(format!(
            "log: the events table {EVENTS_TABLE} does not exist"
        ));
    }
    for v in &h.views {
        let name = v.view.name();
        if !v.tracked {
            out.push(format!(
                "{name}: no tracking table {} (the view was never projected)",
                v.view.tracking_table()
            ));
            continue;
        }
        if v.lag > limits.max_lag {
            out.push(format!(
                "{name}: {} events behind the log (at notification {} of {}; allowed: {})",
                v.lag, v.position, h.max_notification_id, limits.max_lag
            ));
        }
        if v.own < v.position {
            out.push(format!(
                "{name}: the rows of notifications {}..={} were projected by another writer and \
                 are not re-derived yet (the next command or `biomero-rs catch-up` does it)",
                v.own + 1,
                v.position
            ));
        }
    }
    if limits.idle {
        if h.workflows.count > 0 {
            out.push(format!(
                "busy: {} unfinished workflows{}",
                h.workflows.count,
                since(&h.workflows.oldest)
            ));
        }
        if h.tasks.count > 0 {
            out.push(format!(
                "busy: {} unfinished tasks{}",
                h.tasks.count,
                since(&h.tasks.oldest)
            ));
        }
    }
    out
}
