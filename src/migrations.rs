//! The view tables' schema migrations: ordered revisions from the SQL files in
//! `migrations/<dialect>/NNNN_<id>.sql` (listed by `build.rs`: adding a
//! revision is adding its two files), recorded as Alembic records them
//! (docs/storage.md, "Migrations"). The shapes they must give are the view
//! definitions' (`projections::view`); a test compares the two.
//!
//! Only the four `biomero_*` view tables are migrated, never the event table
//! or the projectors' tracking tables (the event store owns those).
//!
//! The applied revision is kept in `alembic_version_biomero` (one row,
//! `version_num VARCHAR(32)`, updated on each upgrade), the version table of
//! BIOMERO's own Alembic track, and the first revision carries the reference's
//! id `baseline_001`: a database that Python BIOMERO stamped is recognised,
//! and one that biomero_rs migrated reads as Alembic expects.
//!
//! Two entry points:
//! - [`run`]: the explicit operator action (`biomero_rs.run_migrations`,
//!   `biomero-rs migrate`). Always migrates, and adopts an unstamped schema
//!   (tables made by SQLAlchemy's `create_all`) when it matches the baseline.
//! - [`ensure_view_tables_in`]: the startup path of every tracker, view and
//!   rebuild. Migrates when `BIOMERO_RUN_MIGRATIONS` is `1` (the default),
//!   adopting an unstamped schema by itself, as the reference's startup
//!   migrator does; with `BIOMERO_RUN_MIGRATIONS=0` it changes nothing and
//!   only checks. Cheap once a store is known to be at head.
//!
//! Adoption is safe because [`preflight`] runs first, when a store is opened
//! and before anything is created: the event, tracking and unstamped view
//! tables that exist must have exactly the columns (types, nullability,
//! primary keys) that biomero 2.8.3's `create_all` gives them, or nothing is
//! changed and the error names each difference.
//!
//! Concurrent starters migrate once: the whole migration is one write
//! transaction, under `pg_advisory_xact_lock(hashtext('biomero_migrations'))`
//! on Postgres and `BEGIN IMMEDIATE` on SQLite, and it re-reads the stamp
//! after taking the lock.

use crate::error::{Error, Result};
use crate::projections::View;
use crate::store::catalog::{self, table_present};
use crate::store::{self, Backend, EventStore, Kind, Sql, Tx};
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// One revision: its id (as Alembic records it) and its SQL per dialect.
/// Every revision's SQL is idempotent (`IF NOT EXISTS`), so that missing
/// tables can be repaired by running it again.
pub struct Revision {
    pub id: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// The revisions, oldest first. The last one is the head.
pub const REVISIONS: &[Revision] = include!(concat!(env!("OUT_DIR"), "/revisions.rs"));

impl Revision {
    pub fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

/// Alembic's version table of BIOMERO's track.
pub const VERSION_TABLE: &str = "alembic_version_biomero";

/// The id of the baseline revision (the reference's).
pub const BASELINE: &str = "baseline_001";

/// The view tables, as the registry names them.
pub fn view_tables() -> Vec<&'static str> {
    View::ALL.iter().map(|v| v.view_table()).collect()
}

/// `BIOMERO_RUN_MIGRATIONS`: migrate on startup (default on).
pub const ENV_RUN: &str = "BIOMERO_RUN_MIGRATIONS";
/// `BIOMERO_ALLOW_AUTO_STAMP`: no longer needed (startup adopts a matching
/// unstamped schema by itself); accepted and ignored.
pub const ENV_AUTO_STAMP: &str = "BIOMERO_ALLOW_AUTO_STAMP";

/// The id of the newest revision.
pub fn head() -> &'static str {
    REVISIONS[REVISIONS.len() - 1].id
}

/// Where the view schema of a database stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The stamped revision; `None` without a version table or row.
    pub stamp: Option<String>,
    /// The view tables that are missing.
    pub missing: Vec<&'static str>,
}

