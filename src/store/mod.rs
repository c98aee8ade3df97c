//! The event store: one trait, an SQLite and a Postgres implementation, and
//! the process-wide registry that shares one store (pool) per URL.
//!
//! A store hands out transactions ([`Tx`]). The same transaction appends the
//! command's events and runs the projectors, so events, view rows and tracking
//! positions commit together or not at all.

pub mod catalog;
pub mod pg_client;
pub mod pool;
pub mod postgres;
pub mod schema;
pub mod session;
pub mod sqlite;
pub mod url;

use crate::error::{Error, Result};
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

pub use url::DbUrl;

/// In the statements queued for [`Tx::commit_in_one`], the last
/// notification id its insert drew (a transaction-local setting the insert
/// leaves; read after it, in the same transaction).
pub const APPENDED_LAST_ID: &str = "current_setting('biomero_rs.appended')::bigint";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// An event as the events table stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub originator_id: Uuid,
    pub originator_version: i64,
    pub topic: String,
    pub state: Vec<u8>,
}

/// A stored event with its notification id (its position in the log).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: i64,
    pub event: StoredEvent,
}

/// A stored event as [`Tx::scan_notifications`] lends it: borrowed from the
/// database's row, not copied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NotificationRef<'a> {
    pub id: i64,
    pub originator_id: Uuid,
    pub originator_version: i64,
    pub topic: &'a str,
    pub state: &'a [u8],
}

impl Notification {
    pub fn as_ref(&self) -> NotificationRef<'_> {
        NotificationRef {
            id: self.id,
            originator_id: self.event.originator_id,
            originator_version: self.event.originator_version,
            topic: &self.event.topic,
            state: &self.event.state,
        }
    }
}

/// A value bound to or read from SQL, whatever the backend's column type.
/// UUIDs and times are written in each backend's own format (docs/storage.md).
#[derive(Debug, Clone, PartialEq)]
pub enum Sql {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Uuid(Uuid),
    /// Naive UTC.
    Time(NaiveDateTime),
    /// An aggregate id as the events table's `originator_id` holds it (its
    /// 16 bytes on SQLite, `uuid` on Postgres).
    Originator(Uuid),
}

/// What a query column holds, so that each backend can read its own format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Real,
    Text,
    Uuid,
    Time,
}

impl Sql {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Sql::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Sql::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Sql::Uuid(u) => Some(*u),
            _ => None,
        }
    }
    pub fn as_time(&self) -> Option<NaiveDateTime> {
        match self {
            Sql::Time(t) => Some(*t),
            _ => None,
        }
    }
    pub fn into_text(self) -> Option<String> {
        match self {
            Sql::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<Option<String>> for Sql {
    fn from(v: Option<String>) -> Self {
        v.map_or(Sql::Null, Sql::Text)
    }
}

impl From<Option<i64>> for Sql {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Sql::Null, Sql::Int)
    }
}

impl From<Option<NaiveDateTime>> for Sql {
    fn from(v: Option<NaiveDateTime>) -> Self {
        v.map_or(Sql::Null, Sql::Time)
    }
}

