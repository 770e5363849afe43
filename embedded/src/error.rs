use messaging_events::{AppendError, FeedError, QueueError, StoreError};
use messaging_projections::ReadStoreError;
use std::path::PathBuf;

/// A failure of the embedded adapter; the port implementations map it to their own errors.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file in the data directory could not be listed or removed.
    #[error("{path}: {source}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database writer thread could not be started.
    #[error("cannot start the database writer thread: {0}")]
    Thread(std::io::Error),
    /// A database file cannot be set up as durability requires.
    #[error("database setup: {0}")]
    Setup(String),
    /// SQLite failed (busy, I/O error, full disk, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A write batch did not commit; nothing of it was written.
    #[error("write not committed: {0}")]
    Write(String),
    /// The writer thread is gone, so nothing can be written any more.
    #[error("the database writer has stopped")]
    WriterStopped,
    /// A blocking database task was cancelled or panicked.
    #[error("database task failed: {0}")]
    Task(String),
    /// The database was created by a newer build with a schema this build does not know.
    #[error("{path} has schema version {found}; this build knows up to {known}")]
    SchemaFromTheFuture {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// Stored data this build cannot read.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl EmbeddedError {
    /// A stored value that cannot be decoded.
    pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Self {
        EmbeddedError::Corrupt(format!("{what}: {detail}"))
    }
}

// Everything but corrupt data is worth retrying: SQLite failures here are a busy database, a full
// disk or an I/O error, none of which a caller can fix by changing its request.

impl From<EmbeddedError> for StoreError {
    fn from(error: EmbeddedError) -> Self {
        match error {
            EmbeddedError::Corrupt(detail) => StoreError::Corrupt(detail),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<EmbeddedError> for AppendError {
    fn from(error: EmbeddedError) -> Self {
        AppendError::Store(error.into())
    }
}

impl From<EmbeddedError> for FeedError {
    fn from(error: EmbeddedError) -> Self {
        FeedError::Unavailable(error.to_string())
    }
}

impl From<EmbeddedError> for QueueError {
    fn from(error: EmbeddedError) -> Self {
        match error {
            EmbeddedError::Corrupt(detail) => QueueError::Malformed(detail),
            other => QueueError::Unavailable(other.to_string()),
        }
    }
}

impl From<EmbeddedError> for ReadStoreError {
    fn from(error: EmbeddedError) -> Self {
        match error {
            EmbeddedError::Corrupt(detail) => ReadStoreError::Corrupt(detail),
            other => ReadStoreError::Unavailable(other.to_string()),
        }
    }
}