impl State {
    pub fn at_head(&self) -> bool {
        self.missing.is_empty() && self.stamp.as_deref() == Some(head())
    }
}

fn db_error(backend: Backend, message: String) -> Error {
    Error::Database {
        backend: backend.name(),
        message,
    }
}

fn position(backend: Backend, id: &str) -> Result<usize> {
    REVISIONS.iter().position(|r| r.id == id).ok_or_else(|| {
        let known: Vec<&str> = REVISIONS.iter().map(|r| r.id).collect();
        db_error(
            backend,
            format!(
                "{VERSION_TABLE} says the view tables are at revision {id:?}, which this \
                 biomero_rs does not know (it knows {}); the database was probably migrated by a \
                 newer BIOMERO. Upgrade biomero_rs, or start with {ENV_RUN}=0 to use the tables \
                 as they are",
                known.join(", ")
            ),
        )
    })
}

/// The stamped revision, if any.
fn read_stamp(tx: &mut dyn Tx) -> Result<Option<String>> {
    if !table_present(tx, VERSION_TABLE)? {
        return Ok(None);
    }
    let rows = tx.query(
        &format!("SELECT version_num FROM {VERSION_TABLE}"),
        &[],
        &[Kind::Text],
    )?;
    let mut ids: Vec<String> = rows
        .into_iter()
        .filter_map(|mut r| r.pop().and_then(Sql::into_text))
        .collect();
    match ids.len() {
        0 => Ok(None),
        1 => Ok(ids.pop()),
        _ => Err(db_error(
            tx.backend(),
            format!(
                "{VERSION_TABLE} holds several revisions ({}); biomero_rs expects exactly one \
                 (branched Alembic histories are not supported)",
                ids.join(", ")
            ),
        )),
    }
}

/// Reads where the view schema stands.
pub fn state(tx: &mut dyn Tx) -> Result<State> {
    let mut missing = Vec::new();
    for table in view_tables() {
        if !table_present(tx, table)? {
            missing.push(table);
        }
    }
    Ok(State {
        stamp: read_stamp(tx)?,
        missing,
    })
}

/// The differences between the existing view tables and the baseline (only
/// when they carry no stamp: stamped tables are the migrator's).
pub fn view_table_differences(tx: &mut dyn Tx) -> Result<Vec<String>> {
    if read_stamp(tx)?.is_some() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for view in View::ALL {
        let spec = view.spec();
        if table_present(tx, spec.table)? {
            out.extend(catalog::differences(tx, spec.table, spec.shape(true))?);
        }
    }
    Ok(out)
}

/// The columns of the view definitions that the existing view tables lack
/// (`table.column`).
fn missing_columns(tx: &mut dyn Tx) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for view in View::ALL {
        let spec = view.spec();
        if !table_present(tx, spec.table)? {
            continue;
        }
        let have = catalog::columns(tx, spec.table)?;
        for c in spec.columns {
            if !have.iter().any(|f| f.name == c.name) {
                out.push(format!("{}.{}", spec.table, c.name));
            }
        }
    }
    Ok(out)
}

/// The check every entry point runs before it changes anything (before the
/// event tables are created, the SQLite file is switched to WAL, or the view
/// tables are stamped): the tables that exist must be BIOMERO's, as biomero
/// 2.8.3 makes them. Read-only. The error names each difference and the fix.
pub fn preflight(tx: &mut dyn Tx) -> Result<()> {
    let events = store::schema::differences(tx, &crate::projections::tracking_tables())?;
    if !events.is_empty() {
        return Err(db_error(
            tx.backend(),
            format!(
                "this database holds tables named like BIOMERO's event store that are not \
                 BIOMERO's ({}); biomero_rs changed nothing. Point the URL (SQLALCHEMY_URL) at \
                 BIOMERO's own database, or rename these tables",
                events.join("; ")
            ),
        ));
    }
    let views = view_table_differences(tx)?;
    if !views.is_empty() {
        return Err(db_error(
            tx.backend(),
            format!(
                "the view tables carry no migration stamp ({VERSION_TABLE}) and do not match \
                 BIOMERO's baseline schema ({}), so they cannot be adopted; biomero_rs changed \
                 nothing. Views are derived data: drop these tables, then run `biomero-rs \
                 migrate` and `biomero-rs rebuild` to refill them from the event log",
                views.join("; ")
            ),
        ));
    }
    Ok(())
}

