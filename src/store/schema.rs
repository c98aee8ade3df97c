//! Names and DDL of the tables the event store owns: the tracker's events
//! table and the projectors' tracking tables, exactly as
//! eventsourcing_sqlalchemy creates them. (The view tables belong to the
//! migrations, see `migrations/`.)

use crate::error::Result;
use crate::store::{Backend, Tx};

/// The application whose events the projectors follow.
pub const APPLICATION_NAME: &str = "WorkflowTracker";

/// `<application name lower-cased>_events`.
pub const EVENTS_TABLE: &str = "workflowtracker_events";

/// The tracking tables of the four projectors.
pub const TRACKING_TABLES: [&str; 4] = [
    "jobaccounting_tracking",
    "jobprogress_tracking",
    "workflowprogress_tracking",
    "workflowanalytics_tracking",
];

fn events_ddl(backend: Backend) -> String {
    let t = EVENTS_TABLE;
    match backend {
        Backend::Sqlite => format!(
            "CREATE TABLE IF NOT EXISTS {t} (\n\tid INTEGER NOT NULL, \n\toriginator_id BINARY(16) NOT NULL, \n\t\
             originator_version INTEGER NOT NULL, \n\ttopic TEXT NOT NULL, \n\tstate BLOB NOT NULL, \n\t\
             PRIMARY KEY (id)\n);\n\
             CREATE UNIQUE INDEX IF NOT EXISTS {t}_aggregate_idx ON {t} (originator_id, originator_version);"
        ),
        Backend::Postgres => format!(
            "CREATE TABLE IF NOT EXISTS {t} (id BIGSERIAL NOT NULL, originator_id UUID NOT NULL, \
             originator_version BIGINT NOT NULL, topic TEXT NOT NULL, state BYTEA NOT NULL, \
             CONSTRAINT {t}_pkey PRIMARY KEY (id));\n\
             CREATE UNIQUE INDEX IF NOT EXISTS {t}_aggregate_idx ON {t} (originator_id, originator_version);"
        ),
    }
}

/// DDL of one tracking table.
pub fn tracking_ddl(backend: Backend, table: &str) -> String {
    let id_type = match backend {
        Backend::Sqlite => "INTEGER",
        Backend::Postgres => "BIGINT",
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n\tapplication_name VARCHAR(32) NOT NULL, \n\t\
         notification_id {id_type}, \n\tPRIMARY KEY (application_name)\n);"
    )
}

/// Creates the events table and the tracking tables where missing.
pub fn ensure_event_tables(tx: &mut dyn Tx) -> Result<()> {
    let backend = tx.backend();
    if backend == Backend::Postgres {
        // Several processes may start at once; create the tables once.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('biomero_event_tables'))",
            &[],
        )?;
    }
    if !tx.table_exists(EVENTS_TABLE)? {
        tx.execute_batch(&events_ddl(backend))?;
    }
    for table in TRACKING_TABLES {
        if !tx.table_exists(table)? {
            tx.execute_batch(&tracking_ddl(backend, table))?;
        }
    }
    Ok(())
}
