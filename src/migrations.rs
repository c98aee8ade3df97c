//! The view tables' schema, from the SQL files in `migrations/`.

use crate::error::Result;
use crate::store::{Backend, Tx};

/// One revision: its id (as Alembic records it) and its SQL per dialect.
pub struct Revision {
    pub id: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub const REVISIONS: &[Revision] = &[Revision {
    id: "baseline_001",
    sqlite: include_str!("../migrations/sqlite/0001_baseline_001.sql"),
    postgres: include_str!("../migrations/postgres/0001_baseline_001.sql"),
}];

impl Revision {
    pub fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

/// Creates the view tables where missing (the baseline revision).
pub fn ensure_view_tables(tx: &mut dyn Tx) -> Result<()> {
    let backend = tx.backend();
    if backend == Backend::Postgres {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('biomero_migrations'))",
            &[],
        )?;
    }
    tx.execute_batch(REVISIONS[0].sql(backend))
}

/// [`ensure_view_tables`] in a transaction of its own.
pub fn ensure_view_tables_in(store: &dyn crate::store::EventStore) -> Result<()> {
    crate::store::write_tx(store, ensure_view_tables)
}

/// Runs the migrations; returns the revisions applied. (The baseline only,
/// until the versioned migrator lands.)
pub fn run(store: &dyn crate::store::EventStore) -> Result<Vec<String>> {
    ensure_view_tables_in(store)?;
    Ok(Vec::new())
}
