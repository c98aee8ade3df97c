//! One SQLite library per process: the check run before a SQLite file store
//! opens.
//!
//! SQLite keeps the POSIX locks of its open database files in a list private
//! to one copy of the library. With two copies in one process (biomero_rs
//! linking one, Python's `sqlite3` module another), closing the file in one
//! copy releases the locks the other holds on it (POSIX locks belong to the
//! process, not to the descriptor), and that last close may checkpoint and
//! delete a WAL file the other copy still appends to: commits then vanish for
//! every other process. Python code (`sqlite3`, SQLAlchemy, BIOMERO's views)
//! may open the same file at any later moment, which biomero_rs cannot see,
//! so the check refuses SQLite *files* in such a process up front, at the one
//! moment biomero_rs controls. Memory databases and Postgres are unaffected.
//!
//! The verdict is an experiment, not a version comparison: biomero_rs creates
//! a table in a process-wide in-memory database (a `memdb` name, then a
//! shared-cache memory URI) and Python's `sqlite3` module looks for it. Only
//! a connection of the same library copy can see it. `dladdr` names the
//! library file of each side for the message, and is the verdict when a
//! library has neither kind of shared memory database.

use crate::error::{Error, Result};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rusqlite::{Connection, OpenFlags};
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// `BIOMERO_RS_SQLITE_GUARD=off` skips the check.
pub const GUARD_VAR: &str = "BIOMERO_RS_SQLITE_GUARD";

static VERDICT: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// Makes every SQLite file store of this process run the check first.
pub fn install() {
    crate::store::sqlite::set_open_guard(check);
}

fn check(path: &Path) -> Result<()> {
    if std::env::var(GUARD_VAR).is_ok_and(|v| v.trim().eq_ignore_ascii_case("off")) {
        return Ok(());
    }
    // Not get_or_init: the verdict takes the GIL, and a thread holding the
    // GIL must never wait on another thread's initialisation.
    let verdict = match VERDICT.get() {
        Some(v) => v,
        None => {
            let v = Python::with_gil(verdict);
            VERDICT.get_or_init(|| v)
        }
    };
    verdict.clone().map_err(|why| Error::Database {
        backend: "sqlite",
        message: format!("sqlite:///{}: {why}", path.display()),
    })
}

fn verdict(py: Python<'_>) -> std::result::Result<(), String> {
    let Ok(sqlite3) = py.import("sqlite3") else {
        return Ok(()); // no sqlite3 module: no second library to clash with
    };
    if shares_memory_database(py, &sqlite3) {
        return Ok(());
    }
    let ours = library_of(rusqlite::ffi::sqlite3_libversion as *const c_void);
    let theirs = python_library(py);
    if let (Some(a), Some(Located::Loaded(b))) = (&ours, &theirs) {
        if a.base == b.base {
            return Ok(());
        }
    }
    let ours = ours.map_or_else(|| "an unknown file".to_owned(), |l| l.file);
    let theirs = match theirs {
        Some(Located::Loaded(l)) => l.file,
        Some(Located::BuiltInto(file)) => format!("a copy built into {file}"),
        None => "a copy built into the Python interpreter".to_owned(),
    };
    let their_version = sqlite3
        .getattr("sqlite_version")
        .and_then(|v| v.extract::<String>())
        .unwrap_or_else(|_| "?".to_owned());
    Err(format!(
        "refusing to open a SQLite file: this process has two SQLite libraries \
         (biomero_rs uses SQLite {} from {ours}; Python's sqlite3 module uses \
         SQLite {their_version} from {theirs}). When one of them closes a \
         database file, the file locks the other holds on it are dropped and \
         committed events can be lost. Fix: run biomero_rs with a Python whose \
         sqlite3 module links the system libsqlite3.so.0 (the distribution's \
         python3, pyenv, or any Python built against libsqlite3-dev / \
         sqlite-devel), and install biomero_rs from its manylinux wheel or \
         build it from source, which link that same library (README, \
         \"Install\"); or use a Postgres URL. {GUARD_VAR}=off skips this check: \
         safe only if nothing in this process opens the file with Python's \
         sqlite3 or SQLAlchemy",
        rusqlite::version(),
    ))
}

/// True when a table created by biomero_rs's SQLite in a process-wide memory
/// database is seen by Python's `sqlite3` module.
fn shares_memory_database(py: Python<'_>, sqlite3: &Bound<'_, PyModule>) -> bool {
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let name = format!("biomero-rs-guard-{}-{n}", std::process::id());
    [
        format!("file:/{name}?vfs=memdb"),
        format!("file:{name}?mode=memory&cache=shared"),
    ]
    .iter()
    .any(|uri| probe(py, sqlite3, uri).unwrap_or(false))
}

fn probe(py: Python<'_>, sqlite3: &Bound<'_, PyModule>, uri: &str) -> Option<bool> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let ours = Connection::open_with_flags(uri, flags).ok()?;
    ours.execute_batch("CREATE TABLE biomero_rs_guard(x)")
        .ok()?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("uri", true).ok()?;
    let theirs = sqlite3.call_method("connect", (uri,), Some(&kwargs)).ok()?;
    let seen = theirs
        .call_method1(
            "execute",
            ("SELECT count(*) FROM sqlite_master WHERE name = 'biomero_rs_guard'",),
        )
        .and_then(|cur| cur.call_method0("fetchone"))
        .and_then(|row| row.get_item(0))
        .and_then(|n| n.extract::<i64>());
    let _ = theirs.call_method0("close");
    drop(ours);
    Some(seen.ok()? == 1)
}

struct Library {
    file: String,
    base: usize,
}

enum Located {
    Loaded(Library),
    /// The module's file exports no SQLite symbol: SQLite is linked into it.
    BuiltInto(String),
}

/// The loaded object that holds `addr`.
fn library_of(addr: *const c_void) -> Option<Library> {
    // SAFETY: dladdr only reads the loader's tables; the file name it
    // returns stays valid while the object is loaded (SQLite never unloads).
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let file = CStr::from_ptr(info.dli_fname)
            .to_string_lossy()
            .into_owned();
        let file = std::fs::canonicalize(&file)
            .map(|p| p.display().to_string())
            .unwrap_or(file);
        Some(Library {
            file,
            base: info.dli_fbase as usize,
        })
    }
}

/// Where `sqlite3_libversion` is found for Python's `_sqlite3` module: in
/// the module's file or the libraries it loaded.
fn python_library(py: Python<'_>) -> Option<Located> {
    let module = py.import("_sqlite3").ok()?;
    let file: String = module.getattr("__file__").ok()?.extract().ok()?;
    let c_file = CString::new(file.clone()).ok()?;
    // SAFETY: RTLD_NOLOAD only looks up an object that is already loaded
    // (importing `_sqlite3` loaded it) and takes one reference, released below.
    unsafe {
        let handle = libc::dlopen(c_file.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let sym = libc::dlsym(handle, c"sqlite3_libversion".as_ptr() as *const c_char);
        libc::dlclose(handle);
        if sym.is_null() {
            return Some(Located::BuiltInto(file));
        }
        library_of(sym).map(Located::Loaded)
    }
}
