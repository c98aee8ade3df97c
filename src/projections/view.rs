//! What a view table is, once: its columns (name, type per backend,
//! nullability, key, the revision that added it), its row type, the changes
//! a projector makes to a row, and the SQL that reads and writes it, all
//! derived from the columns. Each view file (`views/*.rs`) defines its table
//! with [`view_row!`] and a [`ViewTable`] implementation; everything else
//! (the row cache, rebuild, correction, verify, the migrations' shape check,
//! the Python row models) works from those definitions.
//!
//! The tables' contents are described in docs/projections.md, their storage
//! in docs/storage.md ("View tables").

use crate::error::{Error, Result};
use crate::store::catalog::ColumnShape;
use crate::store::{Backend, Kind, Sql, Tx};
use chrono::NaiveDateTime;
use std::any::TypeId;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{OnceLock, RwLock};
use uuid::Uuid;

// ------------------------------------------------------------------ columns

/// One column of a view table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// How the column is read and written.
    pub kind: Kind,
    /// Its declared type on SQLite, as SQLAlchemy's `create_all` writes it.
    pub sqlite: &'static str,
    /// Its type on Postgres, as `format_type` spells it.
    pub postgres: &'static str,
    pub nullable: bool,
    /// The migration revision that added the column; `None` for the
    /// baseline (the tables as biomero 2.8.3 creates them).
    pub since: Option<&'static str>,
    /// What it holds (the Python model's attribute documentation).
    pub doc: &'static str,
}

impl Column {
    /// The column of a field of Rust type `T`.
    pub const fn of<T: ColumnType>(
        name: &'static str,
        since: Option<&'static str>,
        doc: &'static str,
    ) -> Column {
        Column {
            name,
            kind: T::KIND,
            sqlite: T::SQLITE,
            postgres: T::POSTGRES,
            nullable: T::NULLABLE,
            since,
            doc,
        }
    }

    /// The column's type on `backend`.
    pub fn ty(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }

    /// Its shape for the catalog check (`key`: it is the primary key).
    pub fn shape(&self, key: bool) -> ColumnShape {
        ColumnShape {
            name: self.name,
            sqlite: self.sqlite,
            postgres: self.postgres,
            not_null: !self.nullable,
            key,
        }
    }

    /// The name as an SQL identifier (quoted: `user` and `group` are
    /// keywords).
    pub fn ident(&self) -> String {
        format!("\"{}\"", self.name)
    }
}

/// A Rust type a view column holds: how it is declared, written and read.
/// The integer columns of the views are 32-bit `INTEGER`s, held as `i64`.
pub trait ColumnType: Sized {
    const KIND: Kind;
    const SQLITE: &'static str;
    const POSTGRES: &'static str;
    const NULLABLE: bool = false;
    fn to_sql(&self) -> Sql;
    /// `None` when the value is NULL or not of this type.
    fn from_sql(v: Sql) -> Option<Self>;
}

impl ColumnType for i64 {
    const KIND: Kind = Kind::Int;
    const SQLITE: &'static str = "INTEGER";
    const POSTGRES: &'static str = "integer";
    fn to_sql(&self) -> Sql {
        Sql::Int(*self)
    }
    fn from_sql(v: Sql) -> Option<Self> {
        v.as_i64()
    }
}

impl ColumnType for String {
    const KIND: Kind = Kind::Text;
    const SQLITE: &'static str = "VARCHAR";
    const POSTGRES: &'static str = "character varying";
    fn to_sql(&self) -> Sql {
        Sql::Text(self.clone())
    }
    fn from_sql(v: Sql) -> Option<Self> {
        v.into_text()
    }
}

impl ColumnType for Uuid {
    const KIND: Kind = Kind::Uuid;
    const SQLITE: &'static str = "UUID";
    const POSTGRES: &'static str = "uuid";
    fn to_sql(&self) -> Sql {
        Sql::Uuid(*self)
    }
    fn from_sql(v: Sql) -> Option<Self> {
        v.as_uuid()
    }
}

