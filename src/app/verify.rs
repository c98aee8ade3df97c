//! `verify`: the live view tables compared, row by row, with what a rebuild
//! over the whole log gives (computed in a transaction that is rolled back),
//! and the SQL that BIOMERO's SlurmClient sends through `EngineManager`.

use crate::app::rebuild::{step, REBUILD_BATCH};
use crate::error::Result;
use crate::projections::cache::Cache;
use crate::projections::view::{Column, ViewSpec};
use crate::projections::View;
use crate::store::catalog;
use crate::store::{self, Backend, EventStore, Sql, Tx};
use std::collections::BTreeMap;

/// One side of a [`Difference`].
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// The row does not exist on this side.
    Absent,
    /// A column's value.
    Value(Sql),
    /// A whole row (column, value), for a row that exists on this side only.
    Row(Vec<(&'static str, Sql)>),
}

/// A view row that differs from what the event log gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub table: &'static str,
    /// The row's primary key.
    pub key: Sql,
    /// The column that differs; `None` for a missing or extra row.
    pub column: Option<&'static str>,
    pub live: Cell,
    pub expected: Cell,
}

/// A sortable form of a key.
fn key_text(k: &Sql) -> String {
    match k {
        Sql::Int(i) => format!("{i:020}"),
        Sql::Uuid(u) => u.simple().to_string(),
        other => format!("{other:?}"),
    }
}

/// Every row of `table` (its `cols`, the key first), by key.
fn table_rows(
    tx: &mut dyn Tx,
    table: &str,
    cols: &[&'static Column],
) -> Result<BTreeMap<String, Vec<Sql>>> {
    let list: Vec<String> = cols.iter().map(|c| c.ident()).collect();
    let kinds: Vec<_> = cols.iter().map(|c| c.kind).collect();
    let rows = tx.query(
        &format!("SELECT {} FROM {table}", list.join(", ")),
        &[],
        &kinds,
    )?;
    Ok(rows.into_iter().map(|r| (key_text(&r[0]), r)).collect())
}

fn whole_row(cols: &[&'static Column], row: &[Sql]) -> Cell {
    Cell::Row(
        cols.iter()
            .map(|c| c.name)
            .zip(row.iter().cloned())
            .collect(),
    )
}

/// The columns of the view compared: those its live table has (a table of
/// an older revision lacks the later ones; they are named in a warning),
/// all of them when the table does not exist.
fn compared_columns(
    tx: &mut dyn Tx,
    spec: &ViewSpec,
    exists: bool,
) -> Result<Vec<&'static Column>> {
    if !exists {
        return Ok(spec.columns.iter().collect());
    }
    let have = catalog::columns(tx, spec.table)?;
    let (present, missing): (Vec<&'static Column>, Vec<&'static Column>) = spec
        .columns
        .iter()
        .partition(|c| have.iter().any(|f| f.name == c.name));
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|c| c.name).collect();
        log::warn!(
            "verify: {} has no column {} (the view tables are at an older revision; \
             `biomero-rs migrate` adds it); not compared",
            spec.table,
            names.join(", ")
        );
    }
    Ok(present)
}

/// The differences between the live view tables and what a rebuild over the
/// whole log gives, computed in `tx` and left for the caller to roll back:
/// temporary tables of the same names (which shadow the real ones on both
/// backends) receive the rebuild, the real ones are only read.
fn verify_in(tx: &mut dyn Tx) -> Result<Vec<Difference>> {
    let backend = tx.backend();
    let mut live = Vec::new();
    for view in View::ALL {
        let spec = view.spec();
        let exists = tx.table_exists(spec.table)?;
        let cols = compared_columns(tx, spec, exists)?;
        let rows = if exists {
            table_rows(tx, spec.table, &cols)?
        } else {
            BTreeMap::new()
        };
        live.push((cols, rows));
    }
    let temp = |ddl: &str| ddl.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE");
    for v in View::ALL {
        tx.execute_batch(&v.spec().create_table_sql(backend, true))?;
    }
    for v in View::ALL {
        tx.execute_batch(&temp(&store::schema::tracking_ddl(
            backend,
            v.tracking_table(),
        )))?;
    }
    let has_log = tx.table_exists(store::schema::EVENTS_TABLE)?;
    if has_log {
        let upto = tx.max_notification_id()?;
        let mut cache = Cache::for_rebuild();
        let mut positions = vec![0; View::ALL.len()];
        while positions.iter().any(|p| *p < upto) {
            step(
                tx,
                &mut cache,
                &View::ALL,
                &mut positions,
                upto,
                REBUILD_BATCH,
            )?;
        }
    }
    let mut out = Vec::new();
    for (view, (cols, live)) in View::ALL.into_iter().zip(live) {
        let spec = view.spec();
        let expected = table_rows(tx, spec.table, &cols)?;
        let table = spec.table;
        let keys: std::collections::BTreeSet<&String> =
            live.keys().chain(expected.keys()).collect();
        for k in keys {
            match (live.get(k), expected.get(k)) {
                (Some(l), None) => out.push(Difference {
                    table,
                    key: l[0].clone(),
                    column: None,
                    live: whole_row(&cols, l),
                    expected: Cell::Absent,
                }),
                (None, Some(e)) => out.push(Difference {
                    table,
                    key: e[0].clone(),
                    column: None,
                    live: Cell::Absent,
                    expected: whole_row(&cols, e),
                }),
                (Some(l), Some(e)) => {
                    for (i, c) in cols.iter().enumerate().skip(1) {
                        if l[i] != e[i] {
                            out.push(Difference {
                                table,
                                key: l[0].clone(),
                                column: Some(c.name),
                                live: Cell::Value(l[i].clone()),
                                expected: Cell::Value(e[i].clone()),
                            });
                        }
                    }
                }
                (None, None) => {}
            }
        }
    }
    Ok(out)
}

