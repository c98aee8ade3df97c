//! The Postgres event store (`postgres`, pooled by `store::pool`).
//!
//! Each insert transaction takes `LOCK TABLE workflowtracker_events IN
//! EXCLUSIVE MODE`, as eventsourcing_sqlalchemy does, so notification ids
//! become visible in order and projectors that run in the same transaction
//! are serialised with every other writer.

use crate::error::{Error, Result};
use crate::store::pg_client::{Bounds, PgClient, PgFail};
use crate::store::pool::{Manager, Pool, Pooled};
use crate::store::schema::EVENTS_TABLE;
use crate::store::session::{holder_text, wait_for, Session};
use crate::store::url::PostgresTarget;
use crate::store::{
    select_row, shift_placeholders, AggregateRowFn, AnyCell, AnyRows, Backend, EventStore, Kind,
    NoRow, Notification, Sql, StoredEvent, Tx,
};
use crate::sys::process::ProcessLocal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::Statement;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// A pooled connection with the statements it has prepared, so that each
/// statement is parsed once per connection, not once per transaction.
pub struct PgConn {
    client: PgClient,
    statements: HashMap<String, Statement>,
    prepared: Prepared,
}

/// The connection's SQL-level prepared statements (`PREPARE name AS ...`),
/// run with `EXECUTE name(literals)` inside a simple query, so that several
/// statements (BEGIN and LOCK, then an insert; view writes, then COMMIT) go
/// in one round trip and still reuse their plans. Names are never reused.
#[derive(Default)]
pub struct Prepared {
    names: HashMap<String, String>,
    next: u64,
}

impl Prepared {
    /// The statement's name, and whether it still has to be prepared.
    fn name(&mut self, sql: &str) -> (String, bool) {
        if let Some(n) = self.names.get(sql) {
            return (n.clone(), false);
        }
        self.next += 1;
        let n = format!("biomero_rs_{}", self.next);
        self.names.insert(sql.to_owned(), n.clone());
        (n, true)
    }
}

/// Opens the pool's connections, each with its statement caches.
pub struct CachingManager {
    config: tokio_postgres::Config,
    bounds: Bounds,
    masked: String,
    endpoint: String,
}

impl Manager for CachingManager {
    type Conn = PgConn;

    fn connect(&self) -> Result<PgConn> {
        let client = PgClient::connect(&self.config, self.bounds.clone()).map_err(|e| match e {
            PgFail::Interrupted => Error::Interrupted,
            PgFail::Pg(e) => connect_err(&self.endpoint, &self.masked, chain(&e)),
            other => connect_err(&self.endpoint, &self.masked, fail_text(&other)),
        })?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            prepared: Prepared::default(),
        })
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

pub struct PostgresStore {
    config: tokio_postgres::Config,
    bounds: Bounds,
    /// This process's pool (a forked child makes its own, with its own
    /// server sessions and prepared statements); `None` after
    /// [`EventStore::close`] until the next use.
    pool: ProcessLocal<Mutex<Option<Pool<CachingManager>>>>,
    masked: String,
    /// "host:port" for messages.
    endpoint: String,
}

impl PostgresStore {
    pub fn open(target: &PostgresTarget, masked: String) -> Result<PostgresStore> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&target.host)
            .port(target.port)
            .connect_timeout(target.connect_timeout)
            .user(target.effective_user());
        if let Some(p) = target.effective_password() {
            config.password(p);
        }
        if let Some(d) = &target.dbname {
            config.dbname(d);
        }
        config.application_name(target.application_name.as_deref().unwrap_or("biomero_rs"));
        let store = PostgresStore {
            config,
            bounds: Bounds {
                connect_timeout: target.connect_timeout,
                command_timeout: target.command_timeout,
            },
            pool: ProcessLocal::new(),
            endpoint: format!("{}:{}", target.host, target.port),
            masked,
        };
        // Connect now: an unreachable server or a bad login is reported at
        // once, with its cause.
        drop(store.conn()?);
        Ok(store)
    }

    /// This process's pool, made on first use (and again after close).
    fn pool(&self) -> Result<Pool<CachingManager>> {
        let slot = self.pool.get_or_init(|| Mutex::new(None));
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let pool = Pool::new(
            self.manager(),
            POOL_SIZE as usize,
            self.bounds.connect_timeout + Duration::from_secs(1),
            Some(Duration::from_secs(300)),
        );
        *slot = Some(pool.clone());
        Ok(pool)
    }

    fn conn(&self) -> Result<Pooled<CachingManager>> {
        self.pool()?.get()
    }
}

fn connect_err(endpoint: &str, masked: &str, e: impl std::fmt::Display) -> Error {
    Error::Database {
        backend: "postgres",
        message: format!(
            "cannot connect to {endpoint} ({masked}): {}",
            crate::store::url::mask(&e.to_string())
        ),
    }
}

/// An error with its causes ("error connecting to server: Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// What a failure says, for messages.
fn fail_text(e: &PgFail) -> String {
    match e {
        PgFail::Pg(e) => match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => chain(e),
        },
        PgFail::NoAnswer(m) => m.clone(),
        PgFail::Interrupted => "interrupted".into(),
        PgFail::Abandoned => "the connection was closed after an earlier failure".into(),
    }
}

fn pg_err(e: impl Into<PgFail>) -> Error {
    let e = e.into();
    if matches!(e, PgFail::Interrupted) {
        return Error::Interrupted;
    }
    let message = fail_text(&e);
    Error::Database {
        backend: "postgres",
        message: crate::store::url::mask(&message),
    }
}

