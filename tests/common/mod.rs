//! The harness every Rust integration test shares: a fresh database per
//! test on SQLite and, when a server answers at 127.0.0.1:5432 (user
//! postgres, trust auth), on Postgres; the view tables read whole.
#![allow(dead_code)]

use biomero_rs::projections::views::job_accounting::{self, JobViewRow};
use biomero_rs::projections::views::job_progress::{self, JobProgressRow};
use biomero_rs::projections::views::workflow_analytics::{self, TaskExecutionRow};
use biomero_rs::projections::views::workflow_progress::{self, WorkflowProgressRow};
use biomero_rs::store::{self, EventStore, Tx};
use std::sync::Arc;
use uuid::Uuid;

pub const PG_ADMIN: &str =
    "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3";

/// A fresh database for one test, removed afterwards.
pub struct Db {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl Db {
    pub fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:///{}", dir.path().join("biomero.db").display());
        Db {
            url,
            _dir: Some(dir),
            pg_name: None,
        }
    }

    /// A new database on the local Postgres server, or None (with a note)
    /// when no server answers.
    pub fn postgres() -> Option<Db> {
        let mut admin = match postgres::Client::connect(PG_ADMIN, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "Postgres at 127.0.0.1:5432 not reachable ({e}); Postgres variant skipped"
                );
                return None;
            }
        };
        let name = format!("biomero_rs_test_{}", Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        Some(Db {
            url: format!("postgresql://postgres@127.0.0.1:5432/{name}"),
            _dir: None,
            pg_name: Some(name),
        })
    }

    /// SQLite, or Postgres when `pg` (None when no server answers).
    pub fn new(pg: bool) -> Option<Db> {
        if pg {
            Db::postgres()
        } else {
            Some(Db::sqlite())
        }
    }

    /// The database's store, opened by the composition root, with the view
    /// tables at head.
    pub fn store(&self) -> Arc<dyn EventStore> {
        let s = biomero_rs::app::db::open(&self.url).expect("open store");
        biomero_rs::migrations::ensure_view_tables_in(s.as_ref()).expect("view tables");
        s
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        store::close(&self.url);
        if let Some(name) = &self.pg_name {
            if let Ok(mut admin) = postgres::Client::connect(PG_ADMIN, postgres::NoTls) {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// Runs each scenario `fn(&str)` (given the database URL) on SQLite and,
/// when reachable, on Postgres.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn sqlite() {
                let db = $crate::common::Db::sqlite();
                super::$scenario(&db.url);
            }

            #[test]
            fn postgres() {
                if let Some(db) = $crate::common::Db::postgres() {
                    super::$scenario(&db.url);
                }
            }
        }
    )*};
}

/// Every view table, in primary-key order.
#[derive(Debug, PartialEq)]
pub struct Tables {
    pub jobs: Vec<JobViewRow>,
    pub progress: Vec<JobProgressRow>,
    pub workflows: Vec<WorkflowProgressRow>,
    pub tasks: Vec<TaskExecutionRow>,
}

/// Reads every view table in `tx`.
pub fn tables_in(tx: &mut dyn Tx) -> biomero_rs::Result<Tables> {
    Ok(Tables {
        jobs: job_accounting::all_jobs(tx)?,
        progress: job_progress::all_job_progress(tx)?,
        workflows: workflow_progress::all_workflows(tx)?,
        tasks: workflow_analytics::all_task_executions(tx)?,
    })
}

/// Every view table of `s`.
pub fn tables(s: &dyn EventStore) -> Tables {
    store::read_tx(s, tables_in).expect("read tables")
}
