//! The SQLite event store (rusqlite, pooled by `store::pool`).
//!
//! WAL journal, `synchronous=FULL` unless the URL asks for `normal`, a busy
//! timeout instead of "database is locked", and `BEGIN IMMEDIATE` for every
//! write so that writers queue instead of failing.
//!
//! Writers of this module queue on a blocking flock(2) of `<file>-writer`
//! before `BEGIN IMMEDIATE` ([`WriterTurn`]): SQLite itself has no way to
//! wait for a lock other than polling (its busy handler sleeps and tries
//! again), so a waiting writer would start up to a poll interval after the
//! lock is free; the kernel wakes a flock waiter the moment it is released.
//! Writers that do not take it (the Python reference, the sqlite3 shell)
//! are still waited for by the busy handler.

use crate::error::{Error, Result};
use crate::store::pool::{Manager, Pool, Pooled};
use crate::store::schema::EVENTS_TABLE;
use crate::store::session::{holder_text, wait_for, Session};
use crate::store::url::{SqliteLocation, Synchronous};
use crate::store::{
    AggregateRowFn, AnyCell, AnyRows, Backend, EventStore, Kind, Notification, NotificationRef,
    Sql, StoredEvent, Tx,
};
use crate::sys::process::ProcessLocal;
use chrono::NaiveDateTime;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, ErrorCode, OpenFlags, ToSql, TransactionBehavior};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use uuid::Uuid;

/// How long a writer waits for another writer's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// SQLAlchemy's SQLite DATETIME text.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// A check run before a SQLite file is opened. The Python module installs
/// one that refuses when Python's `sqlite3` module uses another SQLite
/// library in the same process (`src/python/sqlite_guard.rs`).
pub type OpenGuard = fn(&std::path::Path) -> Result<()>;

static OPEN_GUARD: std::sync::OnceLock<OpenGuard> = std::sync::OnceLock::new();

/// Installs the check run before every SQLite file store opens (first wins).
pub fn set_open_guard(guard: OpenGuard) {
    let _ = OPEN_GUARD.set(guard);
}

pub struct SqliteStore {
    location: SqliteLocation,
    synchronous: Synchronous,
    /// Opened read-only (`?mode=ro`, or a file or folder this process
    /// cannot write): reads work, writes fail with a clear error.
    read_only: Option<String>,
    /// This process's pool (a forked child makes its own); `None` after
    /// [`EventStore::close`] until the next use.
    pool: Arc<PoolSlot>,
    masked: String,
}

type PoolSlot = ProcessLocal<Mutex<Option<Pool<SqliteManager>>>>;

/// The pools of every SQLite file store of this process, for [`before_fork`].
fn live_pools() -> &'static Mutex<Vec<Weak<PoolSlot>>> {
    static LIVE: ProcessLocal<Mutex<Vec<Weak<PoolSlot>>>> = ProcessLocal::new();
    LIVE.get_or_init(Default::default)
}

/// Runs in the parent just before any `fork()` (pthread_atfork): closes the
/// idle connections of every SQLite file pool. SQLite keeps the locks of a
/// file's connections in process-wide tables; a child that inherited them
/// would take the parent's locks for its own and wait for them forever.
/// (The parent reconnects on its next call.)
extern "C" fn before_fork() {
    let pools: Vec<Arc<PoolSlot>> = {
        let live = live_pools().lock().unwrap_or_else(|e| e.into_inner());
        live.iter().filter_map(Weak::upgrade).collect()
    };
    for slot in pools {
        if let Some(m) = slot.get() {
            let pool = m.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(pool);
        }
    }
    // The idle writer lock files too: the child would only leak them.
    idle_lock_files(|idle| idle.clear());
}

fn register_pool(slot: &Arc<PoolSlot>) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // SAFETY: a plain function without arguments, registered once.
        unsafe { libc::pthread_atfork(Some(before_fork), None, None) };
    });
    let mut live = live_pools().lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(slot));
}

