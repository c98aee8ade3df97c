//! What the database's catalog says about a table: whether it exists and
//! the shape of its columns, compared with the shape a table should have.
//! Used by the shape checks of the store's own tables (`schema.rs`) and of
//! the view tables (the migrations).

use crate::error::Result;
use crate::store::{Backend, Kind, Sql, Tx};

/// One column as it should be: its name, its declared type on SQLite, its
/// type on Postgres (as `format_type` spells it), NOT NULL, part of the
/// primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnShape {
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
    pub not_null: bool,
    pub key: bool,
}

impl ColumnShape {
    /// The column's type on `backend`.
    pub fn ty(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

/// Whether a table exists. On Postgres this reads `pg_class` with the
/// statement's snapshot rather than through `to_regclass`: a name lookup
/// without a lock uses the catalog cache as of the transaction's start, so a
/// starter that waited for a lock would not see the tables the winner
/// created meanwhile.
pub fn table_present(tx: &mut dyn Tx, table: &str) -> Result<bool> {
    match tx.backend() {
        Backend::Sqlite => tx.table_exists(table),
        Backend::Postgres => {
            let rows = tx.query(
                "SELECT count(*) FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = $1 AND c.relkind IN ('r', 'p') \
                 AND n.nspname = ANY (current_schemas(false))",
                &[Sql::Text(table.to_owned())],
                &[Kind::Int],
            )?;
            Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) > 0)
        }
    }
}

/// A column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub ty: String,
    pub not_null: bool,
    pub key: bool,
}

/// The columns of an existing table, in order.
pub fn columns(tx: &mut dyn Tx, table: &str) -> Result<Vec<Found>> {
    let sql = match tx.backend() {
        Backend::Sqlite => {
            "SELECT name, type, \"notnull\", CASE WHEN pk > 0 THEN 1 ELSE 0 END \
             FROM pragma_table_info($1) ORDER BY cid"
        }
        Backend::Postgres => {
            // Same snapshot reasoning as in `table_present`.
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
             CASE WHEN a.attnotnull THEN 1 ELSE 0 END, \
             CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid \
               AND i.indisprimary AND a.attnum = ANY (i.indkey)) THEN 1 ELSE 0 END \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 \
             AND NOT a.attisdropped AND n.nspname = ANY (current_schemas(false)) \
             ORDER BY a.attnum"
        }
    };
    let rows = tx.query(
        sql,
        &[Sql::Text(table.to_owned())],
        &[Kind::Text, Kind::Text, Kind::Int, Kind::Int],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| Found {
            name: r[0].as_str().unwrap_or_default().to_owned(),
            ty: r[1].as_str().unwrap_or_default().to_owned(),
            not_null: r[2].as_i64() == Some(1),
            key: r[3].as_i64() == Some(1),
        })
        .collect())
}

fn describe(ty: &str, not_null: bool, key: bool) -> String {
    let mut s = ty.to_owned();
    if not_null {
        s.push_str(" NOT NULL");
    }
    if key {
        s.push_str(" PRIMARY KEY");
    }
    s
}

/// How an existing table differs from `expected`: one line per column
/// (`table.column: expected ..., found ...`); empty when it matches.
pub fn differences(
    tx: &mut dyn Tx,
    table: &str,
    expected: impl IntoIterator<Item = ColumnShape>,
) -> Result<Vec<String>> {
    let backend = tx.backend();
    let expected: Vec<ColumnShape> = expected.into_iter().collect();
    let have = columns(tx, table)?;
    let mut out = Vec::new();
    for c in &expected {
        let ty = c.ty(backend);
        let want = describe(ty, c.not_null, c.key);
        match have.iter().find(|f| f.name == c.name) {
            None => out.push(format!(
                "{table}.{}: expected {want}, found no such column",
                c.name
            )),
            Some(f) => {
                let same =
                    f.ty.eq_ignore_ascii_case(ty) && f.not_null == c.not_null && f.key == c.key;
                if !same {
                    out.push(format!(
                        "{table}.{}: expected {want}, found {}",
                        c.name,
                        describe(&f.ty, f.not_null, f.key)
                    ));
                }
            }
        }
    }
    for f in &have {
        if !expected.iter().any(|c| c.name == f.name) {
            out.push(format!(
                "{table}.{}: expected no such column, found {}",
                f.name,
                describe(&f.ty, f.not_null, f.key)
            ));
        }
    }
    Ok(out)
}
