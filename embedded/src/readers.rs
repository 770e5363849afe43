//! Reading connections: a pool of them per database file.

use crate::connection::open_reader;
use crate::EmbeddedError;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Idle connections kept for reuse. Opening one costs a file open, a schema parse and a cold
/// page cache, so the pool keeps as many as are ever used at once (one per runtime thread for
/// point reads, plus the blocking threads of scans) rather than reopening under load.
const MAX_IDLE: usize = 64;

/// A pool of reading connections to one database file.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// A pool for the file at `path` (which the writer has already created).
    pub(crate) fn new(path: PathBuf) -> Arc<Readers> {
        Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs a short read (a few index lookups, a page of rows) on the calling thread.
    ///
    /// In WAL mode a reader never waits for the writer, and a point read on a warm page cache
    /// takes microseconds: less than handing it to a blocking thread and back, which cost the
    /// send path a third of its CPU in context switches when every read took that hop.
    pub(crate) async fn read<F, T, E>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E>,
        E: From<EmbeddedError>,
    {
        let conn = self.take()?;
        let result = work(&conn);
        self.give_back(conn);
        result
    }

    /// Runs a long read (a scan of thousands of rows) in the blocking thread pool, so that it
    /// does not hold up the requests sharing its runtime thread.
    pub(crate) async fn scan<F, T, E>(self: &Arc<Self>, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<EmbeddedError> + Send + 'static,
    {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = work(&conn);
            readers.give_back(conn);
            result
        })
        .await
        .unwrap_or_else(|e| Err(EmbeddedError::Task(e.to_string()).into()))
    }

    fn take(&self) -> Result<Connection, EmbeddedError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}
