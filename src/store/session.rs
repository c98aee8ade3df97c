//! A connection of its own, outside the pool, for one long piece of work.
//!
//! A rebuild builds its tables beside the live ones, as temporary tables of
//! the same names: on both backends an unqualified name then means the
//! temporary table on that connection only, while every other connection
//! (commands, dashboards) keeps reading and writing the live tables. The
//! temporary tables live as long as the connection: a rebuild that dies in
//! any way (Ctrl-C, kill -9, a lost connection) leaves nothing behind.
//!
//! A session also holds the database's rebuild lock, so that one rebuild at
//! a time runs per database (SQLite: an flock(2) on `<file>-rebuild`;
//! Postgres: a session-level advisory lock). The operating system or the
//! server releases either when the process or its connection ends, however
//! it ends; no stale lock outlives a crash.

use crate::error::Result;
use crate::store::{Backend, Tx};

/// A connection of its own (see the module documentation).
pub trait Session {
    fn backend(&self) -> Backend;

    /// Runs `f` in a transaction that takes no lock another writer waits for:
    /// it reads the log and writes only this session's temporary tables
    /// (SQLite: `BEGIN DEFERRED`; Postgres: `BEGIN` without the log's lock).
    /// Commits when `f` returns Ok, rolls back otherwise.
    fn quiet(&mut self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()>;

    /// Runs `f` in a write transaction that holds the log's lock from the
    /// start; commits when `f` returns Ok, rolls back otherwise.
    fn locked(&mut self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()>;

    /// Takes this database's rebuild lock for the rest of the session. With
    /// `wait`, waits (interruptibly) while another rebuild holds it;
    /// without, fails at once with [`crate::error::Error::RebuildRunning`]
    /// naming the one that runs.
    fn lock_rebuild(&mut self, wait: bool) -> Result<()>;
}

/// [`Session::quiet`] returning `f`'s value.
pub fn quiet_tx<T>(
    session: &mut dyn Session,
    mut f: impl FnMut(&mut dyn Tx) -> Result<T>,
) -> Result<T> {
    let mut out = None;
    session.quiet(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    Ok(out.expect("quiet closure ran"))
}

/// [`Session::locked`] returning `f`'s value.
pub fn locked_tx<T>(
    session: &mut dyn Session,
    mut f: impl FnMut(&mut dyn Tx) -> Result<T>,
) -> Result<T> {
    let mut out = None;
    session.locked(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    Ok(out.expect("locked closure ran"))
}

/// What a rebuild does when the lock is taken by `holder`: without `wait`,
/// the error naming it; with `wait`, a note (the first time) and a pause of
/// `pause` (interruptible) before the caller tries again.
pub fn wait_for(
    holder: &str,
    masked_url: &str,
    wait: bool,
    noted: &mut bool,
    pause: std::time::Duration,
) -> Result<()> {
    if !wait {
        return Err(crate::error::Error::RebuildRunning(format!(
            "a rebuild of {masked_url} is already running ({holder}); wait for it to finish \
             (or ask to wait: `biomero-rs rebuild --wait`, rebuild_views(wait=True))"
        )));
    }
    if !*noted {
        log::info!("biomero_rs rebuild: waiting for the rebuild of {holder}");
        *noted = true;
    }
    crate::sys::interrupt::check()?;
    std::thread::sleep(pause);
    Ok(())
}

/// This process as a rebuild lock names its holder: "pid 123 on host h
/// since 2026-12-05 15:07:09 UTC".
pub fn holder_text() -> String {
    format!(
        "pid {} on host {} since {}",
        std::process::id(),
        hostname(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// The host name (`?` when it cannot be read).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