impl EventStore for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn masked_url(&self) -> String {
        self.masked.clone()
    }

    fn close(&self) {
        if let Some(slot) = self.pool.get() {
            slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }

    fn write(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.transaction(Begin::Write, f)
    }

    fn write_locked(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.transaction(Begin::WriteLocked, f)
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.transaction(Begin::Read, f)
    }

    fn session(&self) -> Result<Box<dyn Session + '_>> {
        Ok(Box::new(PgSession {
            conn: self.manager().connect()?,
            masked: self.masked.clone(),
            locked: false,
        }))
    }

    fn rebuild_running(&self) -> bool {
        let sql = format!(
            "SELECT COUNT(*) FROM pg_locks l WHERE {}",
            rebuild_lock_held_sql()
        );
        crate::store::read_tx(self, |tx| {
            Ok(tx.query(&sql, &[], &[Kind::Int])?[0][0].as_i64() > Some(0))
        })
        .unwrap_or(false)
    }
}

/// How a [`PgTx`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Begin {
    Write,
    /// BEGIN and the log's lock, in one round trip.
    WriteLocked,
    /// No transaction block: each query runs on its own (under READ
    /// COMMITTED a block gives a read no more consistency); one is opened,
    /// read-only, before anything that could write.
    Read,
}

impl PostgresStore {
    fn transaction(
        &self,
        begin: Begin,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            let mut conn = self.conn()?;
            let (result, committing) = run_tx(&mut conn, begin, f);
            // The pool does not ping a connection on checkout (a round trip
            // per command). One the server closed while it sat in the pool
            // (a restart) fails at its first statement: the transaction is
            // run again on another, unless its COMMIT was sent.
            let retry = matches!(result, Err(Error::Database { .. }))
                && !committing
                && attempt <= POOL_SIZE
                && !conn.client.abandoned()
                && (conn.client.is_closed()
                    || conn.client.is_valid(Duration::from_secs(5)).is_err());
            if retry {
                attempt += 1;
                log::debug!("postgres connection was closed; running the transaction on another");
                continue;
            }
            return result;
        }
    }

    fn manager(&self) -> CachingManager {
        CachingManager {
            config: self.config.clone(),
            bounds: self.bounds.clone(),
            masked: self.masked.clone(),
            endpoint: self.endpoint.clone(),
        }
    }
}

/// Runs `f` in one transaction on `conn`; also says whether COMMIT was sent
/// (its outcome is then unknown on failure).
fn run_tx(
    conn: &mut PgConn,
    begin: Begin,
    f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
) -> (Result<()>, bool) {
    let PgConn {
        client,
        statements,
        prepared,
    } = conn;
    let mut ptx = PgTx {
        client,
        statements,
        prepared,
        pending_begin: match begin {
            Begin::Write => Some("BEGIN".to_owned()),
            Begin::WriteLocked => Some(format!("BEGIN; {}", lock_log_sql())),
            Begin::Read => None,
        },
        open: begin != Begin::Read,
        locked: begin == Begin::WriteLocked,
        finished: false,
        committing: false,
        queued: Vec::new(),
        offline: false,
    };
    let mut result = f(&mut ptx).and_then(|()| ptx.finish());
    let committing = ptx.committing;
    if let (true, Err(Error::Database { message, .. })) = (committing, &mut result) {
        // COMMIT was sent and not answered (a stalled server or network):
        // the server may still have committed.
        message.push_str(
            "; COMMIT was sent but not confirmed, so the transaction may have been recorded",
        );
    }
    if result
        .as_ref()
        .is_err_and(|e| !matches!(e, Error::NotInOneTrip))
    {
        // A failed statement may come from a changed schema: prepare afresh.
        ptx.statements.clear();
        ptx.prepared.names.clear();
    }
    drop(ptx); // rolls back unless committed
    (result, committing)
}

/// The two keys of the rebuild's advisory lock (`pg_locks.classid`,
/// `objid`; `objsubid` is 2 for the two-key form): "biom", 1.
const REBUILD_LOCK: (u32, u32) = (0x6269_6f6d, 1);

/// The condition on `pg_locks` (alias `l`) of the rebuild lock, granted,
/// in this database.
fn rebuild_lock_held_sql() -> String {
    format!(
        "l.locktype = 'advisory' AND l.classid = {} AND l.objid = {} AND l.objsubid = 2 \
         AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        REBUILD_LOCK.0, REBUILD_LOCK.1
    )
}

/// Who holds this database's rebuild lock, if anyone: the holder's own
/// description (from its `application_name`) and its server pid.
pub fn rebuild_holder(tx: &mut dyn Tx) -> Result<Option<String>> {
    let sql = format!(
        "SELECT a.application_name, l.pid FROM pg_locks l \
         LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE {}",
        rebuild_lock_held_sql()
    );
    Ok(tx
        .query(&sql, &[], &[Kind::Text, Kind::Int])?
        .into_iter()
        .next()
        .map(|row| {
            let name = row[0].as_str().unwrap_or_default();
            let pid = row[1].as_i64().unwrap_or(0);
            match name.strip_prefix("biomero_rs rebuild: ") {
                Some(who) => format!("{who}; server backend pid {pid}"),
                None => format!("server backend pid {pid}, application {name:?}"),
            }
        }))
}

/// A [`Session`] on Postgres: a connection of its own, closed when the
/// session ends (the server then drops its temporary tables and releases
/// its advisory lock).
pub struct PgSession {
    conn: PgConn,
    masked: String,
    locked: bool,
}

impl Session for PgSession {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn quiet(&mut self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        run_tx(&mut self.conn, Begin::Write, f).0
    }

    fn locked(&mut self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        run_tx(&mut self.conn, Begin::WriteLocked, f).0
    }