/// Runs a revision's SQL. Every statement is idempotent: `CREATE ... IF
/// NOT EXISTS` by itself, and `ALTER TABLE t ADD COLUMN c ...` (which SQLite
/// cannot write with `IF NOT EXISTS`) is skipped where the column exists,
/// so that a revision can run again to repair missing tables.
fn apply(tx: &mut dyn Tx, sql: &str) -> Result<()> {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for code in code.split(';') {
        if code.trim().is_empty() {
            continue;
        }
        if let Some((table, column)) = added_column(code) {
            let exists = catalog::columns(tx, &table)?
                .iter()
                .any(|c| c.name == column);
            if exists {
                continue;
            }
        }
        tx.execute_batch(code)?;
    }
    Ok(())
}

/// The table and column of `ALTER TABLE <t> ADD COLUMN [IF NOT EXISTS] <c>`.
fn added_column(statement: &str) -> Option<(String, String)> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    if upper.len() < 6 || upper[0] != "ALTER" || upper[1] != "TABLE" || upper[3] != "ADD" {
        return None;
    }
    let mut i = if upper[4] == "COLUMN" { 5 } else { 4 };
    if upper.get(i).map(String::as_str) == Some("IF") {
        i += 3; // IF NOT EXISTS
    }
    let unquote = |s: &str| s.trim_matches('"').to_owned();
    Some((unquote(words[2]), unquote(words.get(i)?)))
}

fn write_stamp(tx: &mut dyn Tx, from: Option<&str>, to: &str) -> Result<()> {
    match from {
        None => {
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (\n\tversion_num VARCHAR(32) NOT NULL, \
                 \n\tCONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num)\n)"
            ))?;
            tx.execute(&format!("DELETE FROM {VERSION_TABLE}"), &[])?;
            tx.execute(
                &format!("INSERT INTO {VERSION_TABLE} (version_num) VALUES ($1)"),
                &[Sql::Text(to.to_owned())],
            )?;
        }
        Some(from) => {
            tx.execute(
                &format!("UPDATE {VERSION_TABLE} SET version_num = $1 WHERE version_num = $2"),
                &[Sql::Text(to.to_owned()), Sql::Text(from.to_owned())],
            )?;
        }
    }
    Ok(())
}

/// Why a migration may adopt view tables that exist without a stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopt {
    /// Adopt when they match the baseline (explicit `migrate`, or
    /// `BIOMERO_ALLOW_AUTO_STAMP=1`).
    Allowed,
    /// Refuse with a message saying what to do (startup without
    /// `BIOMERO_ALLOW_AUTO_STAMP=1`).
    Refused,
}

