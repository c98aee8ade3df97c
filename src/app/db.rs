//! The composition root: the one place that opens a database for the
//! tracker, the view classes, the maintenance functions and the CLI.
//!
//! Opening a URL for the first time in a process runs the preflight of the
//! migrations (the tables that exist must be BIOMERO's, checked read-only
//! before anything is created), then the store creates its events and
//! tracking tables (the tracking tables the projection registry names). A
//! [`Lease`] is one user's use of the process's shared store of a URL, given
//! back when it is closed or dropped.

use crate::error::{Error, Result};
use crate::store::{self, EventStore, OpenCheck};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The shared store of `url` (see [`store::open`]), checked and prepared
/// on its first open in this process. Every [`open`] is given back with
/// [`store::release`] (a [`Lease`] does that).
pub fn open(url: &str) -> Result<Arc<dyn EventStore>> {
    let tracking = crate::projections::tracking_tables();
    store::open(
        url,
        &OpenCheck {
            check: &crate::migrations::preflight,
            tracking_tables: &tracking,
        },
    )
}

/// One user's use of the shared store of a URL, released on drop (or at
/// [`Lease::close`]): when no user of this process is left, the store's
/// connections close.
pub struct Lease {
    url: String,
    store: Arc<dyn EventStore>,
    /// What holds the lease, for the error after `close` ("WorkflowTracker").
    holder: &'static str,
    closed: AtomicBool,
}

impl Lease {
    /// Opens the store of `url` (else `SQLALCHEMY_URL`) for `holder`.
    pub fn open(url: Option<&str>, holder: &'static str) -> Result<Lease> {
        let url = store::resolve_url(url)?;
        let store = open(&url)?;
        Ok(Lease {
            url,
            store,
            holder,
            closed: AtomicBool::new(false),
        })
    }

    /// [`Lease::open`], with the view tables brought to the head revision
    /// (the startup path of every tracker with views, view object and
    /// rebuild; see [`crate::migrations::ensure_view_tables_in`]).
    pub fn open_with_views(url: Option<&str>, holder: &'static str) -> Result<Lease> {
        let lease = Lease::open(url, holder)?;
        crate::migrations::ensure_view_tables_in(lease.store.as_ref())?;
        Ok(lease)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store, unless the lease was closed.
    pub fn store(&self) -> Result<&dyn EventStore> {
        if self.is_closed() {
            return Err(Error::value(format!(
                "this {} was closed; make a new one to use the database again",
                self.holder
            )));
        }
        Ok(self.store.as_ref())
    }

    /// The shared store itself (also after `close`).
    pub fn shared(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Gives the store back; later calls of [`Lease::store`] fail. Closing
    /// twice does nothing.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            store::release(&self.url, &self.store);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.close();
    }
}