/// Opens SQLite connections for the pool.
pub struct SqliteManager {
    path: Option<PathBuf>,
    read_only: bool,
    /// Read-only in a folder this process cannot write, without a `-wal`
    /// file: SQLite could not make the WAL index, so the file is read as
    /// immutable (a snapshot; nothing else may be writing it).
    immutable: bool,
    sync: &'static str,
}

impl SqliteManager {
    fn open(&self) -> rusqlite::Result<Connection> {
        let mut c = match &self.path {
            None => Connection::open_in_memory()?,
            Some(p) if self.immutable => open_immutable(p)?,
            Some(p) if self.read_only => Connection::open_with_flags(
                p,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
            Some(p) => Connection::open(p)?,
        };
        init_connection(&mut c, self.path.is_some() && !self.read_only, self.sync)?;
        Ok(c)
    }
}

impl Manager for SqliteManager {
    type Conn = Connection;

    fn connect(&self) -> Result<Connection> {
        self.open().map_err(sql_err)
    }

    fn has_broken(&self, _: &mut Connection) -> bool {
        false
    }
}

/// A read-only connection that reads the file as immutable (see
/// [`SqliteManager::immutable`]).
fn open_immutable(p: &std::path::Path) -> rusqlite::Result<Connection> {
    let mut uri = String::from("file:");
    for c in p.to_string_lossy().chars() {
        match c {
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            '%' => uri.push_str("%25"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// Whether a read-only connection to `p` must read it as immutable: a
/// folder this process cannot write, and no `-wal` file.
fn needs_immutable(p: &std::path::Path) -> bool {
    let mut wal = p.as_os_str().to_owned();
    wal.push("-wal");
    !std::path::Path::new(&wal).exists() && !dir_writable(p)
}

/// Busy handling, statement cache, WAL and synchronous for a new connection.
fn init_connection(c: &mut Connection, wal: bool, sync: &str) -> rusqlite::Result<()> {
    c.busy_handler(Some(busy))?;
    // The projectors use a few dozen distinct statements; rusqlite's
    // default cache of 16 would re-prepare them all the time.
    c.set_prepared_statement_cache_capacity(128);
    if wal {
        // Switching a new file to WAL takes its exclusive lock, and
        // SQLite answers "database is locked" at once (no busy wait)
        // while other processes open it at the same moment: retry.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
                Ok(_) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
    c.execute_batch(&format!("PRAGMA synchronous={sync};"))
}

/// flock(2) of `file` with `op`; true when taken.
fn flock(file: &std::fs::File, op: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open file descriptor.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

/// Whether this process may write `p` (access(2), so as the kernel decides).
fn can_write(p: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn dir_writable(path: &std::path::Path) -> bool {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => can_write(d),
        None => can_write(std::path::Path::new(".")),
    }
}

thread_local! {
    /// Set when the busy handler gave up because of an interrupt.
    static BUSY_INTERRUPTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// SQLite's busy handler: waits for another connection's lock for up to
/// [`BUSY_TIMEOUT`], polling every millisecond for the first 100 ms (a
/// rebuild frees the lock between its batches only briefly), then every
/// 10 ms, and checks the interrupt hook every 10 calls (Ctrl-C stops it).
fn busy(attempt: i32) -> bool {
    let attempt = attempt.max(0) as u64;
    let waited_ms = if attempt < 100 {
        attempt
    } else {
        100 + (attempt - 100) * 10
    };
    if waited_ms >= BUSY_TIMEOUT.as_millis() as u64 {
        return false;
    }
    if attempt % 10 == 9 && crate::sys::interrupt::check().is_err() {
        BUSY_INTERRUPTED.with(|b| b.set(true));
        return false;
    }
    std::thread::sleep(Duration::from_millis(if attempt < 100 { 1 } else { 10 }));
    true
}

/// A writer's turn: the exclusive flock of `<file>-writer`, held for one
/// write transaction. Dropping it unlocks the file and keeps the open file
/// for this process's next turn (a process that dies releases the lock).
pub struct WriterTurn {
    file: Option<std::fs::File>,
    lock_path: PathBuf,
}

impl Drop for WriterTurn {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            if flock(&file, libc::LOCK_UN) {
                idle_lock_files(|idle| {
                    let files = idle.entry(std::mem::take(&mut self.lock_path)).or_default();
                    if files.len() < MAX_IDLE_LOCK_FILES {
                        files.push(file);
                    }
                });
            }
        }
    }
}

/// Open lock files kept per path and per process for the next turns, at
/// most this many per path (one per writer thread is what is ever needed).
const MAX_IDLE_LOCK_FILES: usize = 4;

type IdleLockFiles = std::collections::HashMap<PathBuf, Vec<std::fs::File>>;

/// Runs `f` on this process's idle writer lock files. Opening and closing
/// the file on every turn costs two system calls and a path lookup, about
/// a tenth of a command at `synchronous=normal`. Each kept file is its own
/// open file description, so two threads of a process taking turns still
/// exclude each other; a forked child starts without any (a description
/// shared with the parent would let both hold the lock at once).
fn idle_lock_files<R>(f: impl FnOnce(&mut IdleLockFiles) -> R) -> R {
    static IDLE: ProcessLocal<Mutex<IdleLockFiles>> = ProcessLocal::new();
    let mut idle = IDLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    f(&mut idle)
}

/// Closes the idle writer lock files of the database file `path` (a closed
/// store leaves no file of its database open).
fn forget_lock_files(path: &std::path::Path) {
    let lock_path = writer_lock_path(path);
    idle_lock_files(|idle| idle.remove(&lock_path));
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let SqliteLocation::File(path) = &self.location {
            forget_lock_files(path);
        }
    }
}

/// The path of the writers' lock file of the database file `path`.
fn writer_lock_path(path: &std::path::Path) -> PathBuf {
    let mut l = path.as_os_str().to_owned();
    l.push("-writer");
    PathBuf::from(l)
}

/// Waits for the writers' turn on `path` (see the module documentation):
/// in the kernel's queue, behind the writers ahead, each of which holds it
/// for one transaction (a process that dies releases it). A signal (Ctrl-C)
/// ends the wait when the interrupt hook says so. `None` when the lock file
/// cannot be used: the transaction then waits with SQLite's busy handler
/// alone, as it does for writers that do not take the turn.
fn writer_turn(path: &std::path::Path) -> Result<Option<WriterTurn>> {
    let lock_path = writer_lock_path(path);
    let kept = idle_lock_files(|idle| idle.get_mut(&lock_path).and_then(Vec::pop));
    let file = match kept {
        Some(f) => f,
        None => {
            let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
            else {
                return Ok(None);
            };
            f
        }
    };
    // A free lock is taken at once; a held one queues in the kernel.
    loop {
        if flock(&file, libc::LOCK_EX) {
            return Ok(Some(WriterTurn {
                file: Some(file),
                lock_path,
            }));
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Ok(None);
        }
        crate::sys::interrupt::check()?;
    }
}

/// Why this process cannot write the SQLite file at `path` (None: it can).
fn unwritable(path: &std::path::Path) -> Option<String> {
    if !path.exists() {
        return None;
    }
    if !can_write(path) {
        return Some("the file is not writable".into());
    }
    if !dir_writable(path) {
        return Some("its folder is not writable".into());
    }
    None
}

impl SqliteStore {
    pub fn open(
        location: &SqliteLocation,
        synchronous: Synchronous,
        read_only: bool,
    ) -> Result<SqliteStore> {
        let masked = match location {
            SqliteLocation::Memory => "sqlite:///:memory:".to_owned(),
            SqliteLocation::File(path) => {
                if path.as_os_str().as_encoded_bytes().contains(&0) {
                    return Err(Error::value(
                        "url: the SQLite file path contains a NUL character",
                    ));
                }
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    if !dir.is_dir() {
                        return Err(Error::value(format!(
                            "url: the folder of the SQLite file {} does not exist",
                            path.display()
                        )));
                    }
                }
                if let Some(guard) = OPEN_GUARD.get() {
                    guard(path)?;
                }
                format!("sqlite:///{}", path.display())
            }
        };
        let read_only = match location {
            SqliteLocation::Memory => None,
            SqliteLocation::File(path) if read_only => {
                if !path.exists() {
                    return Err(Error::value(format!(
                        "url: mode=ro, but the SQLite file {} does not exist",
                        path.display()
                    )));
                }
                Some("opened with mode=ro".to_owned())
            }
            SqliteLocation::File(path) => unwritable(path),
        };
        let store = SqliteStore {
            location: location.clone(),
            synchronous,
            read_only,
            pool: Arc::new(ProcessLocal::new()),
            masked,
        };
        if matches!(location, SqliteLocation::File(_)) {
            register_pool(&store.pool);
        }
        // One direct attempt first: a file that cannot be opened (a folder, no
        // permission, not a database) is reported at once with its cause,
        // instead of after the pool's wait of BUSY_TIMEOUT.
        if matches!(location, SqliteLocation::File(_)) {
            drop(
                store
                    .manager()
                    .open()
                    .map_err(|e| db_err(&store.masked, e))?,
            );
        }
        store.pool()?;
        Ok(store)
    }

    fn manager(&self) -> SqliteManager {
        SqliteManager {
            path: match &self.location {
                SqliteLocation::Memory => None,
                SqliteLocation::File(p) => Some(p.clone()),
            },
            read_only: self.read_only.is_some(),
            immutable: match &self.location {
                SqliteLocation::File(p) if self.read_only.is_some() => needs_immutable(p),
                _ => false,
            },
            sync: match self.synchronous {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            },
        }
    }

    /// This process's pool, made on first use (and again after close).
    fn pool(&self) -> Result<Pool<SqliteManager>> {
        let slot = self.pool.get_or_init(|| Mutex::new(None));
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let is_file = matches!(self.location, SqliteLocation::File(_));
        // A memory database lives as long as its one connection: keep it
        // (opened now, never closed for idleness).
        let pool = Pool::new(
            self.manager(),
            if is_file { 8 } else { 1 },
            BUSY_TIMEOUT,
            is_file.then(|| Duration::from_secs(600)),
        );
        if !is_file {
            drop(pool.get()?);
        }
        *slot = Some(pool.clone());
        Ok(pool)
    }

    /// The clear error of a write to a read-only store.
    fn writable(&self) -> Result<()> {
        match &self.read_only {
            Some(why) => Err(Error::Database {
                backend: "sqlite",
                message: format!(
                    "{} is read-only ({why}): this call writes to the database",
                    self.masked
                ),
            }),
            None => Ok(()),
        }
    }

    fn rebuild_lock_path(&self) -> Option<PathBuf> {
        match &self.location {
            SqliteLocation::File(p) => {
                let mut l = p.as_os_str().to_owned();
                l.push("-rebuild");
                Some(PathBuf::from(l))
            }
            SqliteLocation::Memory => None,
        }
    }

    fn conn(&self) -> Result<Pooled<SqliteManager>> {
        self.pool()?.get()
    }
}

/// Runs `f` in a read transaction on a plain read-only connection to an
/// existing SQLite file, without the store's settings (no journal-mode
/// switch, nothing created): for checks that must change nothing. `None`
/// when the file does not exist.
pub fn inspect<T>(
    path: &std::path::Path,
    f: impl FnOnce(&mut dyn Tx) -> Result<T>,
) -> Result<Option<T>> {
    if !path.is_file() {
        return Ok(None);
    }
    let masked = format!("sqlite:///{}", path.display());
    let mut conn = if needs_immutable(path) {
        open_immutable(path)
    } else {
        Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    }
    .map_err(|e| db_err(&masked, e))?;
    conn.busy_handler(Some(busy)).map_err(sql_err)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(sql_err)?;
    let mut stx = SqliteTx { conn: &tx };
    f(&mut stx).map(Some)
}

/// The holder of the rebuild lock of the SQLite file at `path` (see
/// [`SqliteSession::lock_rebuild`]), if a rebuild runs now. Creates nothing.
pub fn rebuild_holder(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut l = path.as_os_str().to_owned();
    l.push("-rebuild");
    let mut file = std::fs::File::open(PathBuf::from(l)).ok()?;
    if flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
        return None; // nobody holds it
    }
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    Some(if text.trim().is_empty() {
        "another process".into()
    } else {
        text.trim().to_owned()
    })
}

fn db_err(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Database {
        backend: "sqlite",
        message: format!("{url}: {e}"),
    }
}

fn sql_err(e: rusqlite::Error) -> Error {
    if BUSY_INTERRUPTED.with(|b| b.replace(false)) {
        return Error::Interrupted;
    }
    Error::Database {
        backend: "sqlite",
        message: e.to_string(),
    }
}

impl EventStore for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn masked_url(&self) -> String {
        self.masked.clone()
    }

    fn read_only(&self) -> bool {
        self.read_only.is_some()
    }

    fn close(&self) {
        if let SqliteLocation::File(path) = &self.location {
            if let Some(slot) = self.pool.get() {
                slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            }
            forget_lock_files(path);
        }
    }

    fn session(&self) -> Result<Box<dyn Session + '_>> {
        self.writable()?;
        let conn = match &self.location {
            // The memory database is its one connection: the session holds
            // it (other users of this process wait for the pool meanwhile).
            SqliteLocation::Memory => SessionConn::Pooled(self.conn()?),
            SqliteLocation::File(_) => {
                SessionConn::Own(self.manager().open().map_err(|e| db_err(&self.masked, e))?)
            }
        };
        Ok(Box::new(SqliteSession {
            conn,
            file: match &self.location {
                SqliteLocation::File(p) => Some(p.clone()),
                SqliteLocation::Memory => None,
            },
            lock_path: self.rebuild_lock_path(),
            lock: None,
            masked: self.masked.clone(),
        }))
    }

    fn rebuild_running(&self) -> bool {
        let Some(path) = self.rebuild_lock_path() else {
            return false;
        };
        match std::fs::File::open(&path) {
            Ok(f) => !flock(&f, libc::LOCK_SH | libc::LOCK_NB),
            Err(_) => false,
        }
    }

    fn write(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.writable()?;
        let mut conn = self.conn()?;
        let _turn = match &self.location {
            SqliteLocation::File(p) => writer_turn(p)?,
            SqliteLocation::Memory => None,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err)?;
        let mut stx = SqliteTx { conn: &tx };
        f(&mut stx)?; // dropping `tx` on error rolls back
        tx.commit().map_err(sql_err)
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(sql_err)?;
        let mut stx = SqliteTx { conn: &tx };
        f(&mut stx)
    }
}

enum SessionConn {
    Own(Connection),
    Pooled(Pooled<SqliteManager>),
}

/// A [`Session`] on SQLite: a connection of its own (the pool's one
/// connection for a memory database) and the rebuild lock's file.
pub struct SqliteSession {
    conn: SessionConn,
    /// The database file (`None`: a memory database).
    file: Option<PathBuf>,
    lock_path: Option<PathBuf>,
    /// The locked `<file>-rebuild`, held open while the session holds the
    /// rebuild lock.
    lock: Option<std::fs::File>,
    masked: String,
}

impl SqliteSession {
    fn conn(&mut self) -> &mut Connection {
        match &mut self.conn {
            SessionConn::Own(c) => c,
            SessionConn::Pooled(p) => p,
        }
    }