/// Brings the view schema to head in `tx`; returns the revisions applied.
/// Stamping an adopted schema at `baseline_001` does not count as applying it.
pub fn migrate(tx: &mut dyn Tx, adopt: Adopt) -> Result<Vec<String>> {
    let backend = tx.backend();
    if backend == Backend::Postgres {
        // Serialises concurrent starters; released at commit. Every read
        // below comes after it, so a waiter sees the winner's work.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('biomero_migrations'))",
            &[],
        )?;
    }
    let st = state(tx)?;
    let present: Vec<&'static str> = view_tables()
        .into_iter()
        .filter(|t| !st.missing.contains(t))
        .collect();
    let mut applied = Vec::new();
    let mut stamp = st.stamp.clone();
    let next = match st.stamp.as_deref() {
        None if present.is_empty() => 0, // a fresh database: every revision
        None => {
            // Tables made without the migrator (SQLAlchemy create_all, as
            // Python BIOMERO does, or by hand): adopt them as the baseline.
            preflight(tx)?;
            if adopt == Adopt::Refused {
                return Err(db_error(
                    backend,
                    format!(
                        "the BIOMERO view tables ({}) exist but carry no migration stamp \
                         ({VERSION_TABLE}); they were probably created by Python BIOMERO's \
                         SQLAlchemy create_all. biomero_rs does not adopt them on startup \
                         silently: run `biomero-rs migrate --url <url>` (or \
                         biomero_rs.run_migrations(url)) once to stamp them as {BASELINE} and \
                         upgrade them, or set {ENV_AUTO_STAMP}=1 to allow this on startup",
                        present.join(", ")
                    ),
                ));
            }
            if !st.missing.is_empty() {
                log::warn!(
                    "biomero_rs migrations: creating the missing view tables {}",
                    st.missing.join(", ")
                );
            }
            apply(tx, REVISIONS[0].sql(backend))?; // creates only what is missing
            write_stamp(tx, None, BASELINE)?;
            log::warn!(
                "biomero_rs migrations: adopted the existing view tables ({}) and stamped them \
                 {BASELINE}",
                present.join(", ")
            );
            stamp = Some(BASELINE.to_owned());
            1
        }
        Some(id) => {
            let at = position(backend, id)?;
            let lacking = missing_columns(tx)?;
            if !st.missing.is_empty() || (at + 1 == REVISIONS.len() && !lacking.is_empty()) {
                // Stamped but tables (or, at head, columns) were dropped:
                // make them again as of the stamped revision (every
                // revision's SQL is idempotent).
                log::warn!(
                    "biomero_rs migrations: {} missing although the database is stamped {id}; \
                     recreating them",
                    st.missing
                        .iter()
                        .map(|t| t.to_string())
                        .chain(lacking)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                for rev in &REVISIONS[..=at] {
                    apply(tx, rev.sql(backend))?;
                }
            }
            at + 1
        }
    };
    for rev in &REVISIONS[next..] {
        apply(tx, rev.sql(backend))?;
        write_stamp(tx, stamp.as_deref(), rev.id)?;
        stamp = Some(rev.id.to_owned());
        log::info!(
            "biomero_rs migrations: applied view-table revision {}",
            rev.id
        );
        applied.push(rev.id.to_owned());
    }
    Ok(applied)
}

/// The stores (by masked URL) this process has seen at head.
fn migrated() -> &'static Mutex<HashSet<String>> {
    static MIGRATED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    MIGRATED.get_or_init(Default::default)
}

fn remember(store: &dyn EventStore) {
    migrated()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(store.masked_url());
}

/// Forgets that `store` was at head (after SQL that may have dropped tables).
pub fn forget(store: &dyn EventStore) {
    migrated()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&store.masked_url());
}

fn known_at_head(store: &dyn EventStore) -> bool {
    migrated()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&store.masked_url())
}

/// Migrates `store` to head: a read-only check first (no lock when already
/// there), then one write transaction under the migration lock.
pub fn run_with(store: &dyn EventStore, adopt: Adopt) -> Result<Vec<String>> {
    let current = store::read_tx(store, state)?;
    // At head by its stamp, but a table lacks a column (made again by hand
    // or by another tool): migrate, which runs the revisions again.
    let lacking = store::read_tx(store, missing_columns)?;
    if current.at_head() && lacking.is_empty() {
        remember(store);
        return Ok(Vec::new());
    }
    let applied = store::write_tx(store, |tx| migrate(tx, adopt))?;
    remember(store);
    Ok(applied)
}

/// Runs the migrations by hand (`run_migrations`, `biomero-rs migrate`);
/// returns the revisions applied. Adopts unstamped view tables that match the
/// baseline, whatever `BIOMERO_ALLOW_AUTO_STAMP` says: this is the operator's
/// explicit action. Ignores `BIOMERO_RUN_MIGRATIONS` for the same reason.
pub fn run(store: &dyn EventStore) -> Result<Vec<String>> {
    run_with(store, Adopt::Allowed)
}