    /// A session-level advisory lock; the holder is named by the
    /// `application_name` it then sets ([`holder_text`], as far as the
    /// server keeps of it: 63 bytes).
    fn lock_rebuild(&mut self, wait: bool) -> Result<()> {
        if self.locked {
            return Ok(());
        }
        let try_lock = format!(
            "SELECT CASE WHEN pg_try_advisory_lock({}, {}) THEN 1 ELSE 0 END",
            REBUILD_LOCK.0 as i32, REBUILD_LOCK.1 as i32
        );
        let mut waiting = false;
        loop {
            let mut got = false;
            run_tx(&mut self.conn, Begin::Read, &mut |tx| {
                got = tx.query(&try_lock, &[], &[Kind::Int])?[0][0].as_i64() == Some(1);
                if got {
                    let name = format!("biomero_rs rebuild: {}", holder_text());
                    tx.query(
                        "SELECT 1 FROM (SELECT set_config('application_name', $1, false)) AS s",
                        &[Sql::Text(name)],
                        &[Kind::Int],
                    )?;
                }
                Ok(())
            })
            .0?;
            if got {
                self.locked = true;
                return Ok(());
            }
            let mut holder = None;
            run_tx(&mut self.conn, Begin::Read, &mut |tx| {
                holder = rebuild_holder(tx)?;
                Ok(())
            })
            .0?;
            let holder = holder.unwrap_or_else(|| "another session".into());
            wait_for(
                &holder,
                &self.masked,
                wait,
                &mut waiting,
                Duration::from_millis(200),
            )?;
        }
    }
}

const POOL_SIZE: u32 = 16;

/// A value as an SQL literal of unknown type, which the server reads as the
/// type of the parameter it is given for (as it would a bound value).
fn literal(v: &Sql, out: &mut String) {
    use std::fmt::Write;
    match v {
        Sql::Null => out.push_str("NULL"),
        Sql::Int(i) => {
            let _ = write!(out, "'{i}'");
        }
        Sql::Real(f) if f.is_nan() => out.push_str("'NaN'"),
        Sql::Real(f) if f.is_infinite() => out.push_str(if *f > 0.0 {
            "'Infinity'"
        } else {
            "'-Infinity'"
        }),
        Sql::Real(f) => {
            let _ = write!(out, "'{f:?}'");
        }
        Sql::Text(s) if s.contains('\0') => {
            log::warn!("a NUL character in {s:?} is stored as U+FFFD in a Postgres text column");
            out.push_str(&postgres_protocol::escape::escape_literal(
                &s.replace('\0', "\u{FFFD}"),
            ))
        }
        Sql::Text(s) => out.push_str(&postgres_protocol::escape::escape_literal(s)),
        Sql::Uuid(u) | Sql::Originator(u) => {
            let _ = write!(out, "'{u}'");
        }
        // Naive UTC; the offset makes a timestamptz parameter read it as UTC
        // (a timestamp one ignores it).
        Sql::Time(t) => {
            let _ = write!(out, "'{}+00'", t.format("%Y-%m-%d %H:%M:%S%.f"));
        }
    }
}

/// Bytes as a bytea literal (hex format).
fn bytea_literal(b: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(6 + 2 * b.len());
    out.push_str("E'\\\\x");
    for x in b {
        out.push(HEX[(x >> 4) as usize] as char);
        out.push(HEX[(x & 15) as usize] as char);
    }
    out.push('\'');
}

/// A cell of a simple-query row as `kind`.
fn text_cell(text: Option<&str>, kind: Kind) -> Result<Sql> {
    let Some(t) = text else { return Ok(Sql::Null) };
    let bad = || Error::Database {
        backend: "postgres",
        message: format!("{t:?} is not a {kind:?}"),
    };
    Ok(match kind {
        Kind::Int => Sql::Int(t.trim().parse().map_err(|_| bad())?),
        Kind::Real => Sql::Real(t.trim().parse().map_err(|_| bad())?),
        Kind::Uuid => Sql::Uuid(t.parse().map_err(|_| bad())?),
        Kind::Text | Kind::Time => Sql::Text(t.to_owned()),
    })
}

/// Logs the `no_row` notes of the queued statements of `groups` whose
/// count in the group's answer `rows` (one row per group) is 0.
fn log_no_rows<'a>(
    groups: &[Vec<Queued>],
    rows: impl IntoIterator<Item = &'a postgres::SimpleQueryRow>,
) {
    for (group, row) in groups.iter().zip(rows) {
        for (i, q) in group.iter().enumerate() {
            let n: u64 = row.get(i).and_then(|t| t.parse().ok()).unwrap_or(0);
            if n == 0 {
                if let Some(note) = &q.no_row {
                    note.log();
                }
            }
        }
    }
}

/// The number of a prepared statement's name (`biomero_rs_<n>`).
fn name_number(name: &str) -> u64 {
    name.rsplit('_')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The data rows of a simple query's answer.
fn rows_of(messages: Vec<postgres::SimpleQueryMessage>) -> Vec<postgres::SimpleQueryRow> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The VALUES rows of `n` events: originator, version, topic, state (`$1`,
/// `$2`, ...) and their order.
fn event_rows(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let p = 4 * i;
            format!(
                "(${}::uuid, ${}::bigint, ${}::text, ${}::bytea, {i})",
                p + 1,
                p + 2,
                p + 3,
                p + 4
            )
        })
        .collect()
}

/// Inserts `n` events unless one of them has a taken version (or a later
/// one): then it inserts none and returns no row, so that a writer that
/// decided on an outdated aggregate draws no notification id (the log keeps
/// no gap for it). Parameters: originator, version, topic, state of each.
fn guarded_insert_sql(n: usize) -> String {
    let rows = event_rows(n);
    format!(
        "WITH v (o, n, t, s, k) AS (VALUES {}) \
         INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) \
         SELECT o, n, t, s FROM v WHERE NOT EXISTS (SELECT 1 FROM {EVENTS_TABLE} e JOIN v w \
         ON e.originator_id = w.o AND e.originator_version >= w.n) ORDER BY k RETURNING id",
        rows.join(", ")
    )
}

