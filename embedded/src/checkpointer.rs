//! Copies a database file's write-ahead log back into the file, off the commit path.
//!
//! SQLite's default checkpoints run inside whichever commit crosses 1,000 WAL pages, so one
//! commit in many carries the copy and the fsync of the whole file: under load that was a
//! tenth of the read-model writer's time and the tail of its latency. Here a thread of its own
//! runs passive checkpoints, which never block the writer or the readers.

use crate::connection::open_checkpointer;
use crate::EmbeddedError;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the log is copied back: often enough that it stays a few MB under load.
const PERIOD: Duration = Duration::from_millis(100);

/// A running checkpoint thread; dropping it stops the thread and closes its connection.
pub(crate) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the file at `path`, whose writer has turned automatic checkpoints off.
    pub(crate) fn start(name: &str, path: &Path) -> Result<Checkpointer, EmbeddedError> {
        let conn = open_checkpointer(path)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("sqlite-ckpt-{name}"))
            .spawn(move || {
                let (stopped, wake) = &*signal;
                let mut stopped = stopped.lock().unwrap_or_else(|p| p.into_inner());
                while !*stopped {
                    stopped = wake
                        .wait_timeout(stopped, PERIOD)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    // A busy or failed checkpoint is harmless: the log keeps every commit and
                    // the next round copies it.
                    if let Err(error) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(%error, "checkpoint did not run");
                    }
                }
            })
            .map_err(EmbeddedError::Thread)?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the checkpoint thread panicked");
            }
        }
    }
}