/// Compares the four view tables of `url` with what the event log gives
/// (docs/projections.md over the whole log), row by row. Read-only: the rebuild
/// goes into temporary tables of a transaction that is rolled back; nothing
/// is created, adopted, migrated or stamped, and an SQLite file is opened
/// read-only (its journal mode stays). Returns the differences, empty when
/// the views are right.
pub fn verify(url: &str) -> Result<Vec<Difference>> {
    match store::DbUrl::parse(url)? {
        store::DbUrl::Sqlite {
            location: store::url::SqliteLocation::File(path),
            ..
        } => store::sqlite::inspect(&path, verify_in)?.ok_or_else(|| {
            crate::Error::value(format!(
                "url: the SQLite file {} does not exist",
                path.display()
            ))
        }),
        store::DbUrl::Sqlite { .. } => {
            let lease = crate::app::db::Lease::open(Some(url), "verify")?;
            rolled_back(lease.store()?)
        }
        parsed @ store::DbUrl::Postgres(_) => {
            let store::DbUrl::Postgres(target) = &parsed else {
                unreachable!()
            };
            // A pool of its own: fresh sessions, whose statements are
            // prepared only after the temporary tables exist.
            let s = store::postgres::PostgresStore::open(target, parsed.masked())?;
            rolled_back(&s)
        }
    }
}

/// [`verify_in`] in a write transaction that is always rolled back.
fn rolled_back(store: &dyn EventStore) -> Result<Vec<Difference>> {
    let mut out = None;
    let r = store.write(&mut |tx| {
        out = Some(verify_in(tx)?);
        Err(crate::Error::Cancelled("verify rolls back".into()))
    });
    match (r, out) {
        (Err(crate::Error::Cancelled(_)), Some(diffs)) => Ok(diffs),
        (Err(e), _) => Err(e),
        (Ok(()), _) => unreachable!("the closure always fails"),
    }
}

/// The expression of BIOMERO 2.8.3's `SlurmClient._find_analytics_start_id`
/// that reads an event's timestamp (Postgres only).
const REFERENCE_TIMESTAMP_EXPR: &str =
    "(convert_from(state, 'UTF8')::json->>'timestamp')::json->>'_data_'";

/// SQL that BIOMERO's SlurmClient sends through `EngineManager`, in the
/// backend's dialect: on SQLite its Postgres-only start-id query (the first
/// event at or after the analytics rebuild cutoff) reads the same timestamp
/// text with SQLite's JSON functions, so that the cutoff is honoured on both
/// backends instead of falling back to a full replay. Anything else is
/// returned as it is.
pub fn reference_sql_for(backend: Backend, sql: &str) -> std::borrow::Cow<'_, str> {
    if backend == Backend::Sqlite && sql.contains(REFERENCE_TIMESTAMP_EXPR) {
        std::borrow::Cow::Owned(sql.replace(
            REFERENCE_TIMESTAMP_EXPR,
            "json_extract(CAST(state AS TEXT), '$.timestamp._data_')",
        ))
    } else {
        std::borrow::Cow::Borrowed(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_start_id_query_reads_the_same_timestamp_on_sqlite() {
        let sql = "SELECT MIN(id) FROM workflowtracker_events WHERE \
                   (convert_from(state, 'UTF8')::json->>'timestamp')::json->>'_data_' >= :cutoff";
        assert_eq!(reference_sql_for(Backend::Postgres, sql), sql);
        let lite = reference_sql_for(Backend::Sqlite, sql);
        assert!(lite.contains("json_extract(CAST(state AS TEXT), '$.timestamp._data_') >= :cutoff"));
        assert!(!lite.contains("::"));
        assert_eq!(reference_sql_for(Backend::Sqlite, "SELECT 1"), "SELECT 1");
    }
}