impl ColumnType for NaiveDateTime {
    const KIND: Kind = Kind::Time;
    const SQLITE: &'static str = "DATETIME";
    const POSTGRES: &'static str = "timestamp without time zone";
    fn to_sql(&self) -> Sql {
        Sql::Time(*self)
    }
    fn from_sql(v: Sql) -> Option<Self> {
        v.as_time()
    }
}

impl<T: ColumnType> ColumnType for Option<T> {
    const KIND: Kind = T::KIND;
    const SQLITE: &'static str = T::SQLITE;
    const POSTGRES: &'static str = T::POSTGRES;
    const NULLABLE: bool = true;
    fn to_sql(&self) -> Sql {
        self.as_ref().map_or(Sql::Null, T::to_sql)
    }
    /// A NULL (or unreadable) value is `None`.
    fn from_sql(v: Sql) -> Option<Self> {
        Some(T::from_sql(v))
    }
}

// --------------------------------------------------------------------- rows

/// A row type's columns and its conversion to and from their values (in
/// column order). Written by [`view_row!`].
pub trait Cells: Sized {
    const TABLE: &'static str;
    /// The columns, the primary key first.
    const COLUMNS: &'static [Column];
    fn cells(&self) -> Vec<Sql>;
    fn from_cells(cells: Vec<Sql>) -> Result<Self>;
}

/// The primary key of a view row.
pub trait RowKey: Copy + Eq + Hash + Debug + Send + 'static {
    fn to_sql(self) -> Sql;
    /// The key's bits, for the Bloom filter of evicted keys.
    fn bits(self) -> u128;
}

impl RowKey for i32 {
    fn to_sql(self) -> Sql {
        Sql::Int(self.into())
    }
    fn bits(self) -> u128 {
        self as u32 as u128
    }
}

impl RowKey for Uuid {
    fn to_sql(self) -> Sql {
        Sql::Uuid(self)
    }
    fn bits(self) -> u128 {
        self.as_u128()
    }
}

/// A row of a view table.
pub trait ViewRow: Cells + Clone + Debug + PartialEq + Send + 'static {
    type Key: RowKey;
    fn key(&self) -> Self::Key;
}

/// A change a projector makes to one row.
pub trait Patch<R: ViewRow>: Clone + Debug {
    /// The columns it sets, with their values.
    fn sets(&self) -> Vec<(&'static str, Sql)>;
    /// The change applied to a row in memory.
    fn apply(self, row: &mut R);
    /// The row it starts from when the table has none (the change is then
    /// an upsert); `None`: without a row it changes nothing.
    fn create(&self, _key: R::Key) -> Option<R> {
        None
    }
}

/// The patch of a view whose rows are only ever written whole.
#[derive(Debug, Clone)]
pub enum NoPatch {}

impl<R: ViewRow> Patch<R> for NoPatch {
    fn sets(&self) -> Vec<(&'static str, Sql)> {
        match *self {}
    }
    fn apply(self, _row: &mut R) {
        match self {}
    }
}

/// What a view's primary key identifies (the correction finds the rows of
/// the aggregates it re-derives by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    /// A Slurm job id.
    Job,
    Workflow,
    Task,
}

/// Everything about a view that is not code: its names, its table, its
/// Python model, its columns.
#[derive(Debug)]
pub struct ViewSpec {
    /// The name in `views=` (`"job_accounting"`).
    pub name: &'static str,
    /// The reference's projector class (`"JobAccounting"`).
    pub class_name: &'static str,
    pub table: &'static str,
    /// The projector's tracking table (docs/storage.md, "Tracking tables").
    pub tracking_table: &'static str,
    /// The reference's events table of the projector (dropped by BIOMERO's
    /// reset path; never written).
    pub events_table: &'static str,
    /// The Python row model's class name and docstring.
    pub model: &'static str,
    pub model_doc: &'static str,
    /// The columns, the primary key first.
    pub columns: &'static [Column],
    pub keyed_by: Keyed,
    /// For a view keyed by a Slurm job: the column naming the task whose
    /// job the row is (the correction follows it to that task).
    pub task_column: Option<&'static str>,
}