/// The one row of `SELECT <exprs>`.
pub fn select_row(
    tx: &mut (impl Tx + ?Sized),
    exprs: &str,
    params: &[Sql],
    kinds: &[Kind],
) -> Result<Vec<Sql>> {
    Ok(tx
        .query(&format!("SELECT {exprs}"), params, kinds)?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// What [`Tx::queue`] logs when its statement changes no row.
#[derive(Debug, Clone, PartialEq)]
pub struct NoRow {
    pub level: log::Level,
    pub message: String,
}

impl NoRow {
    pub fn debug(message: String) -> NoRow {
        NoRow {
            level: log::Level::Debug,
            message,
        }
    }

    pub fn warn(message: String) -> NoRow {
        NoRow {
            level: log::Level::Warn,
            message,
        }
    }

    pub fn log(&self) {
        log::log!(self.level, "{}", self.message);
    }
}

/// `sql` with each placeholder `$n` renumbered `$(n + offset)`.
pub fn shift_placeholders(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
            let start = i + 1;
            let mut end = start;
            while let Some((j, d)) = chars.peek().copied() {
                if !d.is_ascii_digit() {
                    break;
                }
                end = j + 1;
                chars.next();
            }
            let n: usize = sql[start..end].parse().expect("digits");
            out.push('$');
            out.push_str(&(n + offset).to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// What [`Tx::scan_history`] lends each event to: its version, topic and
/// state.
pub type HistoryFn<'f> = dyn FnMut(i64, &str, &[u8]) -> Result<()> + 'f;

/// What [`Tx::scan_aggregate`] lends each event to: its notification id,
/// version, topic and state.
pub type AggregateRowFn<'f> = dyn FnMut(i64, i64, &str, &[u8]) -> Result<()> + 'f;

/// One open transaction. SQL text uses `$1, $2, ...` placeholders on both
/// backends.
pub trait Tx {
    fn backend(&self) -> Backend;

    /// An aggregate's events in version order, with their notification ids.
    fn load_events(&mut self, originator_id: Uuid) -> Result<Vec<Notification>>;

    /// An aggregate's events from version `from` on, in version order, lent
    /// one at a time to `f` as (notification id, version, topic, state)
    /// straight from the row; without `with_ids` the id is not selected (a
    /// column fewer per row) and is 0. Stops at `f`'s first error.
    fn scan_aggregate(
        &mut self,
        originator_id: Uuid,
        from: i64,
        with_ids: bool,
        f: &mut AggregateRowFn<'_>,
    ) -> Result<()>;

    /// [`load_events`](Tx::load_events) from version `from` on, lent one at
    /// a time to `f` without copying them; stops at `f`'s first error.
    fn scan_events(
        &mut self,
        originator_id: Uuid,
        from: i64,
        f: &mut dyn FnMut(&NotificationRef<'_>) -> Result<()>,
    ) -> Result<()> {
        self.scan_aggregate(originator_id, from, true, &mut |id, v, topic, state| {
            f(&NotificationRef {
                id,
                originator_id,
                originator_version: v,
                topic,
                state,
            })
        })
    }

    /// An aggregate's history from version `from` on, as a repository
    /// reads it: each event's version, topic and state, in version order,
    /// lent one at a time to `f` (no notification ids: a column fewer per
    /// row than [`scan_events`](Tx::scan_events)); stops at `f`'s first
    /// error.
    fn scan_history(
        &mut self,
        originator_id: Uuid,
        from: i64,
        f: &mut HistoryFn<'_>,
    ) -> Result<()> {
        self.scan_aggregate(originator_id, from, false, &mut |_, v, topic, state| {
            f(v, topic, state)
        })
    }

    /// The events a query over the events table selects, as columns `id,
    /// originator_id, originator_version, topic, state` in that order
    /// (aggregate ids bound as [`Sql::Originator`]).
    fn query_notifications(&mut self, sql: &str, params: &[Sql]) -> Result<Vec<Notification>>;

    /// Appends events, returning their notification ids. A taken
    /// (originator_id, originator_version) gives [`Error::Conflict`].
    fn append(&mut self, events: &[StoredEvent]) -> Result<Vec<i64>>;

    /// Serialises this transaction with every other writer of the log
    /// (Postgres: the reference's exclusive table lock; SQLite: writers are
    /// serialised by `BEGIN IMMEDIATE` already).
    fn lock_log(&mut self) -> Result<()>;

    /// Notifications with `after < id <= upto`, in id order, at most `limit`.
    fn notifications(
        &mut self,
        after: i64,
        upto: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Notification>>;

    /// [`notifications`](Tx::notifications), lent one at a time to `f`
    /// without copying them (where the backend can). Returns how many there
    /// were and the id of the last one.
    fn scan_notifications(
        &mut self,
        after: i64,
        upto: Option<i64>,
        limit: usize,
        f: &mut dyn FnMut(&NotificationRef<'_>),
    ) -> Result<(usize, Option<i64>)> {
        let batch = self.notifications(after, upto, limit)?;
        for n in &batch {
            f(&n.as_ref());
        }
        Ok((batch.len(), batch.last().map(|n| n.id)))
    }

    /// The highest notification id, 0 for an empty log.
    fn max_notification_id(&mut self) -> Result<i64>;

    fn execute(&mut self, sql: &str, params: &[Sql]) -> Result<u64>;

    /// Queues a statement that changes rows of `table` and whose outcome
    /// nothing in the transaction reads (a view write): it runs before any
    /// later statement of the transaction and before the commit, in order.
    /// Where it changes no row, `no_row` is logged. A backend may send
    /// queued statements together (Postgres: as one statement, the others
    /// as data-modifying CTEs, while no table repeats). The default runs it
    /// at once.
    fn queue(
        &mut self,
        table: &'static str,
        sql: &str,
        params: Vec<Sql>,
        no_row: Option<NoRow>,
    ) -> Result<()> {
        let _ = table;
        let n = self.execute(sql, &params)?;
        if n == 0 {
            if let Some(note) = no_row {
                note.log();
            }
        }
        Ok(())
    }

    /// [`append`](Tx::append) of `events`, then `SELECT <exprs>` (a select
    /// list whose `$n` are `params`), returning the ids and the selected
    /// row; one round trip where the backend can.
    fn append_and_select(
        &mut self,
        events: &[StoredEvent],
        exprs: &str,
        params: &[Sql],
        kinds: &[Kind],
    ) -> Result<(Vec<i64>, Vec<Sql>)> {
        let ids = self.append(events)?;
        let row = select_row(self, exprs, params, kinds)?;
        Ok((ids, row))
    }

    /// Whether this transaction can run [`commit_in_one`](Tx::commit_in_one).
    fn one_round_trip(&self) -> bool {
        false
    }

    /// While on, nothing is sent: anything that would need an answer from
    /// the database fails with [`Error::NotInOneTrip`] instead (queued
    /// statements wait). For preparing a [`commit_in_one`](Tx::commit_in_one).
    fn set_offline(&mut self, on: bool) {
        let _ = on;
    }

    /// The whole transaction in one round trip: BEGIN and the log's lock,
    /// `check` (a one-row SELECT, with its parameters and the kinds of its
    /// columns, run before the insert draws an id), the insert of `events`,
    /// the queued statements and COMMIT.
    /// The check refuses by dividing by zero; the insert refuses (the same
    /// way) when a version of `events` is taken. Refused, nothing is written
    /// and this fails with [`Error::NotInOneTrip`]. Returns the events'
    /// notification ids and the check's rows. The queued statements can
    /// read the last of those ids as the SQL expression
    /// [`APPENDED_LAST_ID`].
    fn commit_in_one(
        &mut self,
        check: (&str, &[Sql], &[Kind]),
        events: &[StoredEvent],
    ) -> Result<(Vec<i64>, Vec<Vec<Sql>>)> {
        let _ = (check, events);
        Err(Error::NotInOneTrip)
    }

    fn query(&mut self, sql: &str, params: &[Sql], kinds: &[Kind]) -> Result<Vec<Vec<Sql>>>;

    /// Several statements without parameters (DDL).
    fn execute_batch(&mut self, sql: &str) -> Result<()>;

    /// Whether a table exists.
    fn table_exists(&mut self, table: &str) -> Result<bool>;

    /// One ad-hoc statement of a client (placeholders `?1, ?2, ...` on
    /// SQLite, `$1, $2, ...` on Postgres) with `params` bound: its column
    /// names and rows, each cell as the backend holds it, or the number of
    /// rows it changed when it returns none.
    fn query_any(&mut self, sql: &str, params: &[Sql]) -> Result<AnyRows>;
}

/// A cell of [`Tx::query_any`]: what the backend's column holds.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyCell {
    Null,
    Bool(bool),
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
    Uuid(Uuid),
    /// Naive (a column without time zone).
    Time(NaiveDateTime),
    /// With time zone, in UTC.
    TimeTz(NaiveDateTime),
    Date(chrono::NaiveDate),
}

/// The answer of [`Tx::query_any`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnyRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<AnyCell>>,
    /// Rows changed by a statement that returns none.
    pub affected: u64,
}

/// A store: hands out transactions on pooled connections.
pub trait EventStore: Send + Sync {
    fn backend(&self) -> Backend;

    /// The URL with its password masked.
    fn masked_url(&self) -> String;

    /// Runs `f` in a write transaction and commits it when `f` returns Ok;
    /// rolls back otherwise.
    fn write(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()>;

    /// [`write`](EventStore::write) holding the log's lock
    /// ([`Tx::lock_log`]) from the start (on Postgres taken with BEGIN, in
    /// one round trip).
    fn write_locked(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.write(&mut |tx| {
            tx.lock_log()?;
            f(tx)
        })
    }

    /// Runs `f` in a read-only transaction.
    fn read(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()>;

    /// Whether the store was opened read-only (writes then fail).
    fn read_only(&self) -> bool {
        false
    }

    /// Closes this process's idle connections now (those in use close when
    /// they are given back); the next use connects again.
    fn close(&self) {}

    /// A connection of its own, outside the pool, for a rebuild (see
    /// [`session`]). Fails on a read-only store.
    fn session(&self) -> Result<Box<dyn session::Session + '_>>;

    /// Whether a rebuild of this database is running now.
    fn rebuild_running(&self) -> bool {
        false
    }
}

/// Runs `f` in a write transaction and returns its value.
pub fn write_tx<T>(
    store: &dyn EventStore,
    mut f: impl FnMut(&mut dyn Tx) -> Result<T>,
) -> Result<T> {
    let mut out = None;
    store.write(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    Ok(out.expect("write closure ran"))
}

/// Runs `f` in a write transaction that holds the log's lock from the
/// start, and returns its value.
pub fn write_locked_tx<T>(
    store: &dyn EventStore,
    mut f: impl FnMut(&mut dyn Tx) -> Result<T>,
) -> Result<T> {
    let mut out = None;
    store.write_locked(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    Ok(out.expect("write closure ran"))
}

/// Runs `f` in a read transaction and returns its value.
pub fn read_tx<T>(
    store: &dyn EventStore,
    mut f: impl FnMut(&mut dyn Tx) -> Result<T>,
) -> Result<T> {
    let mut out = None;
    store.read(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    Ok(out.expect("read closure ran"))
}

/// The URL to use: the argument, else `SQLALCHEMY_URL`.
pub fn resolve_url(url: Option<&str>) -> Result<String> {
    if let Ok(module) = std::env::var("PERSISTENCE_MODULE") {
        if !module.is_empty() && module != "eventsourcing_sqlalchemy" {
            return Err(Error::value(format!(
                "PERSISTENCE_MODULE={module:?} is not supported; biomero_rs reads and writes the \
                 eventsourcing_sqlalchemy layout (unset it or set it to eventsourcing_sqlalchemy)"
            )));
        }
    }
    match url {
        Some(u) => Ok(u.to_owned()),
        None => std::env::var("SQLALCHEMY_URL").map_err(|_| {
            Error::value("url: no database URL given; pass url= or set SQLALCHEMY_URL (e.g. sqlite:///biomero.db)")
        }),
    }
}

/// Each store with the number of its users that have not released it.
type Registry = Mutex<HashMap<String, (Arc<dyn EventStore>, usize)>>;

/// The stores this process opened, by URL. A forked child starts with an
/// empty registry of its own (see [`crate::sys::process`]).
fn registry() -> &'static Registry {
    static STORES: crate::sys::process::ProcessLocal<Registry> =
        crate::sys::process::ProcessLocal::new();
    STORES.get_or_init(Default::default)
}

/// What [`open`] runs on a database the first time this process opens it.
/// The store knows its own tables only; what else a database must hold is
/// the caller's (the composition root's) business.
pub struct OpenCheck<'a> {
    /// A read-only check that runs before anything is created or changed
    /// (on an SQLite file: before it is switched to WAL); an error stops the
    /// open with nothing changed.
    pub check: &'a dyn Fn(&mut dyn Tx) -> Result<()>,
    /// The tracking tables created with the events table where missing.
    pub tracking_tables: &'a [&'a str],
}

/// The store for `url`, shared by every object of this process that uses the
/// same URL (one pool per URL; one database for `sqlite:///:memory:`). On
/// the first open, `first.check` runs, then the events table and the
/// tracking tables are created where missing (unless read-only).
pub fn open(url: &str, first: &OpenCheck<'_>) -> Result<Arc<dyn EventStore>> {
    let parsed = DbUrl::parse(url)?;
    let key = url.trim().to_owned();
    if let Some((store, users)) = registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&key)
    {
        *users += 1;
        return Ok(store.clone());
    }
    let store: Arc<dyn EventStore> = match &parsed {
        DbUrl::Sqlite {
            location,
            synchronous,
            read_only,
        } => {
            if let url::SqliteLocation::File(path) = location {
                sqlite::inspect(path, |tx| (first.check)(tx))?;
            }
            Arc::new(sqlite::SqliteStore::open(
                location,
                *synchronous,
                *read_only,
            )?)
        }
        DbUrl::Postgres(target) => {
            let store = Arc::new(postgres::PostgresStore::open(target, parsed.masked())?);
            read_tx(store.as_ref(), |tx| (first.check)(tx))?;
            store
        }
    };
    if !store.read_only() {
        write_tx(store.as_ref(), |tx| {
            schema::ensure_event_tables(tx, first.tracking_tables)
        })?;
    }
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    let entry = reg.entry(key).or_insert((store, 0));
    entry.1 += 1;
    Ok(entry.0.clone())
}

/// Runs `f` in a read transaction on the database of `url`, outside the
/// shared stores: nothing is created, adopted, migrated or switched to WAL
/// (an SQLite file is opened read-only, and one that does not exist is an
/// error, not created). `f` also gets the description of the rebuild that
/// runs now, if one does (see [`session`]). For checks that must be fast and
/// change nothing.
pub fn inspect<T>(
    url: &str,
    f: impl FnOnce(&mut dyn Tx, Option<String>) -> Result<T>,
) -> Result<T> {
    let parsed = DbUrl::parse(url)?;
    match &parsed {
        DbUrl::Sqlite { location, .. } => match location {
            url::SqliteLocation::Memory => Err(Error::value(
                "url: an in-memory SQLite database has nothing to check (it lives in one process)",
            )),
            url::SqliteLocation::File(path) => {
                let holder = sqlite::rebuild_holder(path);
                sqlite::inspect(path, |tx| f(tx, holder))?.ok_or_else(|| {
                    Error::value(format!(
                        "url: the SQLite file {} does not exist",
                        path.display()
                    ))
                })
            }
        },
        DbUrl::Postgres(target) => {
            let store = postgres::PostgresStore::open(target, parsed.masked())?;
            let mut f = Some(f);
            read_tx(&store, |tx| {
                let holder = postgres::rebuild_holder(tx)?;
                (f.take().expect("called once"))(tx, holder)
            })
        }
    }
}

/// Forgets this process's shared store of `url` and closes its idle
/// connections (objects still using it connect again on their next call).
/// For an in-memory SQLite URL the next open is a new, empty database, as a
/// new SQLAlchemy engine on `sqlite:///:memory:` is (objects still using
/// the old one keep it). Returns the stores it forgot.
pub fn close(url: &str) -> Vec<Arc<dyn EventStore>> {
    let is_memory = |u: &str| {
        matches!(
            DbUrl::parse(u),
            Ok(DbUrl::Sqlite {
                location: url::SqliteLocation::Memory,
                ..
            })
        )
    };
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    let forgotten: Vec<Arc<dyn EventStore>> = if is_memory(url) {
        let keys: Vec<String> = reg.keys().filter(|k| is_memory(k)).cloned().collect();
        keys.iter()
            .filter_map(|k| reg.remove(k))
            .map(|(s, _)| s)
            .collect()
    } else {
        reg.remove(url.trim()).into_iter().map(|(s, _)| s).collect()
    };
    drop(reg);
    for s in &forgotten {
        s.close(); // a no-op for a memory database
    }
    forgotten
}

/// Gives back one user's use of the shared store of `url` (one call per
/// [`open`]): when no user of this process is left, the store is forgotten
/// and its connections are closed (files and server sessions released). A
/// store inherited from a parent process closes only this process's own
/// connections (see [`process`]).
pub fn release(url: &str, store: &Arc<dyn EventStore>) {
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    let key = url.trim();
    match reg.get_mut(key) {
        Some((shared, users)) if Arc::ptr_eq(shared, store) => {
            *users = users.saturating_sub(1);
            if *users > 0 {
                return;
            }
        }
        _ => {
            // Already forgotten by `close(url)`, which closed it; close
            // what it connected since (others using it connect again).
            drop(reg);
            store.close();
            return;
        }
    }
    if matches!(
        DbUrl::parse(key),
        Ok(DbUrl::Sqlite {
            location: url::SqliteLocation::Memory,
            ..
        })
    ) {
        return; // the process's one memory database stays
    }
    reg.remove(key);
    drop(reg);
    store.close();
}

#[cfg(test)]
mod tests {
    use super::shift_placeholders;

    #[test]
    fn placeholders_are_renumbered() {
        assert_eq!(
            shift_placeholders("UPDATE t SET a = $2, b = $10 WHERE id = $1", 4),
            "UPDATE t SET a = $6, b = $14 WHERE id = $5"
        );
        assert_eq!(
            shift_placeholders("SELECT '$' || $1", 1),
            "SELECT '$' || $2"
        );
        assert_eq!(shift_placeholders("SELECT $1", 0), "SELECT $1");
    }
}