/// The transaction-local setting in which [`one_trip_insert_sql`] leaves
/// the last notification id it drew (read by
/// [`APPENDED_LAST_ID`](crate::store::APPENDED_LAST_ID)).
const APPENDED_SETTING: &str = "biomero_rs.appended";

/// [`guarded_insert_sql`] for [`Tx::commit_in_one`], with its check: one
/// statement. The check (a one-row SELECT whose parameters come first) and
/// the guard, when a version is taken, divide by zero (an error, so that
/// nothing after it in the round trip runs) before any id is drawn; both
/// see the log as it was before the insert (the statement's snapshot). It
/// answers each id drawn with the check's columns after it (from the
/// third on), and leaves the last id in [`APPENDED_SETTING`] for the rest
/// of the transaction, so that the statements after it read that one value
/// instead of each looking up the log's end.
fn one_trip_insert_sql(check: &str, check_params: usize, n: usize) -> String {
    let rows = shift_placeholders(&event_rows(n).join(", "), check_params);
    format!(
        "WITH c AS ({check}), v (o, n, t, s, k) AS (VALUES {rows}), \
         g AS (SELECT 1 / (NOT EXISTS (SELECT 1 FROM {EVENTS_TABLE} e \
         JOIN v w ON e.originator_id = w.o AND e.originator_version >= w.n))::int AS ok), \
         i AS (INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) \
         SELECT v.o, v.n, v.t, v.s FROM v CROSS JOIN g CROSS JOIN c WHERE g.ok = 1 \
         ORDER BY v.k RETURNING id) \
         SELECT i.id, set_config('{APPENDED_SETTING}', (SELECT max(id) FROM i)::text, true), c.* \
         FROM i CROSS JOIN c ORDER BY i.id"
    )
}

/// The conflict of a refused append (reported on the first event; the
/// writer reloads every aggregate of the command).
fn conflict(events: &[StoredEvent]) -> Error {
    let e = &events[0];
    Error::Conflict {
        id: e.originator_id,
        version: e.originator_version,
    }
}

fn lock_log_sql() -> String {
    format!("LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE")
}

/// One transaction on a pooled connection. Dropped without
/// [`finish`](PgTx::finish) (an error, a panic) it rolls back, so the
/// connection goes back to the pool idle.
pub struct PgTx<'a> {
    client: &'a mut PgClient,
    /// The connection's prepared statements, by SQL text.
    statements: &'a mut HashMap<String, Statement>,
    prepared: &'a mut Prepared,
    /// BEGIN (and the log's lock) not sent yet: it goes with the first
    /// statement.
    pending_begin: Option<String>,
    /// Whether this is (or will be, with `pending_begin`) a transaction block.
    open: bool,
    /// Whether this transaction holds (or will hold) the log's lock.
    locked: bool,
    finished: bool,
    /// Whether COMMIT was sent (its outcome is then unknown on failure).
    committing: bool,
    /// Statements [`Tx::queue`]d and not sent yet.
    queued: Vec<Queued>,
    /// See [`Tx::set_offline`].
    offline: bool,
}

struct Queued {
    table: &'static str,
    sql: String,
    params: Vec<Sql>,
    no_row: Option<NoRow>,
}

