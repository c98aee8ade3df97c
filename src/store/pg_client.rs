//! A blocking Postgres client whose every wait is bounded and interruptible.
//!
//! `tokio_postgres` on a runtime of the connection's own (no threads), driven
//! in slices of 100 ms: between slices the interrupt hook is checked
//! (`crate::interrupt`), so Ctrl-C stops a command that waits for the log's
//! lock or for a server that stopped answering. A command that has had no
//! answer for `command_timeout` asks the server on a new connection whether
//! it still answers: if it does, the command is waiting for a lock and keeps
//! waiting; if not, the command fails with a clear error. Connection set-up
//! (TCP connect, startup, authentication) is bounded by `connect_timeout` as
//! a whole, including a server that accepts but never answers.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, SimpleQueryMessage, Statement};

const SLICE: Duration = Duration::from_millis(100);

/// Why a call failed.
#[derive(Debug)]
pub enum PgFail {
    Pg(tokio_postgres::Error),
    /// No answer within the bound (the message says which).
    NoAnswer(String),
    Interrupted,
    /// The connection was given up after an earlier failure.
    Abandoned,
}

impl PgFail {
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            PgFail::Pg(e) => e.code(),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for PgFail {
    fn from(e: tokio_postgres::Error) -> Self {
        PgFail::Pg(e)
    }
}

/// The bounds of a connection.
#[derive(Clone)]
pub struct Bounds {
    pub connect_timeout: Duration,
    /// None: wait as long as the server answers probes.
    pub command_timeout: Option<Duration>,
}

pub struct PgClient {
    rt: tokio::runtime::Runtime,
    /// Dropped first in `Drop`, so that its Terminate message is sent.
    client: std::mem::ManuallyDrop<Client>,
    driver: Option<tokio::task::JoinHandle<()>>,
    config: Config,
    bounds: Bounds,
    abandoned: Cell<bool>,
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}

/// Drives `fut` on `rt` in slices; checks the interrupt hook between them;
/// gives up after `limit`.
fn drive<T, F: Future<Output = T>>(
    rt: &tokio::runtime::Runtime,
    fut: F,
    limit: Duration,
) -> Result<T, PgFail> {
    let mut fut = std::pin::pin!(fut);
    let start = Instant::now();
    loop {
        if let Ok(v) = rt.block_on(async { tokio::time::timeout(SLICE, fut.as_mut()).await }) {
            return Ok(v);
        }
        if crate::sys::interrupt::check().is_err() {
            return Err(PgFail::Interrupted);
        }
        if start.elapsed() >= limit {
            return Err(PgFail::NoAnswer(format!(
                "no answer from the server within {limit:?}"
            )));
        }
    }
}

impl PgClient {
    /// Connects; the whole set-up is bounded by `connect_timeout`.
    pub fn connect(config: &Config, bounds: Bounds) -> Result<PgClient, PgFail> {
        let rt = runtime().map_err(|e| PgFail::NoAnswer(format!("cannot start I/O: {e}")))?;
        let (client, connection) = drive(&rt, config.connect(NoTls), bounds.connect_timeout)
            .map_err(|e| match e {
                PgFail::NoAnswer(_) => PgFail::NoAnswer(format!(
                    "the server did not complete the connection within connect_timeout={}s",
                    bounds.connect_timeout.as_secs()
                )),
                e => e,
            })??;
        let driver = rt.spawn(async move {
            let _ = connection.await;
        });
        Ok(PgClient {
            rt,
            client: std::mem::ManuallyDrop::new(client),
            driver: Some(driver),
            config: config.clone(),
            bounds,
            abandoned: Cell::new(false),
        })
    }

    /// Whether the server answers a new connection now.
    fn server_answers(&self) -> bool {
        let Ok(rt) = runtime() else { return false };
        let probe = async {
            let (c, conn) = self.config.connect(NoTls).await?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            let r = c.simple_query("SELECT 1").await;
            drop(c);
            let _ = driver.await;
            r
        };
        matches!(drive(&rt, probe, self.bounds.connect_timeout), Ok(Ok(_)))
    }

