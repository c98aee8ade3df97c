//! The one error type of biomero_rs. The Python layer maps each variant to a
//! Python exception in one place (`python/errors.rs`).

use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No events are stored for this aggregate id.
    #[error("aggregate not found: {0}")]
    NotFound(Uuid),

    /// A bad argument value (Python `ValueError`); the text names the argument.
    #[error("{0}")]
    InvalidValue(String),

    /// A bad argument type (Python `TypeError`); the text names the argument.
    #[error("{0}")]
    InvalidType(String),

    /// Another writer stored the same aggregate version first. Internal: the
    /// tracker reloads and retries on it.
    #[error("version conflict: aggregate {id} version {version} was written by another writer")]
    Conflict { id: Uuid, version: i64 },

    /// Retries ran out on version conflicts.
    #[error("{0}")]
    Concurrency(String),

    /// A connection or server fault. `message` never holds a password.
    #[error("{backend} database error: {message}")]
    Database {
        backend: &'static str,
        message: String,
    },

    /// Stored bytes that are not a valid event of a known shape.
    #[error("cannot decode stored event: {0}")]
    Decode(String),

    /// The caller's progress callback asked to stop.
    #[error("cancelled: {0}")]
    Cancelled(String),

    /// A signal handler asked to stop (Ctrl-C); nothing was committed by
    /// the interrupted transaction.
    #[error("interrupted")]
    Interrupted,

    /// Another rebuild of the same database is running (the text names it:
    /// pid, host, since when).
    #[error("{0}")]
    RebuildRunning(String),

    /// A value that the event codec cannot store exactly.
    #[error("{0}")]
    Encode(String),

    /// Internal: a command could not go in one round trip (it needs a read
    /// first, or the log moved in a way its facts must see); nothing was
    /// written, and the tracker runs it the usual way.
    #[error("the command needs more than one round trip")]
    NotInOneTrip,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn value(msg: impl Into<String>) -> Self {
        Error::InvalidValue(msg.into())
    }

    pub fn type_(msg: impl Into<String>) -> Self {
        Error::InvalidType(msg.into())
    }

    pub fn decode(msg: impl Into<String>) -> Self {
        Error::Decode(msg.into())
    }
}
