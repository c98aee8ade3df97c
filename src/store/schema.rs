//! Names, DDL and shape check of the tables the event store owns: the
//! tracker's events table and the projectors' tracking tables, exactly as
//! eventsourcing_sqlalchemy creates them (docs/storage.md). The store does
//! not know which projectors there are: their tracking tables' names are
//! given by the caller. (The view tables belong to the migrations.)

use crate::error::Result;
use crate::store::catalog::{self, ColumnShape};
use crate::store::{Backend, Tx};

/// The application whose events the projectors follow.
pub const APPLICATION_NAME: &str = "WorkflowTracker";

/// `<application name lower-cased>_events`.
pub const EVENTS_TABLE: &str = "workflowtracker_events";

const fn col(
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
    not_null: bool,
    key: bool,
) -> ColumnShape {
    ColumnShape {
        name,
        sqlite,
        postgres,
        not_null,
        key,
    }
}

/// The events table's columns, as eventsourcing_sqlalchemy makes them.
pub const EVENTS_COLUMNS: [ColumnShape; 5] = [
    col("id", "INTEGER", "bigint", true, true),
    col("originator_id", "BINARY(16)", "uuid", true, false),
    col("originator_version", "INTEGER", "bigint", true, false),
    col("topic", "TEXT", "text", true, false),
    col("state", "BLOB", "bytea", true, false),
];

/// A tracking table's columns.
pub const TRACKING_COLUMNS: [ColumnShape; 2] = [
    col(
        "application_name",
        "VARCHAR(32)",
        "character varying(32)",
        true,
        true,
    ),
    col("notification_id", "INTEGER", "bigint", false, false),
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

/// The differences between the existing events table and `tracking`
/// tables and BIOMERO's (empty when they match or do not exist yet).
pub fn differences(tx: &mut dyn Tx, tracking: &[&str]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if catalog::table_present(tx, EVENTS_TABLE)? {
        out.extend(catalog::differences(tx, EVENTS_TABLE, EVENTS_COLUMNS)?);
    }
    for t in tracking {
        if catalog::table_present(tx, t)? {
            out.extend(catalog::differences(tx, t, TRACKING_COLUMNS)?);
        }
    }
    Ok(out)
}

/// Creates the events table and the `tracking` tables where missing.
pub fn ensure_event_tables(tx: &mut dyn Tx, tracking: &[&str]) -> Result<()> {
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
    for table in tracking {
        if !tx.table_exists(table)? {
            tx.execute_batch(&tracking_ddl(backend, table))?;
        }
    }
    Ok(())
}