impl ViewSpec {
    pub fn key(&self) -> &'static Column {
        &self.columns[0]
    }

    /// The select list of every column, as stored; with `utc`, time
    /// columns read as UTC on Postgres (see [`time_param`]).
    pub fn select_list(&self, backend: Backend, utc: bool) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| match (c.kind, backend, utc) {
                (Kind::Time, Backend::Postgres, true) => format!("{}::timestamptz", c.ident()),
                _ => c.ident(),
            })
            .collect();
        cols.join(", ")
    }

    pub fn kinds(&self) -> Vec<Kind> {
        self.columns.iter().map(|c| c.kind).collect()
    }

    /// The shape the catalog check expects: of the baseline's columns only
    /// (`baseline_only`, what an unstamped table of biomero 2.8.3 has), or
    /// of every column.
    pub fn shape(&self, baseline_only: bool) -> Vec<ColumnShape> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !baseline_only || c.since.is_none())
            .map(|(i, c)| c.shape(i == 0))
            .collect()
    }

    /// `CREATE TABLE` of the table with every column (`temp`: a temporary
    /// table, which shadows the real one).
    pub fn create_table_sql(&self, backend: Backend, temp: bool) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                format!(
                    "{} {}{}",
                    c.ident(),
                    c.ty(backend),
                    if c.nullable { "" } else { " NOT NULL" }
                )
            })
            .collect();
        format!(
            "CREATE {}TABLE {} ({}, PRIMARY KEY ({}))",
            if temp { "TEMP " } else { "" },
            self.table,
            cols.join(", "),
            self.key().ident()
        )
    }
}

/// A view table: its row, the changes of a row, and its description.
pub trait ViewTable: 'static {
    type Row: ViewRow;
    type Patch: Patch<Self::Row>;
    const SPEC: ViewSpec;
}

/// A row of `table` whose column `what` is NULL or unreadable.
pub fn bad_row(table: &str, what: &str) -> Error {
    Error::Database {
        backend: "view",
        message: format!("{table}: {what} is NULL or unreadable"),
    }
}

/// Defines a view's row type and its [`Cells`]: one line per column, the
/// key first, each with its Rust type (which gives its SQL type and
/// nullability) and its documentation; `#[since = "rev"]` marks a column a
/// migration added after the baseline.
macro_rules! view_row {
    (@since) => { None };
    (@since $rev:literal) => { Some($rev) };
    (
        $(#[doc = $doc:literal])*
        pub struct $row:ident in $table:expr;
        key $kfield:ident: $kty:ty => $kdoc:literal,
        $( $(#[since = $since:literal])? $field:ident: $ty:ty => $fdoc:literal, )*
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $row {
            #[doc = $kdoc]
            pub $kfield: $kty,
            $( #[doc = $fdoc] pub $field: $ty, )*
        }

        impl $crate::projections::view::Cells for $row {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [$crate::projections::view::Column] = &[
                $crate::projections::view::Column::of::<$kty>(stringify!($kfield), None, $kdoc),
                $( $crate::projections::view::Column::of::<$ty>(
                    stringify!($field),
                    view_row!(@since $($since)?),
                    $fdoc,
                ), )*
            ];

            fn cells(&self) -> Vec<$crate::store::Sql> {
                use $crate::projections::view::ColumnType;
                vec![self.$kfield.to_sql(), $( self.$field.to_sql(), )*]
            }

            fn from_cells(cells: Vec<$crate::store::Sql>) -> $crate::error::Result<Self> {
                use $crate::projections::view::ColumnType;
                let mut it = cells.into_iter();
                let mut next = || it.next().unwrap_or($crate::store::Sql::Null);
                Ok($row {
                    $kfield: <$kty>::from_sql(next()).ok_or_else(|| {
                        $crate::projections::view::bad_row($table, stringify!($kfield))
                    })?,
                    $( $field: <$ty>::from_sql(next()).ok_or_else(|| {
                        $crate::projections::view::bad_row($table, stringify!($field))
                    })?, )*
                })
            }
        }
    };
}
pub(crate) use view_row;

// ---------------------------------------------------------------------- SQL

/// The placeholder `$n` of a UTC time written to a view column: on Postgres
/// as `timestamptz`, which the column (`timestamp without time zone`)
/// stores as the wall time of the session's `TimeZone`, as the reference's
/// aware datetimes are stored; on SQLite the UTC text, as the reference
/// writes it (docs/storage.md, "View tables").
pub fn time_param(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("${n}"),
        Backend::Postgres => format!("${n}::timestamptz"),
    }
}

/// The placeholder of column `c` at position `n`.
fn param(backend: Backend, c: &Column, n: usize) -> String {
    match c.kind {
        Kind::Time => time_param(backend, n),
        _ => format!("${n}"),
    }
}

/// Which statement of a view the cache holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Stmt {
    /// Upsert setting the columns of the mask on conflict.
    Upsert(u64),
    /// `UPDATE` of the columns of the mask.
    Update(u64),
    Delete,
    /// `SELECT` by key (`true`: times as UTC).
    Get(bool),
}

type StmtKey = (TypeId, u8, Stmt);

/// The statements built so far (a view has a handful): built once, kept
/// for the life of the process.
fn statement<V: ViewTable>(
    backend: Backend,
    stmt: Stmt,
    build: impl FnOnce(&ViewSpec) -> String,
) -> &'static str {
    static CACHE: OnceLock<RwLock<HashMap<StmtKey, &'static str>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (TypeId::of::<V>(), backend as u8, stmt);
    if let Some(s) = cache.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return s;
    }
    let mut map = cache.write().unwrap_or_else(|e| e.into_inner());
    map.entry(key)
        .or_insert_with(|| Box::leak(build(&V::SPEC).into_boxed_str()))
}