/// At most this many queued statements go into one.
const QUEUED_PER_STATEMENT: usize = 16;

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        let begun = self.open && self.pending_begin.is_none();
        if begun && !self.finished && !self.client.is_closed() {
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

impl PgTx<'_> {
    /// Fails while offline (see [`Tx::set_offline`]).
    fn online(&self) -> Result<()> {
        if self.offline {
            return Err(Error::NotInOneTrip);
        }
        Ok(())
    }

    /// Sends BEGIN if it is still pending.
    fn start(&mut self) -> Result<()> {
        self.online()?;
        if let Some(sql) = self.pending_begin.take() {
            self.client.batch_execute(&sql).map_err(pg_err)?;
        }
        Ok(())
    }

    /// What has to go before the next statement: the queued statements and
    /// a pending BEGIN.
    fn ready(&mut self) -> Result<()> {
        self.online()?;
        self.send_queued("")?;
        self.start()
    }

    /// `PREPARE` (the first time) and `EXECUTE` of `sql` with `params`, as
    /// text for a simple query.
    fn execute_text(&mut self, sql: &str, params: &[Sql], out: &mut String) -> usize {
        let (name, new) = self.prepared.name(sql);
        if new {
            out.push_str(&format!("PREPARE {name} AS {sql}; "));
        }
        out.push_str("EXECUTE ");
        out.push_str(&name);
        out.push('(');
        let mut first = true;
        for p in params {
            if !first {
                out.push_str(", ");
            }
            first = false;
            literal(p, out);
        }
        out.push_str("); ");
        1 + usize::from(new)
    }

    /// Sends the queued statements (see [`Tx::queue`]) in one simple query,
    /// after a pending BEGIN and before `then` (COMMIT, or nothing).
    /// Consecutive ones on different tables are one statement, each a
    /// data-modifying CTE that returns its rows, counted by the outer
    /// SELECT. (The parts of one statement share a snapshot, so two that
    /// could touch the same row are never merged.)
    fn send_queued(&mut self, then: &str) -> Result<()> {
        if self.queued.is_empty() && then.is_empty() {
            return Ok(());
        }
        self.online()?;
        let groups = self.take_groups();
        let mut text = match self.pending_begin.take() {
            Some(b) => format!("{b}; "),
            None => String::new(),
        };
        self.push_groups(&groups, &mut text);
        text.push_str(then);
        let rows = rows_of(self.client.simple_query(&text).map_err(pg_err)?);
        log_no_rows(&groups, &rows);
        Ok(())
    }

    /// The queued statements, taken, in groups of one statement each.
    fn take_groups(&mut self) -> Vec<Vec<Queued>> {
        let queued = std::mem::take(&mut self.queued);
        let mut groups: Vec<Vec<Queued>> = Vec::new();
        for q in queued {
            match groups.last_mut() {
                Some(g)
                    if g.len() < QUEUED_PER_STATEMENT && g.iter().all(|x| x.table != q.table) =>
                {
                    g.push(q)
                }
                _ => groups.push(vec![q]),
            }
        }
        groups
    }

    /// Appends the statements of `groups` to `text`, each one row of counts;
    /// returns how many statements it added.
    fn push_groups(&mut self, groups: &[Vec<Queued>], text: &mut String) -> usize {
        let mut added = 0;
        for group in groups {
            let mut sql = String::from("WITH ");
            let mut params: Vec<Sql> = Vec::new();
            for (i, q) in group.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "s{i} AS ({} RETURNING 1)",
                    shift_placeholders(&q.sql, params.len())
                ));
                params.extend(q.params.iter().cloned());
            }
            let counts: Vec<String> = (0..group.len())
                .map(|i| format!("(SELECT count(*) FROM s{i})"))
                .collect();
            sql.push_str(" SELECT ");
            sql.push_str(&counts.join(", "));
            added += self.execute_text(&sql, &params, text);
        }
        added
    }

    /// [`Tx::commit_in_one`]: one simple query of BEGIN and the lock, the
    /// check, the guarded insert, the queued statements and COMMIT. A
    /// refusal (division by zero) stops the statements after it, and the
    /// transaction is rolled back (by the drop).
    fn one_trip(
        &mut self,
        (check, check_params, check_kinds): (&str, &[Sql], &[Kind]),
        events: &[StoredEvent],
    ) -> Result<(Vec<i64>, Vec<Vec<Sql>>)> {
        self.offline = false;
        let Some(begin) = self.pending_begin.take().filter(|_| self.locked) else {
            return Err(Error::NotInOneTrip); // not a fresh locked transaction
        };
        if events.is_empty() {
            return Err(Error::NotInOneTrip);
        }
        // Each statement answers with one CommandComplete; these say which
        // answer is the insert's.
        let mut text = format!("{begin}; ");
        let mut at = begin.split(';').count(); // statements so far
        let before = self.prepared.next;
        let sql = one_trip_insert_sql(check, check_params.len(), events.len());
        let (name, new) = self.prepared.name(&sql);
        if new {
            text.push_str(&format!("PREPARE {name} AS {sql}; "));
            at += 1;
        }
        text.push_str("EXECUTE ");
        text.push_str(&name);
        text.push('(');
        for p in check_params {
            literal(p, &mut text);
            text.push_str(", ");
        }
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            literal(&Sql::Uuid(e.originator_id), &mut text);
            text.push_str(", ");
            literal(&Sql::Int(e.originator_version), &mut text);
            text.push_str(", ");
            literal(&Sql::Text(e.topic.clone()), &mut text);
            text.push_str(", ");
            bytea_literal(&e.state, &mut text);
        }
        text.push_str("); ");
        let insert_at = at;
        let groups = self.take_groups();
        at += 1 + self.push_groups(&groups, &mut text);
        text.push_str("COMMIT");
        // A connection the server closed while it sat in the pool (a
        // restart) fails here, before anything is sent: the command then
        // runs the usual way, on another connection.
        self.client.settle();
        if self.client.is_closed() {
            self.prepared.names.retain(|_, n| name_number(n) <= before);
            return Err(Error::NotInOneTrip);
        }
        self.committing = true;
        let answer = match self.client.simple_query(&text) {
            Ok(m) => m,
            Err(err) => {
                // PREPAREs after the failed statement did not run.
                self.prepared.names.retain(|_, n| name_number(n) <= before);
                // A server error means the statements after it (COMMIT
                // included) did not run; without one the outcome is unknown.
                self.committing = err.code().is_none();
                return match err.code() {
                    Some(c) if *c == SqlState::DIVISION_BY_ZERO => Err(Error::NotInOneTrip),
                    _ => Err(pg_err(err)),
                };
            }
        };
        self.finished = true;
        let mut statements: Vec<Vec<postgres::SimpleQueryRow>> = vec![Vec::new()];
        for m in answer {
            match m {
                postgres::SimpleQueryMessage::Row(r) => {
                    statements.last_mut().expect("one open").push(r)
                }
                postgres::SimpleQueryMessage::CommandComplete(_) => statements.push(Vec::new()),
                _ => {}
            }
        }
        let missing = || Error::Database {
            backend: "postgres",
            message: "the server answered fewer statements than were sent".into(),
        };
        let inserted = statements.get(insert_at).ok_or_else(missing)?;
        let ids = inserted
            .iter()
            .map(|r| match text_cell(r.get(0), Kind::Int)? {
                Sql::Int(i) => Ok(i),
                _ => Err(missing()),
            })
            .collect::<Result<Vec<i64>>>()?;
        // Each group's statement answers one row (a PREPARE none).
        let counts = statements.get(insert_at + 1..at).unwrap_or(&[]);
        log_no_rows(&groups, counts.iter().filter_map(|rows| rows.first()));
        // The check's one row, after the id and the setting.
        let check_rows = inserted
            .first()
            .map(|r| {
                check_kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| text_cell(r.get(i + 2), *k))
                    .collect::<Result<Vec<Sql>>>()
            })
            .transpose()?
            .into_iter()
            .collect();
        Ok((ids, check_rows))
    }

    fn execute_now(&mut self, sql: &str, params: &[Sql]) -> Result<u64> {
        self.before_write()?;
        let stmt = self.statement(sql)?;
        let bound = bind_all(&stmt, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref()).collect();
        self.client.execute(&stmt, &refs).map_err(pg_err)
    }

    fn query_now(&mut self, sql: &str, params: &[Sql], kinds: &[Kind]) -> Result<Vec<Vec<Sql>>> {
        let stmt = self.statement(sql)?;
        let bound = bind_all(&stmt, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref()).collect();
        let rows = self.client.query(&stmt, &refs).map_err(pg_err)?;
        rows.iter()
            .map(|row| {
                kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| read_cell(row, i, *k))
                    .collect()
            })
            .collect()
    }

    /// Commits (when a block is open), after the queued statements, in one
    /// round trip.
    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(()); // committed by `commit_in_one`
        }
        if !self.open || (self.pending_begin.is_some() && self.queued.is_empty()) {
            self.finished = true;
            return Ok(()); // nothing was sent: nothing to commit
        }
        self.committing = true;
        // On failure (a queued write refused, so COMMIT did not run) the
        // drop rolls back, and the connection goes back to the pool idle.
        self.send_queued("COMMIT")?;
        self.finished = true;
        Ok(())
    }

    /// Before anything that could write: a pending BEGIN; a read opens its
    /// (read-only) block.
    fn before_write(&mut self) -> Result<()> {
        self.start()?;
        if !self.open {
            self.client
                .batch_execute("BEGIN READ ONLY")
                .map_err(pg_err)?;
            self.open = true;
        }
        Ok(())
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        self.online()?;
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(pg_err)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// Binds a value as the type the server inferred for its placeholder.
fn bind(value: &Sql, ty: &Type) -> Result<Box<dyn ToSql + Sync>> {
    let overflow = |i: i64| Error::value(format!("{i} does not fit the {ty} column"));
    Ok(match value {
        Sql::Int(i) if *ty == Type::INT4 => Box::new(i32::try_from(*i).map_err(|_| overflow(*i))?),
        Sql::Int(i) if *ty == Type::INT2 => Box::new(i16::try_from(*i).map_err(|_| overflow(*i))?),
        Sql::Int(i) if *ty == Type::FLOAT8 => Box::new(*i as f64),
        Sql::Int(i) if *ty == Type::TEXT || *ty == Type::VARCHAR => Box::new(i.to_string()),
        Sql::Int(i) => Box::new(*i),
        Sql::Real(f) => Box::new(*f),
        // Postgres text cannot hold NUL. Commands refuse it up front; a stored
        // event that has one (written elsewhere) still gets its view row.
        Sql::Text(s) if s.contains('\0') => {
            log::warn!("a NUL character in {s:?} is stored as U+FFFD in a Postgres text column");
            Box::new(s.replace('\0', "\u{FFFD}"))
        }
        Sql::Text(s) => Box::new(s.clone()),
        Sql::Uuid(u) | Sql::Originator(u) => Box::new(*u),
        Sql::Time(t) if *ty == Type::TIMESTAMPTZ => {
            Box::new(DateTime::<Utc>::from_naive_utc_and_offset(*t, Utc))
        }
        Sql::Time(t) => Box::new(*t),
        Sql::Null => match *ty {
            Type::INT2 => Box::new(None::<i16>),
            Type::INT4 => Box::new(None::<i32>),
            Type::INT8 => Box::new(None::<i64>),
            Type::FLOAT8 => Box::new(None::<f64>),
            Type::UUID => Box::new(None::<Uuid>),
            Type::TIMESTAMP => Box::new(None::<NaiveDateTime>),
            Type::TIMESTAMPTZ => Box::new(None::<DateTime<Utc>>),
            _ => Box::new(None::<String>),
        },
    })
}

fn bind_all(stmt: &Statement, params: &[Sql]) -> Result<Vec<Box<dyn ToSql + Sync>>> {
    params
        .iter()
        .zip(stmt.params())
        .map(|(v, ty)| bind(v, ty))
        .collect()
}

fn read_cell(row: &postgres::Row, i: usize, kind: Kind) -> Result<Sql> {
    let ty = row.columns()[i].type_().clone();
    let get = |r: std::result::Result<Option<Sql>, postgres::Error>| -> Result<Sql> {
        Ok(r.map_err(pg_err)?.unwrap_or(Sql::Null))
    };
    match ty {
        Type::INT2 => get(row
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|x| Sql::Int(x.into())))),
        Type::INT4 => get(row
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|x| Sql::Int(x.into())))),
        Type::INT8 => get(row.try_get::<_, Option<i64>>(i).map(|v| v.map(Sql::Int))),
        Type::FLOAT8 => get(row.try_get::<_, Option<f64>>(i).map(|v| v.map(Sql::Real))),
        Type::FLOAT4 => get(row
            .try_get::<_, Option<f32>>(i)
            .map(|v| v.map(|x| Sql::Real(x.into())))),
        Type::UUID => get(row.try_get::<_, Option<Uuid>>(i).map(|v| v.map(Sql::Uuid))),
        Type::TIMESTAMP => get(row
            .try_get::<_, Option<NaiveDateTime>>(i)
            .map(|v| v.map(Sql::Time))),
        Type::TIMESTAMPTZ => get(row
            .try_get::<_, Option<DateTime<Utc>>>(i)
            .map(|v| v.map(|t| Sql::Time(t.naive_utc())))),
        Type::DATE => get(row
            .try_get::<_, Option<NaiveDate>>(i)
            .map(|v| v.map(|d| Sql::Text(d.format("%Y-%m-%d").to_string())))),
        _ => {
            let text = get(row
                .try_get::<_, Option<String>>(i)
                .map(|v| v.map(Sql::Text)))?;
            match (text, kind) {
                (Sql::Text(s), Kind::Int) => {
                    s.trim().parse().map(Sql::Int).map_err(|_| Error::Database {
                        backend: "postgres",
                        message: format!("{s:?} is not an integer"),
                    })
                }
                (other, _) => Ok(other),
            }
        }
    }
}