    /// Runs one request of this connection to its end, within the bounds.
    fn run<T>(
        &self,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, PgFail> {
        if self.abandoned.get() {
            return Err(PgFail::Abandoned);
        }
        let mut fut = std::pin::pin!(fut);
        let mut quiet_since = Instant::now();
        loop {
            if let Ok(r) = self
                .rt
                .block_on(async { tokio::time::timeout(SLICE, fut.as_mut()).await })
            {
                return r.map_err(PgFail::Pg);
            }
            if crate::sys::interrupt::check().is_err() {
                self.abandon();
                return Err(PgFail::Interrupted);
            }
            if let Some(bound) = self.bounds.command_timeout {
                if quiet_since.elapsed() >= bound {
                    if self.server_answers() {
                        // Alive: the request waits for a lock. Keep waiting.
                        quiet_since = Instant::now();
                        continue;
                    }
                    self.abandon();
                    return Err(PgFail::NoAnswer(format!(
                        "the server did not answer for {}s (command_timeout) and does not accept \
                         new connections; the connection was closed",
                        bound.as_secs()
                    )));
                }
            }
        }
    }

    /// Gives up this connection: the server is asked (from another thread,
    /// without waiting) to cancel what it runs, and the pool closes it.
    fn abandon(&self) {
        self.abandoned.set(true);
        let token = self.client.cancel_token();
        let limit = self.bounds.connect_timeout;
        let _ = std::thread::Builder::new()
            .name("biomero-cancel".into())
            .spawn(move || {
                if let Ok(rt) = runtime() {
                    let _ = rt.block_on(async {
                        tokio::time::timeout(limit, token.cancel_query(NoTls)).await
                    });
                }
            });
    }

    /// Lets the connection read what the server sent while it was idle (a
    /// restart's "terminating connection"), without waiting; then
    /// [`is_closed`](Self::is_closed) says whether it still stands.
    pub fn settle(&self) {
        if !self.abandoned.get() {
            // A few turns of the runtime: one polls the socket, the next
            // runs the connection's task on what it read.
            self.rt.block_on(async {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
            });
        }
    }

    /// Closed by the server, or given up after a failure.
    pub fn is_closed(&self) -> bool {
        self.abandoned.get() || self.client.is_closed()
    }

    /// Given up by this side (a timeout or an interrupt): not worth a retry.
    pub fn abandoned(&self) -> bool {
        self.abandoned.get()
    }

    pub fn is_valid(&self, limit: Duration) -> Result<(), PgFail> {
        if self.is_closed() {
            return Err(PgFail::Abandoned);
        }
        drive(&self.rt, self.client.simple_query(""), limit)??;
        Ok(())
    }

    pub fn batch_execute(&self, sql: &str) -> Result<(), PgFail> {
        self.run(self.client.batch_execute(sql))
    }

    pub fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, PgFail> {
        self.run(self.client.simple_query(sql))
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement, PgFail> {
        self.run(self.client.prepare(sql))
    }

    pub fn query(
        &self,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgFail> {
        self.run(self.client.query(stmt, params))
    }

    pub fn query_one(
        &self,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgFail> {
        self.run(self.client.query_one(stmt, params))
    }

    pub fn query_one_sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, PgFail> {
        self.run(self.client.query_one(sql, params))
    }

    pub fn execute(&self, stmt: &Statement, params: &[&(dyn ToSql + Sync)]) -> Result<u64, PgFail> {
        self.run(self.client.execute(stmt, params))
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        let healthy = !self.abandoned.get() && !self.client.is_closed();
        // SAFETY: dropped once, here; not used after.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.client) };
        // Let the connection send Terminate and close, briefly.
        if let (true, Some(driver)) = (healthy, self.driver.take()) {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_millis(200), driver).await });
        }
    }
}
