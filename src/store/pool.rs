//! A small connection pool: connections are opened in the calling thread and
//! waits use the standard library's mutex and condition variable. No helper
//! threads and no global parking tables, so a forked child can open pools of
//! its own (r2d2's worker threads and parking_lot's global table of parked
//! threads do not survive a fork; the child crashed or hung on them).

use crate::error::{Error, Result};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Opens and checks the connections of a [`Pool`].
pub trait Manager: Send + Sync + 'static {
    type Conn: Send + 'static;
    fn connect(&self) -> Result<Self::Conn>;
    /// Whether a connection given back must be closed instead of reused.
    fn has_broken(&self, conn: &mut Self::Conn) -> bool;
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

struct State<C> {
    idle: Vec<Idle<C>>,
    /// Connections open, idle or lent.
    open: usize,
}

struct Inner<M: Manager> {
    manager: M,
    max: usize,
    /// How long `get` waits for a connection when all are lent.
    wait: Duration,
    /// Idle connections older than this are closed.
    idle_timeout: Option<Duration>,
    state: Mutex<State<M::Conn>>,
    returned: Condvar,
    pid: u32,
}

pub struct Pool<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<M: Manager> Inner<M> {
    fn state(&self) -> MutexGuard<'_, State<M::Conn>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<M: Manager> Pool<M> {
    pub fn new(manager: M, max: usize, wait: Duration, idle_timeout: Option<Duration>) -> Self {
        Pool {
            inner: Arc::new(Inner {
                manager,
                max: max.max(1),
                wait,
                idle_timeout,
                state: Mutex::new(State {
                    idle: Vec::new(),
                    open: 0,
                }),
                returned: Condvar::new(),
                pid: std::process::id(),
            }),
        }
    }

    pub fn manager(&self) -> &M {
        &self.inner.manager
    }

    /// A connection: an idle one, a new one while fewer than `max` are open,
    /// else the first one given back within the pool's wait (checking
    /// `interrupted` at least every 100 ms while it waits).
    pub fn get(&self) -> Result<Pooled<M>> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.wait;
        let mut state = inner.state();
        loop {
            if let Some(limit) = inner.idle_timeout {
                let before = state.idle.len();
                state.idle.retain(|c| c.since.elapsed() < limit);
                state.open -= before - state.idle.len();
            }
            if let Some(c) = state.idle.pop() {
                return Ok(self.lend(c.conn));
            }
            if state.open < inner.max {
                state.open += 1;
                drop(state);
                return match inner.manager.connect() {
                    Ok(c) => Ok(self.lend(c)),
                    Err(e) => {
                        inner.state().open -= 1;
                        inner.returned.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Database {
                    backend: "pool",
                    message: format!(
                        "all {} connections stayed in use for {:?}",
                        inner.max, inner.wait
                    ),
                });
            }
            let step = (deadline - now).min(Duration::from_millis(100));
            drop(
                inner
                    .returned
                    .wait_timeout(state, step)
                    .unwrap_or_else(|e| e.into_inner())
                    .0,
            );
            // Not holding the pool's lock while the hook runs.
            crate::sys::interrupt::check()?;
            state = inner.state();
        }
    }

    fn lend(&self, conn: M::Conn) -> Pooled<M> {
        Pooled {
            conn: Some(conn),
            pool: self.inner.clone(),
        }
    }
}

/// A lent connection; given back to its pool when dropped.
pub struct Pooled<M: Manager> {
    conn: Option<M::Conn>,
    pool: Arc<Inner<M>>,
}

impl<M: Manager> std::ops::Deref for Pooled<M> {
    type Target = M::Conn;
    fn deref(&self) -> &M::Conn {
        self.conn.as_ref().expect("lent connection")
    }
}

impl<M: Manager> std::ops::DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Conn {
        self.conn.as_mut().expect("lent connection")
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.pool.pid != std::process::id() {
            std::mem::forget(conn); // the parent's: never closed here
            return;
        }
        let broken = self.pool.manager.has_broken(&mut conn);
        let mut state = self.pool.state();
        if broken {
            state.open -= 1;
            drop(state);
            drop(conn);
        } else {
            state.idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
        self.pool.returned.notify_one();
    }
}