/// The mask of every column but the key.
fn all_but_key(spec: &ViewSpec) -> u64 {
    ((1u64 << spec.columns.len()) - 1) & !1
}

/// The mask of the columns `sets` names, in column order.
fn mask_of(spec: &ViewSpec, sets: &[(&'static str, Sql)]) -> u64 {
    let mut mask = 0;
    for (name, _) in sets {
        let i = spec
            .columns
            .iter()
            .position(|c| c.name == *name)
            .unwrap_or_else(|| panic!("{}: no column {name}", spec.table));
        mask |= 1 << i;
    }
    mask
}

/// `INSERT` of a whole row that, on conflict, sets the columns of `mask`.
fn upsert_sql(spec: &ViewSpec, backend: Backend, mask: u64) -> String {
    let names: Vec<String> = spec.columns.iter().map(Column::ident).collect();
    let values: Vec<String> = spec
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| param(backend, c, i + 1))
        .collect();
    let sets: Vec<String> = spec
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, c)| format!("{0} = excluded.{0}", c.ident()))
        .collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
        spec.table,
        names.join(", "),
        values.join(", "),
        spec.key().ident(),
        sets.join(", ")
    )
}

/// The upsert of a whole row and its parameters.
pub fn upsert<V: ViewTable>(backend: Backend, row: &V::Row) -> (&'static str, Vec<Sql>) {
    let sql = statement::<V>(backend, Stmt::Upsert(u64::MAX), |spec| {
        upsert_sql(spec, backend, all_but_key(spec))
    });
    (sql, row.cells())
}

/// A patch as one statement and its parameters: an upsert that sets the
/// patched columns where the patch creates a missing row, else an
/// `UPDATE` of those columns (which changes nothing without a row).
pub fn patch_statement<V: ViewTable>(
    backend: Backend,
    key: <V::Row as ViewRow>::Key,
    patch: &V::Patch,
) -> (&'static str, Vec<Sql>) {
    let spec = &V::SPEC;
    let sets = patch.sets();
    let mask = mask_of(spec, &sets);
    if let Some(mut row) = patch.create(key) {
        patch.clone().apply(&mut row);
        let sql = statement::<V>(backend, Stmt::Upsert(mask), |spec| {
            upsert_sql(spec, backend, mask)
        });
        return (sql, row.cells());
    }
    let sql = statement::<V>(backend, Stmt::Update(mask), |spec| {
        let mut n = 1;
        let assignments: Vec<String> = spec
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| {
                n += 1;
                format!("{} = {}", c.ident(), param(backend, c, n))
            })
            .collect();
        format!(
            "UPDATE {} SET {} WHERE {} = $1",
            spec.table,
            assignments.join(", "),
            spec.key().ident()
        )
    });
    let mut params = Vec::with_capacity(1 + sets.len());
    params.push(key.to_sql());
    for (i, c) in spec.columns.iter().enumerate() {
        if mask & (1 << i) != 0 {
            let value = sets
                .iter()
                .find(|(name, _)| *name == c.name)
                .map(|(_, v)| v.clone())
                .unwrap_or(Sql::Null);
            params.push(value);
        }
    }
    (sql, params)
}