/// A boolean environment switch: `1/true/yes/on` or `0/false/no/off`.
fn env_flag(name: &str, default: bool) -> Result<bool> {
    let Ok(raw) = std::env::var(name) else {
        return Ok(default);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "" => Ok(default),
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::value(format!(
            "{name}={raw:?}: expected 1 or 0 (or true/false, yes/no, on/off)"
        ))),
    }
}

/// The startup path (trackers, views, rebuild): with `BIOMERO_RUN_MIGRATIONS`
/// on (the default), migrates to head, adopting unstamped view tables only
/// when `BIOMERO_ALLOW_AUTO_STAMP=1`; with it off, changes nothing and only
/// requires the view tables to exist. Once a store is at head, later calls in
/// this process return at once.
pub fn ensure_view_tables_in(store: &dyn EventStore) -> Result<()> {
    if known_at_head(store) {
        return Ok(());
    }
    if !env_flag(ENV_RUN, true)? {
        store::read_tx(store, preflight)?;
        let st = store::read_tx(store, state)?;
        if !st.missing.is_empty() {
            return Err(db_error(
                store.backend(),
                format!(
                    "the BIOMERO view tables {} do not exist and {ENV_RUN}=0 forbids creating \
                     them on startup; run `biomero-rs migrate --url <url>` (or \
                     biomero_rs.run_migrations(url)) first, or unset {ENV_RUN}",
                    st.missing.join(", ")
                ),
            ));
        }
        let lacking = store::read_tx(store, missing_columns)?;
        if !lacking.is_empty() {
            return Err(db_error(
                store.backend(),
                format!(
                    "the BIOMERO view tables lack columns this biomero_rs writes ({}); they are \
                     at revision {} and {ENV_RUN}=0 forbids upgrading them on startup; run \
                     `biomero-rs migrate --url <url>` (or biomero_rs.run_migrations(url)) first, \
                     or unset {ENV_RUN}",
                    lacking.join(", "),
                    st.stamp.as_deref().unwrap_or("(none)")
                ),
            ));
        }
        if st.stamp.as_deref() != Some(head()) {
            log::warn!(
                "biomero_rs migrations: view tables at revision {}, head is {}; not migrating \
                 because {ENV_RUN}=0",
                st.stamp.as_deref().unwrap_or("(none)"),
                head()
            );
        }
        return Ok(());
    }
    // Adopting unstamped tables is safe: the preflight check of
    // `app::db::open` has already refused any that differ from the baseline.
    let adopt = Adopt::Allowed;
    run_with(store, adopt).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn sqlite() -> (tempfile::TempDir, Arc<dyn EventStore>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:///{}", dir.path().join("m.db").display());
        let s = crate::app::db::open(&url).unwrap();
        (dir, s)
    }

    fn st(s: &dyn EventStore) -> State {
        store::read_tx(s, state).unwrap()
    }

    #[test]
    fn revision_files_are_ordered_and_unique() {
        let mut ids = HashSet::new();
        for r in REVISIONS {
            assert!(r.id.len() <= 32, "{} too long for version_num", r.id);
            assert!(ids.insert(r.id));
            assert!(r.sqlite.contains(r.id) && r.postgres.contains(r.id));
        }
        assert_eq!(REVISIONS[0].id, BASELINE);
    }

    #[test]
    fn the_migrated_tables_are_the_view_definitions() {
        let (_d, s) = sqlite();
        store::write_tx(s.as_ref(), |tx| migrate(tx, Adopt::Allowed)).unwrap();
        store::read_tx(s.as_ref(), |tx| {
            for v in View::ALL {
                let spec = v.spec();
                let diffs = catalog::differences(tx, spec.table, spec.shape(false))?;
                assert!(diffs.is_empty(), "{diffs:?}");
            }
            Ok(())
        })
        .unwrap();
        // Running every revision again (the repair of missing tables)
        // changes nothing.
        store::write_tx(s.as_ref(), |tx| {
            for r in REVISIONS {
                apply(tx, r.sqlite)?;
            }
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn added_columns_are_recognised() {
        assert_eq!(
            added_column("ALTER TABLE biomero_task_execution ADD COLUMN workflow_id UUID"),
            Some(("biomero_task_execution".into(), "workflow_id".into()))
        );
        assert_eq!(
            added_column("alter table t add column if not exists \"c\" uuid"),
            Some(("t".into(), "c".into()))
        );
        assert_eq!(
            added_column("ALTER TABLE t ADD x INTEGER"),
            Some(("t".into(), "x".into()))
        );
        assert_eq!(added_column("CREATE INDEX IF NOT EXISTS i ON t (c)"), None);
    }

    #[test]
    fn fresh_database_goes_to_head_once() {
        let (_d, s) = sqlite();
        let applied = store::write_tx(s.as_ref(), |tx| migrate(tx, Adopt::Refused)).unwrap();
        let all: Vec<&str> = REVISIONS.iter().map(|r| r.id).collect();
        assert_eq!(applied, all);
        assert!(st(s.as_ref()).at_head());
        let again = store::write_tx(s.as_ref(), |tx| migrate(tx, Adopt::Refused)).unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn unstamped_tables_need_permission_and_the_baseline_columns() {
        let (_d, s) = sqlite();
        store::write_tx(s.as_ref(), |tx| tx.execute_batch(REVISIONS[0].sqlite)).unwrap();
        store::write_tx(s.as_ref(), |tx| {
            tx.execute_batch("DROP TABLE biomero_job_view")
        })
        .unwrap();
        let err = store::write_tx(s.as_ref(), |tx| migrate(tx, Adopt::Refused)).unwrap_err();
        assert!(err.to_string().contains(ENV_AUTO_STAMP), "{err}");
        assert_eq!(st(s.as_ref()).stamp, None);
        let applied = store::write_tx(s.as_ref(), |tx| migrate(tx, Adopt::Allowed)).unwrap();
        let after_baseline: Vec<&str> = REVISIONS[1..].iter().map(|r| r.id).collect();
        assert_eq!(applied, after_baseline);
        assert!(st(s.as_ref()).at_head()); // the missing table was created

        let (_d2, s2) = sqlite();
        store::write_tx(s2.as_ref(), |tx| {
            tx.execute_batch("CREATE TABLE biomero_task_execution (task_id VARCHAR PRIMARY KEY)")
        })
        .unwrap();
        let err = store::write_tx(s2.as_ref(), |tx| migrate(tx, Adopt::Allowed)).unwrap_err();
        assert!(
            err.to_string().contains(
                "biomero_task_execution.task_name: expected VARCHAR NOT NULL, found no such column"
            ),
            "{err}"
        );
    }

    #[test]
    fn stamped_baseline_is_upgraded_and_unknown_stamps_refused() {
        let (_d, s) = sqlite();
        store::write_tx(s.as_ref(), |tx| {
            tx.execute_batch(REVISIONS[0].sqlite)?;
            write_stamp(tx, None, BASELINE)
        })
        .unwrap();
        let applied = store::write_tx(s.as_ref(), |tx| migrate(tx, Adopt::Refused)).unwrap();
        let after_baseline: Vec<&str> = REVISIONS[1..].iter().map(|r| r.id).collect();
        assert_eq!(applied, after_baseline);
        store::write_tx(s.as_ref(), |tx| write_stamp(tx, Some(head()), "zzz_999")).unwrap();
        let err = store::write_tx(s.as_ref(), |tx| migrate(tx, Adopt::Allowed)).unwrap_err();
        assert!(err.to_string().contains("zzz_999"), "{err}");
    }
}
