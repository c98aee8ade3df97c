//! Interruption of long waits. The core calls [`check`] at least every
//! 100 ms while it waits (for a lock, a connection, a busy database) or works
//! through a long run (rebuild and catch-up batches); the embedding layer
//! installs the hook that says whether to stop (the Python module runs
//! Python's signal handlers there, so Ctrl-C raises `KeyboardInterrupt`).
//! The core itself does not depend on Python.

use crate::error::{Error, Result};
use std::sync::OnceLock;

static HOOK: OnceLock<fn() -> bool> = OnceLock::new();

/// Installs the hook (once per process; later calls are ignored). It returns
/// true when the current call should stop.
pub fn set_hook(hook: fn() -> bool) {
    let _ = HOOK.set(hook);
}

/// `Err(Error::Interrupted)` when the hook asks to stop.
pub fn check() -> Result<()> {
    match HOOK.get() {
        Some(h) if h() => Err(Error::Interrupted),
        _ => Ok(()),
    }
}
