//! The Postgres event store (`postgres` + `r2d2_postgres`).
//!
//! Each insert transaction takes `LOCK TABLE workflowtracker_events IN
//! EXCLUSIVE MODE`, as eventsourcing_sqlalchemy does, so notification ids
//! become visible in order and projectors that run in the same transaction
//! are serialised with every other writer.

use crate::error::{Error, Result};
use crate::store::schema::EVENTS_TABLE;
use crate::store::url::PostgresTarget;
use crate::store::{
    edge_events_sql, events_of_sql, Backend, EdgeQuery, EventStore, Kind, Notification, Sql,
    StoredEvent, Tx, EDGE_QUERIES_PER_STATEMENT,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{NoTls, Statement, Transaction};
use r2d2::{ManageConnection, Pool};
use r2d2_postgres::PostgresConnectionManager;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// A pooled connection with the statements it has prepared, so that each
/// statement is parsed once per connection, not once per transaction.
pub struct PgConn {
    client: postgres::Client,
    statements: HashMap<String, Statement>,
}

/// r2d2_postgres's manager, keeping a statement cache with each connection.
pub struct CachingManager(PostgresConnectionManager<NoTls>);

impl ManageConnection for CachingManager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.0.connect()?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> std::result::Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

pub struct PostgresStore {
    pool: Pool<CachingManager>,
    masked: String,
    /// "host:port" for messages.
    endpoint: String,
}

impl PostgresStore {
    pub fn open(target: &PostgresTarget, masked: String) -> Result<PostgresStore> {
        let mut config = postgres::Config::new();
        config
            .host(&target.host)
            .port(target.port)
            .connect_timeout(target.connect_timeout);
        if let Some(u) = &target.user {
            config.user(u);
        } else {
            config.user(&std::env::var("USER").unwrap_or_else(|_| "postgres".into()));
        }
        if let Some(p) = &target.password {
            config.password(p);
        }
        if let Some(d) = &target.dbname {
            config.dbname(d);
        }
        config.application_name(target.application_name.as_deref().unwrap_or("biomero_rs"));
        let endpoint = format!("{}:{}", target.host, target.port);
        let manager = CachingManager(PostgresConnectionManager::new(config, NoTls));
        // One direct attempt first: an unreachable server or a bad login is
        // reported at once, with its cause, instead of after the pool's wait.
        let first = manager
            .connect()
            .map_err(|e| connect_err(&endpoint, &masked, chain(&e)))?;
        let pool = Pool::builder()
            .max_size(16)
            .min_idle(Some(0))
            .idle_timeout(Some(Duration::from_secs(300)))
            .connection_timeout(target.connect_timeout + Duration::from_secs(1))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)
            .map_err(|e| connect_err(&endpoint, &masked, chain(&e)))?;
        drop(first);
        Ok(PostgresStore {
            pool,
            masked,
            endpoint,
        })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<CachingManager>> {
        self.pool
            .get()
            .map_err(|e| connect_err(&self.endpoint, &self.masked, e))
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

fn pg_err(e: postgres::Error) -> Error {
    let message = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => chain(&e),
    };
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

    fn write(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        let mut conn = self.conn()?;
        let PgConn { client, statements } = &mut *conn;
        let result = (|| {
            let tx = client.transaction().map_err(pg_err)?;
            let mut ptx = PgTx {
                tx,
                statements: &mut *statements,
            };
            f(&mut ptx)?; // dropping the transaction on error rolls back
            ptx.tx.commit().map_err(pg_err)
        })();
        if result.is_err() {
            // A failed statement may come from a changed schema: prepare afresh.
            statements.clear();
        }
        result
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        let mut conn = self.conn()?;
        let PgConn { client, statements } = &mut *conn;
        let result = (|| {
            let tx = client
                .build_transaction()
                .read_only(true)
                .start()
                .map_err(pg_err)?;
            let mut ptx = PgTx {
                tx,
                statements: &mut *statements,
            };
            f(&mut ptx)
        })();
        if result.is_err() {
            statements.clear();
        }
        result
    }
}

pub struct PgTx<'a> {
    tx: Transaction<'a>,
    /// The connection's prepared statements, by SQL text.
    statements: &'a mut HashMap<String, Statement>,
}

impl PgTx<'_> {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql).map_err(pg_err)?;
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
        Sql::Uuid(u) => Box::new(*u),
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

    fn load_events(&mut self, originator_id: Uuid) -> Result<Vec<Notification>> {
        let stmt = self.statement(&format!(
            "SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} \
             WHERE originator_id = $1 ORDER BY originator_version"
        ))?;
        let rows = self.tx.query(&stmt, &[&originator_id]).map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(Notification {
                    id: r.try_get(0).map_err(pg_err)?,
                    event: stored_event(r, 1)?,
                })
            })
            .collect()
    }

    fn edge_events(
        &mut self,
        queries: &[EdgeQuery<'_>],
        upto: i64,
    ) -> Result<Vec<Option<Notification>>> {
        let mut out: Vec<Option<Notification>> = vec![None; queries.len()];
        for (c, chunk) in queries.chunks(EDGE_QUERIES_PER_STATEMENT).enumerate() {
            let stmt = self.statement(&edge_events_sql(chunk))?;
            let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(1 + 2 * chunk.len());
            params.push(&upto);
            for q in chunk {
                params.push(&q.originator_id);
                params.push(&q.topic);
            }
            for r in self.tx.query(&stmt, &params).map_err(pg_err)? {
                let q: i32 = r.try_get(0).map_err(pg_err)?;
                let n = Notification {
                    id: r.try_get(1).map_err(pg_err)?,
                    event: stored_event(&r, 2)?,
                };
                if let Some(slot) = usize::try_from(q)
                    .ok()
                    .and_then(|q| out.get_mut(c * EDGE_QUERIES_PER_STATEMENT + q))
                {
                    *slot = Some(n);
                }
            }
        }
        Ok(out)
    }

    fn events_of(
        &mut self,
        originator_id: Uuid,
        topics: &[&str],
        upto: i64,
    ) -> Result<Vec<Notification>> {
        let stmt = self.statement(&events_of_sql(topics.len()))?;
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(2 + topics.len());
        params.push(&originator_id);
        params.push(&upto);
        for t in topics {
            params.push(t);
        }
        let rows = self.tx.query(&stmt, &params).map_err(pg_err)?;
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
        self.lock_log()?;
        let stmt = self.statement(&format!(
            "INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) \
             VALUES ($1, $2, $3, $4) RETURNING id"
        ))?;
        let mut ids = Vec::with_capacity(events.len());
        for e in events {
            match self.tx.query_one(
                &stmt,
                &[&e.originator_id, &e.originator_version, &e.topic, &e.state],
            ) {
                Ok(row) => ids.push(row.try_get(0).map_err(pg_err)?),
                Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    return Err(Error::Conflict {
                        id: e.originator_id,
                        version: e.originator_version,
                    })
                }
                Err(err) => return Err(pg_err(err)),
            }
        }
        Ok(ids)
    }

    fn lock_log(&mut self) -> Result<()> {
        self.tx
            .batch_execute(&format!("LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE"))
            .map_err(pg_err)
    }

    fn notifications(
        &mut self,
        after: i64,
        upto: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let stmt = self.statement(&format!(
            "SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} \
             WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3"
        ))?;
        let rows = self
            .tx
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
        let stmt = self.statement(&format!(
            "SELECT COALESCE(MAX(id), 0)::bigint FROM {EVENTS_TABLE}"
        ))?;
        self.tx
            .query_one(&stmt, &[])
            .and_then(|r| r.try_get(0))
            .map_err(pg_err)
    }

    fn execute(&mut self, sql: &str, params: &[Sql]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        let bound = bind_all(&stmt, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref()).collect();
        self.tx.execute(&stmt, &refs).map_err(pg_err)
    }

    fn query(&mut self, sql: &str, params: &[Sql], kinds: &[Kind]) -> Result<Vec<Vec<Sql>>> {
        let stmt = self.statement(sql)?;
        let bound = bind_all(&stmt, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref()).collect();
        let rows = self.tx.query(&stmt, &refs).map_err(pg_err)?;
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

    fn execute_batch(&mut self, sql: &str) -> Result<()> {
        self.tx.batch_execute(sql).map_err(pg_err)
    }

    fn table_exists(&mut self, table: &str) -> Result<bool> {
        // pg_tables, not to_regclass: it sees tables another transaction
        // committed after this one started (concurrent starters).
        let row = self
            .tx
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1",
                &[&table],
            )
            .map_err(pg_err)?;
        Ok(row.try_get::<_, i64>(0).map_err(pg_err)? > 0)
    }
}