    fn run(
        &mut self,
        behavior: TransactionBehavior,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
    ) -> Result<()> {
        let _turn = match (&self.file, behavior) {
            (Some(file), TransactionBehavior::Immediate) => writer_turn(file)?,
            _ => None,
        };
        let tx = self
            .conn()
            .transaction_with_behavior(behavior)
            .map_err(sql_err)?;
        let mut stx = SqliteTx { conn: &tx };
        f(&mut stx)?; // dropping `tx` on error rolls back
        tx.commit().map_err(sql_err)
    }
}

impl Session for SqliteSession {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    /// `BEGIN DEFERRED`: reads take no lock in WAL mode, and writes to the
    /// temporary database lock only that (a connection's own), never the
    /// file that other writers wait for.
    fn quiet(&mut self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.run(TransactionBehavior::Deferred, f)
    }

    fn locked(&mut self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.run(TransactionBehavior::Immediate, f)
    }

    /// An exclusive flock(2) on `<file>-rebuild`, which then holds the
    /// holder's description ([`holder_text`]) for the next one to name.
    fn lock_rebuild(&mut self, wait: bool) -> Result<()> {
        use std::io::{Read, Seek, Write};
        let Some(path) = self.lock_path.clone() else {
            return Ok(()); // a memory database: the session holds its one connection
        };
        if self.lock.is_some() {
            return Ok(());
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| db_err(&self.masked, format!("{}: {e}", path.display())))?;
        let mut waiting = false;
        loop {
            if flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                let text = holder_text();
                let _ = file
                    .set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|()| file.write_all(text.as_bytes()));
                self.lock = Some(file);
                return Ok(());
            }
            let mut holder = String::new();
            let _ = file.rewind().and_then(|_| file.read_to_string(&mut holder));
            let holder = if holder.trim().is_empty() {
                "another process".to_owned()
            } else {
                holder.trim().to_owned()
            };
            wait_for(
                &holder,
                &self.masked,
                wait,
                &mut waiting,
                Duration::from_millis(50),
            )?;
        }
    }
}