/// A cell of an ad-hoc query, by its column's type; other types are
/// refused with a hint to cast them.
fn any_cell(row: &postgres::Row, i: usize) -> Result<AnyCell> {
    fn get<'a, T: postgres::types::FromSql<'a>>(
        row: &'a postgres::Row,
        i: usize,
        f: impl FnOnce(T) -> AnyCell,
    ) -> Result<AnyCell> {
        Ok(row
            .try_get::<_, Option<T>>(i)
            .map_err(pg_err)?
            .map_or(AnyCell::Null, f))
    }
    let column = &row.columns()[i];
    let ty = column.type_();
    match *ty {
        Type::BOOL => get(row, i, AnyCell::Bool),
        Type::INT2 => get(row, i, |v: i16| AnyCell::Int(v.into())),
        Type::INT4 => get(row, i, |v: i32| AnyCell::Int(v.into())),
        Type::INT8 => get(row, i, AnyCell::Int),
        Type::OID => get(row, i, |v: u32| AnyCell::Int(v.into())),
        Type::FLOAT4 => get(row, i, |v: f32| AnyCell::Real(v.into())),
        Type::FLOAT8 => get(row, i, AnyCell::Real),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get(row, i, AnyCell::Text)
        }
        Type::BYTEA => get(row, i, AnyCell::Bytes),
        Type::UUID => get(row, i, AnyCell::Uuid),
        Type::TIMESTAMP => get(row, i, AnyCell::Time),
        Type::TIMESTAMPTZ => get(row, i, |t: DateTime<Utc>| AnyCell::TimeTz(t.naive_utc())),
        Type::DATE => get(row, i, AnyCell::Date),
        _ => Err(Error::value(format!(
            "column {:?} has the type {ty}, which this session cannot read: cast it (e.g. ::text)",
            column.name()
        ))),
    }
}

