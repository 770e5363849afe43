//! Copies a database file's write-ahead log back into the file, off the commit path.
//!
//! SQLite's default checkpoints run inside whichever commit crosses 1,000 WAL pages, so one
//! commit in many carries the copy and the fsync of the whole file: under load that was a
//! tenth of the read-model writer's time and the tail of its latency. Here a thread of its own
//! runs passive checkpoints, which never block the writer or the readers, and, once the log is
//! long, a restart that may hold the writer for up to `RESTART_WAIT` (see [`checkpoint`]).

use crate::connection::{open_checkpointer, BUSY_TIMEOUT};
use crate::EmbeddedError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the log is copied back: often enough that it stays a few MB under load.
const PERIOD: Duration = Duration::from_millis(100);
/// The log length (4 KiB frames, so 32 MiB) from which a checkpoint also restarts the log.
const RESTART_FRAMES: i64 = 8_192;
/// How long a restart waits for the writer's transaction and the readers' snapshots to end.
const RESTART_WAIT: Duration = Duration::from_millis(5);

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
        let file = name.to_string();
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
                    let started = std::time::Instant::now();
                    match checkpoint(&conn, RESTART_FRAMES) {
                        // Its duration, to set beside the stages' lag (README, "Operating it").
                        Ok(Pass { frames, restarted }) => tracing::debug!(
                            file,
                            frames,
                            restarted,
                            ms = started.elapsed().as_secs_f64() * 1_000.0,
                            "checkpointed"
                        ),
                        Err(error) => tracing::debug!(file, %error, "checkpoint did not run"),
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

/// Copies what it can without waiting; once the log is long, also waits for the readers to
/// leave it, so that the writer starts the log over instead of appending to it forever.
///
/// A passive checkpoint alone never lets the log restart under steady load: the writer only
/// restarts it when no reader holds a snapshot inside it, and with reads every few microseconds
/// one always does (a 10-minute run grew a 12 GB log in 3 minutes). The restart checkpoint
/// makes new readers read the database file and holds new writes for the moment that takes;
/// the passive pass before it has already copied almost everything.
fn checkpoint(conn: &Connection, restart_frames: i64) -> rusqlite::Result<Pass> {
    let log_frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
    let mut restarted = false;
    if log_frames >= restart_frames {
        // It holds the write lock while it waits for readers: wait briefly, or give up until
        // the next round, rather than stall the writer (SQLite's busy handler backs off in
        // steps of up to 100 ms: a 5 s timeout here cost 330 ms per restart).
        conn.busy_timeout(RESTART_WAIT)?;
        // Its first column is 1 when the wait ran out (the writer or a reader was still in the
        // log): nothing failed, but the log goes on growing until a later round succeeds.
        let busy = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
            row.get::<_, i64>(0)
        });
        conn.busy_timeout(BUSY_TIMEOUT)?;
        restarted = busy? == 0;
    }
    Ok(Pass {
        frames: log_frames,
        restarted,
    })
}

/// What one checkpoint found and did.
struct Pass {
    /// The log's length in frames when the pass began.
    frames: i64,
    /// Whether the log was started over (long enough, and the wait for it did not run out).
    restarted: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::open_reader;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Writes 600 commits of one 4 KiB row while two reader threads keep read transactions
    /// open almost all the time (as a busy server's point reads do between them), checkpointing
    /// every 10 commits; returns the log file's largest size.
    fn largest_log(restart_frames: i64) -> u64 {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.sqlite3");
        let writer = Connection::open(&path).expect("open");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 PRAGMA synchronous = OFF;
                 CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB NOT NULL);",
            )
            .expect("schema");
        let checkpointer = open_checkpointer(&path).expect("checkpointer");
        // Durability is not what this test is about; syncing would only make it slow.
        checkpointer
            .pragma_update(None, "synchronous", "OFF")
            .expect("no sync");
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let reader = open_reader(&path).expect("reader");
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        reader.execute_batch("BEGIN").expect("begin");
                        let _: Option<i64> = reader
                            .query_row("SELECT max(id) FROM t", [], |row| row.get(0))
                            .expect("read");
                        std::thread::sleep(Duration::from_micros(500));
                        reader.execute_batch("COMMIT").expect("end");
                    }
                })
            })
            .collect();
        let wal = path.with_extension("sqlite3-wal");
        let mut largest = 0;
        for i in 0..600 {
            writer
                .execute("INSERT INTO t (data) VALUES (zeroblob(4000))", [])
                .expect("write");
            if i % 10 == 0 {
                checkpoint(&checkpointer, restart_frames).expect("checkpoint");
            }
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.join().expect("reader thread");
        }
        largest
    }

    #[test]
    fn given_readers_that_never_pause_then_the_log_still_starts_over() {
        // Passive checkpoints only: the log keeps every commit (600 × 4 KiB and more).
        let passive_only = largest_log(i64::MAX);
        // With the restart: bounded by what is written between two checkpoints.
        let restarting = largest_log(64);
        assert!(
            passive_only > 2_400_000,
            "passive only: {passive_only} bytes"
        );
        assert!(restarting < 1_000_000, "restarting: {restarting} bytes");
    }
}