pub struct SqliteTx<'a> {
    conn: &'a Connection,
}

/// `$1`-style placeholders as SQLite's `?1`.
fn dialect(sql: &str) -> std::borrow::Cow<'_, str> {
    if sql.contains('$') {
        std::borrow::Cow::Owned(sql.replace('$', "?"))
    } else {
        std::borrow::Cow::Borrowed(sql)
    }
}

impl ToSql for Sql {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Sql::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Sql::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Sql::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Sql::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Sql::Uuid(u) => {
                ToSqlOutput::Owned(rusqlite::types::Value::Text(u.simple().to_string()))
            }
            Sql::Time(t) => ToSqlOutput::Owned(rusqlite::types::Value::Text(
                t.format(TIME_FORMAT).to_string(),
            )),
            Sql::Originator(u) => ToSqlOutput::Borrowed(ValueRef::Blob(u.as_bytes())),
        })
    }
}

fn read_cell(v: ValueRef<'_>, kind: Kind) -> Result<Sql> {
    let bad = |what: &str| Error::Database {
        backend: "sqlite",
        message: format!("unexpected {what} in a {kind:?} column"),
    };
    Ok(match (v, kind) {
        (ValueRef::Null, _) => Sql::Null,
        (ValueRef::Integer(i), Kind::Int) => Sql::Int(i),
        (ValueRef::Integer(i), Kind::Real) => Sql::Real(i as f64),
        (ValueRef::Real(f), Kind::Real) => Sql::Real(f),
        (ValueRef::Real(f), Kind::Int) => Sql::Int(f as i64),
        (ValueRef::Integer(i), Kind::Text) => Sql::Text(i.to_string()),
        (ValueRef::Text(t), Kind::Text) => Sql::Text(String::from_utf8_lossy(t).into_owned()),
        (ValueRef::Text(t), Kind::Uuid) => {
            let s = std::str::from_utf8(t).map_err(|_| bad("bytes"))?;
            Sql::Uuid(Uuid::try_parse(s).map_err(|_| bad("text"))?)
        }
        (ValueRef::Blob(b), Kind::Uuid) if b.len() == 16 => {
            Sql::Uuid(Uuid::from_slice(b).map_err(|_| bad("blob"))?)
        }
        (ValueRef::Text(t), Kind::Time) => {
            let s = std::str::from_utf8(t).map_err(|_| bad("bytes"))?;
            Sql::Time(parse_time(s).ok_or_else(|| bad("time text"))?)
        }
        (ValueRef::Text(t), Kind::Int) => {
            let s = std::str::from_utf8(t).map_err(|_| bad("bytes"))?;
            Sql::Int(s.trim().parse().map_err(|_| bad("text"))?)
        }
        (ValueRef::Text(t), Kind::Real) => {
            let s = std::str::from_utf8(t).map_err(|_| bad("bytes"))?;
            Sql::Real(s.trim().parse().map_err(|_| bad("text"))?)
        }
        (ValueRef::Real(_), _) => return Err(bad("real")),
        (ValueRef::Integer(_), _) => return Err(bad("integer")),
        (ValueRef::Blob(_), _) => return Err(bad("blob")),
    })
}

