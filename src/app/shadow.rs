//! The tables a rebuild fills beside the live ones, and the switch.
//!
//! On the rebuild's own connection ([`crate::store::session`]) each view
//! table gets a temporary table of the same name and columns: the
//! projectors, which name their tables unqualified, then write there, while
//! every other connection keeps using the live tables. The switch makes the
//! live rows equal to the shadow's in the transaction that applies the last
//! events (it holds the log's lock): rows whose key the shadow lacks are
//! deleted, and only the rows that differ are written. The live tables
//! themselves are never dropped, renamed or emptied, so they keep what the
//! operator gave them (grants, owner, indexes, comments, dependent views,
//! triggers), and a reader sees the old rows until the commit and all the new
//! rows after it.

use crate::error::Result;
use crate::projections::view::Column;
use crate::projections::View;
use crate::store::{catalog, Backend, Kind, Sql, Tx};

/// One view's pair of tables.
struct Pair {
    view: View,
    /// The live table, qualified by its schema.
    live: String,
    /// The temporary table, qualified.
    shadow: String,
    /// The columns both have (the view's columns the live table has).
    columns: Vec<&'static Column>,
}

/// What one view's switch changed in its live table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switched {
    pub deleted: u64,
    pub written: u64,
}

/// The shadow tables of a rebuild.
pub struct Shadow {
    pairs: Vec<Pair>,
}

/// The schema-qualified name of the table `table` resolves to now (before
/// any shadow of it exists).
fn live_name(tx: &mut dyn Tx, table: &str) -> Result<String> {
    match tx.backend() {
        Backend::Sqlite => Ok(format!("main.{table}")),
        Backend::Postgres => {
            let rows = tx.query(
                "SELECT quote_ident(n.nspname) FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = to_regclass($1::text)",
                &[Sql::Text(table.to_owned())],
                &[Kind::Text],
            )?;
            let schema = rows
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
                .and_then(Sql::into_text)
                .ok_or_else(|| crate::error::Error::Database {
                    backend: "postgres",
                    message: format!("the view table {table} does not exist"),
                })?;
            Ok(format!("{schema}.{table}"))
        }
    }
}

fn temp_name(backend: Backend, table: &str) -> String {
    match backend {
        Backend::Sqlite => format!("temp.{table}"),
        Backend::Postgres => format!("pg_temp.{table}"),
    }
}

impl Shadow {
    /// Creates the shadow of each view's table on the session that runs
    /// `tx` (one left there by an earlier run is dropped first), after
    /// noting the live tables' names and columns.
    pub fn create(tx: &mut dyn Tx, views: &[View]) -> Result<Shadow> {
        let backend = tx.backend();
        let mut pairs = Vec::new();
        for view in views {
            let spec = view.spec();
            let have = catalog::columns(tx, spec.table)?;
            let columns = spec
                .columns
                .iter()
                .filter(|c| have.iter().any(|f| f.name == c.name))
                .collect();
            pairs.push(Pair {
                view: *view,
                live: live_name(tx, spec.table)?,
                shadow: temp_name(backend, spec.table),
                columns,
            });
        }
        for pair in &pairs {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", pair.shadow))?;
            tx.execute_batch(&pair.view.spec().create_table_sql(backend, true))?;
        }
        Ok(Shadow { pairs })
    }

    /// Makes each live table's rows those of its shadow (in `tx`, which
    /// holds the log's lock): deletes the rows whose key the shadow lacks,
    /// then inserts or updates the rows that differ.
    pub fn switch(&self, tx: &mut dyn Tx) -> Result<Vec<(View, Switched)>> {
        let mut out = Vec::new();
        for pair in &self.pairs {
            let spec = pair.view.spec();
            let key = spec.key().ident();
            let cols: Vec<String> = pair.columns.iter().map(|c| c.ident()).collect();
            let list = cols.join(", ");
            let sets: Vec<String> = cols
                .iter()
                .filter(|c| **c != key)
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            let deleted = tx.execute(
                &format!(
                    "DELETE FROM {live} WHERE NOT EXISTS \
                     (SELECT 1 FROM {shadow} AS s WHERE s.{key} = {live}.{key})",
                    live = pair.live,
                    shadow = pair.shadow
                ),
                &[],
            )?;
            let written = tx.execute(
                &format!(
                    "INSERT INTO {live} ({list}) SELECT {list} FROM \
                     (SELECT {list} FROM {shadow} EXCEPT SELECT {list} FROM {live}) AS d \
                     WHERE true ON CONFLICT ({key}) DO UPDATE SET {sets}",
                    live = pair.live,
                    shadow = pair.shadow,
                    sets = sets.join(", ")
                ),
                &[],
            )?;
            out.push((pair.view, Switched { deleted, written }));
        }
        Ok(out)
    }

    /// Drops the shadow tables (a closed connection drops them too; a
    /// memory database's connection stays, so the rebuild drops them).
    pub fn drop_tables(&self, tx: &mut dyn Tx) -> Result<()> {
        for pair in &self.pairs {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", pair.shadow))?;
        }
        Ok(())
    }
}