/// `DELETE` of one row by key.
pub fn delete_statement<V: ViewTable>(
    backend: Backend,
    key: <V::Row as ViewRow>::Key,
) -> (&'static str, Vec<Sql>) {
    let sql = statement::<V>(backend, Stmt::Delete, delete_sql);
    (sql, vec![key.to_sql()])
}

/// `DELETE` of one row by key (`$1`).
pub fn delete_sql(spec: &ViewSpec) -> String {
    format!(
        "DELETE FROM {} WHERE {} = $1",
        spec.table,
        spec.key().ident()
    )
}

/// Upserts a whole row now.
pub fn write<V: ViewTable>(tx: &mut dyn Tx, row: &V::Row) -> Result<()> {
    let (sql, params) = upsert::<V>(tx.backend(), row);
    tx.execute(sql, &params)?;
    Ok(())
}

/// Deletes a row now.
pub fn delete<V: ViewTable>(tx: &mut dyn Tx, key: <V::Row as ViewRow>::Key) -> Result<()> {
    let (sql, params) = delete_statement::<V>(tx.backend(), key);
    tx.execute(sql, &params)?;
    Ok(())
}

fn get_with<V: ViewTable>(
    tx: &mut dyn Tx,
    key: <V::Row as ViewRow>::Key,
    utc: bool,
) -> Result<Option<V::Row>> {
    let backend = tx.backend();
    let sql = statement::<V>(backend, Stmt::Get(utc), |spec| {
        format!(
            "SELECT {} FROM {} WHERE {} = $1",
            spec.select_list(backend, utc),
            spec.table,
            spec.key().ident()
        )
    });
    let rows = tx.query(sql, &[key.to_sql()], &V::SPEC.kinds())?;
    rows.into_iter()
        .next()
        .map(<V::Row as Cells>::from_cells)
        .transpose()
}

/// One row by key, times as stored.
pub fn get<V: ViewTable>(tx: &mut dyn Tx, key: <V::Row as ViewRow>::Key) -> Result<Option<V::Row>> {
    get_with::<V>(tx, key, false)
}

/// One row by key, times in UTC (what the projectors change).
pub fn get_utc<V: ViewTable>(
    tx: &mut dyn Tx,
    key: <V::Row as ViewRow>::Key,
) -> Result<Option<V::Row>> {
    get_with::<V>(tx, key, true)
}

/// The rows matching `cond` (a condition on the columns, `1 = 1` for all,
/// with `$1`.. in `params`), in `order`.
pub fn select<V: ViewTable>(
    tx: &mut dyn Tx,
    cond: &str,
    params: &[Sql],
    order: &str,
) -> Result<Vec<V::Row>> {
    let spec = &V::SPEC;
    let rows = tx.query(
        &format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {order}",
            spec.select_list(tx.backend(), false),
            spec.table
        ),
        params,
        &spec.kinds(),
    )?;
    rows.into_iter()
        .map(<V::Row as Cells>::from_cells)
        .collect()
}

/// Every row, in key order.
pub fn all<V: ViewTable>(tx: &mut dyn Tx) -> Result<Vec<V::Row>> {
    let order = V::SPEC.key().ident();
    select::<V>(tx, "1 = 1", &[], &order)
}

/// Appends `AND col = $n` for each given filter of a 32-bit column. `None`
/// when a filter is outside the 32-bit range (no row can match).
pub fn filters(
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