/// SQLAlchemy's DATETIME text, with or without the fraction.
pub fn parse_time(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
}

fn stored_event(r: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<StoredEvent> {
    let id = r.get_ref(offset)?.as_blob()?;
    let originator_id = Uuid::from_slice(id).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(offset, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(StoredEvent {
        originator_id,
        originator_version: r.get(offset + 1)?,
        topic: r.get(offset + 2)?,
        state: r.get(offset + 3)?,
    })
}

impl Tx for SqliteTx<'_> {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn scan_aggregate(
        &mut self,
        originator_id: Uuid,
        from: i64,
        with_ids: bool,
        f: &mut AggregateRowFn<'_>,
    ) -> Result<()> {
        let first = if with_ids { "id, " } else { "" };
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {first}originator_version, topic, state FROM {EVENTS_TABLE} \
                 WHERE originator_id = ?1 AND originator_version >= ?2 ORDER BY originator_version"
            ))
            .map_err(sql_err)?;
        let mut rows = stmt
            .query(rusqlite::params![&originator_id.as_bytes()[..], from])
            .map_err(sql_err)?;
        let at = usize::from(with_ids);
        while let Some(r) = rows.next().map_err(sql_err)? {
            let bad = |what: &str| Error::Database {
                backend: "sqlite",
                message: format!("{EVENTS_TABLE}: {what} is not what the event store writes"),
            };
            let id = if with_ids {
                r.get(0).map_err(sql_err)?
            } else {
                0
            };
            let version = r.get(at).map_err(sql_err)?;
            let topic = r
                .get_ref(at + 1)
                .map_err(sql_err)?
                .as_str()
                .map_err(|_| bad("topic"))?;
            let state = r
                .get_ref(at + 2)
                .map_err(sql_err)?
                .as_blob()
                .map_err(|_| bad("state"))?;
            f(id, version, topic, state)?;
        }
        Ok(())
    }

    fn load_events(&mut self, originator_id: Uuid) -> Result<Vec<Notification>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} \
                 WHERE originator_id = ?1 ORDER BY originator_version"
            ))
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([&originator_id.as_bytes()[..]], |r| {
                Ok(Notification {
                    id: r.get(0)?,
                    event: stored_event(r, 1)?,
                })
            })
            .map_err(sql_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)
    }

    fn query_notifications(&mut self, sql: &str, params: &[Sql]) -> Result<Vec<Notification>> {
        let mut stmt = self.conn.prepare_cached(&dialect(sql)).map_err(sql_err)?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), |r| {
                Ok(Notification {
                    id: r.get(0)?,
                    event: stored_event(r, 1)?,
                })
            })
            .map_err(sql_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)
    }

    fn append(&mut self, events: &[StoredEvent]) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) VALUES (?1, ?2, ?3, ?4)"
            ))
            .map_err(sql_err)?;
        let mut ids = Vec::with_capacity(events.len());
        for e in events {
            match stmt.execute(rusqlite::params![
                &e.originator_id.as_bytes()[..],
                e.originator_version,
                e.topic,
                e.state
            ]) {
                Ok(_) => ids.push(self.conn.last_insert_rowid()),
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == ErrorCode::ConstraintViolation =>
                {
                    return Err(Error::Conflict {
                        id: e.originator_id,
                        version: e.originator_version,
                    })
                }
                Err(err) => return Err(sql_err(err)),
            }
        }
        Ok(ids)
    }

    fn lock_log(&mut self) -> Result<()> {
        Ok(())
    }

    fn notifications(
        &mut self,
        after: i64,
        upto: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} \
                 WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3"
            ))
            .map_err(sql_err)?;
        let rows = stmt
            .query_map(
                rusqlite::params![
                    after,
                    upto.unwrap_or(i64::MAX),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok(Notification {
                        id: r.get(0)?,
                        event: stored_event(r, 1)?,
                    })
                },
            )
            .map_err(sql_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)
    }

    fn scan_notifications(
        &mut self,
        after: i64,
        upto: Option<i64>,
        limit: usize,
        f: &mut dyn FnMut(&NotificationRef<'_>),
    ) -> Result<(usize, Option<i64>)> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} \
                 WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3"
            ))
            .map_err(sql_err)?;
        let mut rows = stmt
            .query(rusqlite::params![
                after,
                upto.unwrap_or(i64::MAX),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ])
            .map_err(sql_err)?;
        let (mut count, mut last) = (0, None);
        while let Some(r) = rows.next().map_err(sql_err)? {
            let bad = |what: &str| Error::Database {
                backend: "sqlite",
                message: format!("{EVENTS_TABLE}: {what} is not what the event store writes"),
            };
            let id: i64 = r.get(0).map_err(sql_err)?;
            let originator = r
                .get_ref(1)
                .map_err(sql_err)?
                .as_blob()
                .map_err(|_| bad("originator_id"))?;
            let topic = r
                .get_ref(3)
                .map_err(sql_err)?
                .as_str()
                .map_err(|_| bad("topic"))?;
            let state = r
                .get_ref(4)
                .map_err(sql_err)?
                .as_blob()
                .map_err(|_| bad("state"))?;
            f(&NotificationRef {
                id,
                originator_id: Uuid::from_slice(originator).map_err(|_| bad("originator_id"))?,
                originator_version: r.get(2).map_err(sql_err)?,
                topic,
                state,
            });
            count += 1;
            last = Some(id);
        }
        Ok((count, last))
    }

    fn max_notification_id(&mut self) -> Result<i64> {
        self.conn
            .query_row(
                &format!("SELECT COALESCE(MAX(id), 0) FROM {EVENTS_TABLE}"),
                [],
                |r| r.get(0),
            )
            .map_err(sql_err)
    }

    fn execute(&mut self, sql: &str, params: &[Sql]) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(&dialect(sql)).map_err(sql_err)?;
        // A SELECT through execute (e.g. a lock function) must not fail.
        if stmt.readonly() {
            let mut rows = stmt
                .query(params_from_iter(params.iter()))
                .map_err(sql_err)?;
            while rows.next().map_err(sql_err)?.is_some() {}
            return Ok(0);
        }
        stmt.execute(params_from_iter(params.iter()))
            .map(|n| n as u64)
            .map_err(sql_err)
    }

    fn query(&mut self, sql: &str, params: &[Sql], kinds: &[Kind]) -> Result<Vec<Vec<Sql>>> {
        let mut stmt = self.conn.prepare_cached(&dialect(sql)).map_err(sql_err)?;
        let mut rows = stmt
            .query(params_from_iter(params.iter()))
            .map_err(sql_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err)? {
            let mut cells = Vec::with_capacity(kinds.len());
            for (i, kind) in kinds.iter().enumerate() {
                cells.push(read_cell(row.get_ref(i).map_err(sql_err)?, *kind)?);
            }
            out.push(cells);
        }
        Ok(out)
    }

    fn execute_batch(&mut self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(sql_err)
    }

    fn table_exists(&mut self, table: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(sql_err)
    }

    fn query_any(&mut self, sql: &str, params: &[Sql]) -> Result<AnyRows> {
        let mut stmt = self.conn.prepare(sql).map_err(sql_err)?;
        if stmt.column_count() == 0 {
            let affected = stmt
                .execute(params_from_iter(params.iter()))
                .map_err(sql_err)?;
            return Ok(AnyRows {
                affected: affected as u64,
                ..AnyRows::default()
            });
        }
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let mut rows = stmt
            .query(params_from_iter(params.iter()))
            .map_err(sql_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err)? {
            let mut cells = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                cells.push(match row.get_ref(i).map_err(sql_err)? {
                    ValueRef::Null => AnyCell::Null,
                    ValueRef::Integer(v) => AnyCell::Int(v),
                    ValueRef::Real(v) => AnyCell::Real(v),
                    ValueRef::Text(t) => AnyCell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => AnyCell::Bytes(b.to_vec()),
                });
            }
            out.push(cells);
        }
        Ok(AnyRows {
            columns,
            rows: out,
            affected: 0,
        })
    }
}