fn stored_event(row: &postgres::Row, offset: usize) -> Result<StoredEvent> {
    Ok(StoredEvent {
        originator_id: row.try_get(offset).map_err(pg_err)?,
        originator_version: row.try_get(offset + 1).map_err(pg_err)?,
        topic: row.try_get(offset + 2).map_err(pg_err)?,
        state: row.try_get(offset + 3).map_err(pg_err)?,
    })
}

impl Tx for PgTx<'_> {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn scan_aggregate(
        &mut self,
        originator_id: Uuid,
        from: i64,
        with_ids: bool,
        f: &mut AggregateRowFn<'_>,
    ) -> Result<()> {
        self.ready()?;
        let first = if with_ids { "id, " } else { "" };
        // Put in version order here, not by the server: unless it reads the
        // aggregate index (a long history in a log of few aggregates), the
        // server sorts the whole rows (a third of a 1,000-event read),
        // where this sorts a version and an index per row.
        let stmt = self.statement(&format!(
            "SELECT {first}originator_version, topic, state FROM {EVENTS_TABLE} \
             WHERE originator_id = $1 AND originator_version >= $2"
        ))?;
        let at = usize::from(with_ids);
        let rows = self
            .client
            .query(&stmt, &[&originator_id, &from])
            .map_err(pg_err)?;
        let mut order = rows
            .iter()
            .enumerate()
            .map(|(i, r)| Ok((r.try_get::<_, i64>(at).map_err(pg_err)?, i)))
            .collect::<Result<Vec<(i64, usize)>>>()?;
        order.sort_unstable();
        for r in order.into_iter().map(|(_, i)| &rows[i]) {
            let id = if with_ids {
                r.try_get(0).map_err(pg_err)?
            } else {
                0
            };
            f(
                id,
                r.try_get(at).map_err(pg_err)?,
                r.try_get::<_, &str>(at + 1).map_err(pg_err)?,
                r.try_get::<_, &[u8]>(at + 2).map_err(pg_err)?,
            )?;
        }
        Ok(())
    }

    fn load_events(&mut self, originator_id: Uuid) -> Result<Vec<Notification>> {
        self.ready()?;
        let stmt = self.statement(&format!(
            "SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} \
             WHERE originator_id = $1 ORDER BY originator_version"
        ))?;
        let rows = self
            .client
            .query(&stmt, &[&originator_id])
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(Notification {
                    id: r.try_get(0).map_err(pg_err)?,
                    event: stored_event(r, 1)?,
                })
            })
            .collect()
    }

    fn query_notifications(&mut self, sql: &str, params: &[Sql]) -> Result<Vec<Notification>> {
        self.ready()?;
        let stmt = self.statement(sql)?;
        let bound = bind_all(&stmt, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref()).collect();
        let rows = self.client.query(&stmt, &refs).map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(Notification {
                    id: r.try_get(0).map_err(pg_err)?,
                    event: stored_event(r, 1)?,
                })
            })
            .collect()
    }

    fn append(&mut self, events: &[StoredEvent]) -> Result<Vec<i64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.ready()?;
        self.lock_log()?;
        let stmt = self.statement(&guarded_insert_sql(events.len()))?;
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(4 * events.len());
        for e in events {
            params.push(&e.originator_id);
            params.push(&e.originator_version);
            params.push(&e.topic);
            params.push(&e.state);
        }
        let rows = match self.client.query(&stmt, &params) {
            Ok(rows) => rows,
            Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(conflict(events))
            }
            Err(err) => return Err(pg_err(err)),
        };
        if rows.len() != events.len() {
            return Err(conflict(events));
        }
        let mut ids = rows
            .iter()
            .map(|r| r.try_get::<_, i64>(0).map_err(pg_err))
            .collect::<Result<Vec<i64>>>()?;
        // Ids are drawn in the order of the rows (ORDER BY k).
        ids.sort_unstable();
        Ok(ids)
    }

    fn lock_log(&mut self) -> Result<()> {
        self.ready()?;
        if self.locked {
            return Ok(());
        }
        self.before_write()?;
        self.client.batch_execute(&lock_log_sql()).map_err(pg_err)?;
        self.locked = true;
        Ok(())
    }

    fn notifications(
        &mut self,
        after: i64,
        upto: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        self.ready()?;
        let stmt = self.statement(&format!(
            "SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} \
             WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3"
        ))?;
        let rows = self
            .client
            .query(
                &stmt,
                &[
                    &after,
                    &upto.unwrap_or(i64::MAX),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(Notification {
                    id: r.try_get(0).map_err(pg_err)?,
                    event: stored_event(r, 1)?,
                })
            })
            .collect()
    }

    fn max_notification_id(&mut self) -> Result<i64> {
        self.ready()?;
        let stmt = self.statement(&format!(
            "SELECT COALESCE(MAX(id), 0)::bigint FROM {EVENTS_TABLE}"
        ))?;
        let row = self.client.query_one(&stmt, &[]).map_err(pg_err)?;
        row.try_get(0).map_err(pg_err)
    }

    fn execute(&mut self, sql: &str, params: &[Sql]) -> Result<u64> {
        self.ready()?;
        self.execute_now(sql, params)
    }

    fn queue(
        &mut self,
        table: &'static str,
        sql: &str,
        params: Vec<Sql>,
        no_row: Option<NoRow>,
    ) -> Result<()> {
        self.queued.push(Queued {
            table,
            sql: sql.to_owned(),
            params,
            no_row,
        });
        Ok(())
    }

    fn append_and_select(
        &mut self,
        events: &[StoredEvent],
        exprs: &str,
        params: &[Sql],
        kinds: &[Kind],
    ) -> Result<(Vec<i64>, Vec<Sql>)> {
        let [e] = events else {
            let ids = self.append(events)?;
            return Ok((ids, select_row(self, exprs, params, kinds)?));
        };
        // One round trip: the pending BEGIN and lock, and the insert with
        // the select, as EXECUTE of a prepared statement.
        self.send_queued("")?;
        if !self.locked {
            self.lock_log()?;
        }
        let sql = format!(
            "WITH e AS ({}) SELECT (SELECT id FROM e), {}",
            guarded_insert_sql(1),
            shift_placeholders(exprs, 4)
        );
        let mut text = match self.pending_begin.take() {
            Some(b) => format!("{b}; "),
            None => String::new(),
        };
        let mut all: Vec<Sql> = Vec::with_capacity(3 + params.len());
        all.push(Sql::Uuid(e.originator_id));
        all.push(Sql::Int(e.originator_version));
        all.push(Sql::Text(e.topic.clone()));
        // The state goes fourth: bound after the three, before the rest.
        let (name, new) = self.prepared.name(&sql);
        if new {
            text.push_str(&format!("PREPARE {name} AS {sql}; "));
        }
        text.push_str("EXECUTE ");
        text.push_str(&name);
        text.push('(');
        for p in &all {
            literal(p, &mut text);
            text.push_str(", ");
        }
        bytea_literal(&e.state, &mut text);
        for p in params {
            text.push_str(", ");
            literal(p, &mut text);
        }
        text.push(')');
        let rows = match self.client.simple_query(&text) {
            Ok(m) => rows_of(m),
            Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(Error::Conflict {
                    id: e.originator_id,
                    version: e.originator_version,
                })
            }
            Err(err) => return Err(pg_err(err)),
        };
        let row = rows.first().ok_or_else(|| Error::Database {
            backend: "postgres",
            message: "the insert returned no row".into(),
        })?;
        let Sql::Int(id) = text_cell(row.get(0), Kind::Int)? else {
            return Err(conflict(events)); // the guard refused it
        };
        let cells = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| text_cell(row.get(i + 1), *k))
            .collect::<Result<Vec<Sql>>>()?;
        Ok((vec![id], cells))
    }

    fn one_round_trip(&self) -> bool {
        self.locked && self.pending_begin.is_some()
    }

    fn set_offline(&mut self, on: bool) {
        self.offline = on;
    }

    fn commit_in_one(
        &mut self,
        check: (&str, &[Sql], &[Kind]),
        events: &[StoredEvent],
    ) -> Result<(Vec<i64>, Vec<Vec<Sql>>)> {
        self.one_trip(check, events)
    }

    fn query(&mut self, sql: &str, params: &[Sql], kinds: &[Kind]) -> Result<Vec<Vec<Sql>>> {
        self.ready()?;
        self.query_now(sql, params, kinds)
    }

    fn execute_batch(&mut self, sql: &str) -> Result<()> {
        self.ready()?;
        self.before_write()?;
        self.client.batch_execute(sql).map_err(pg_err)
    }

    fn table_exists(&mut self, table: &str) -> Result<bool> {
        self.ready()?;
        // pg_tables, not to_regclass: it sees tables another transaction
        // committed after this one started (concurrent starters).
        let row = self
            .client
            .query_one_sql(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1",
                &[&table],
            )
            .map_err(pg_err)?;
        Ok(row.try_get::<_, i64>(0).map_err(pg_err)? > 0)
    }

    fn query_any(&mut self, sql: &str, params: &[Sql]) -> Result<AnyRows> {
        self.ready()?;
        self.before_write()?;
        // Not kept in the statement cache: ad-hoc SQL.
        let stmt = self.client.prepare(sql).map_err(pg_err)?;
        let bound = bind_all(&stmt, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref()).collect();
        if stmt.columns().is_empty() {
            let affected = self.client.execute(&stmt, &refs).map_err(pg_err)?;
            return Ok(AnyRows {
                affected,
                ..AnyRows::default()
            });
        }
        let columns = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
        let rows = self.client.query(&stmt, &refs).map_err(pg_err)?;
        let rows = rows
            .iter()
            .map(|row| (0..row.len()).map(|i| any_cell(row, i)).collect())
            .collect::<Result<Vec<Vec<AnyCell>>>>()?;
        Ok(AnyRows {
            columns,
            rows,
            affected: 0,
        })
    }
}
