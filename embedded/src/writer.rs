//! The single writer of a database file, committing concurrent writes together.
//!
//! Every write to a file goes through one connection owned by one thread. That keeps the change
//! feed's promise (an event's `seq` is assigned inside the write transaction, so `seq` order is
//! commit order and a reader never sees `seq` N+1 without N) and lets writes that arrive while a
//! commit is syncing share the next commit: one fsync for a whole batch instead of one each.
//! Each write runs in its own savepoint, so a refused write (a conflict, a taken claim) rolls
//! back alone while the rest of its batch commits; its caller only hears back after the commit.

use crate::checkpointer::Checkpointer;
use crate::EmbeddedError;
use rusqlite::{Connection, TransactionBehavior};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Most writes committed in one transaction, so that one commit's latency stays bounded.
const MAX_BATCH: usize = 256;

/// A write waiting for the writer thread.
trait Job: Send {
    /// Runs the write inside its savepoint; `true` keeps its changes.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Reports the outcome once the batch's transaction has committed (`Ok`) or failed.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct WriteJob<F, T, E> {
    work: Option<F>,
    outcome: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Job for WriteJob<F, T, E>
where
    F: FnOnce(&Connection) -> Result<T, E> + Send,
    T: Send,
    E: From<EmbeddedError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A panicking write must not take the writer thread (and every later write) with it.
        match catch_unwind(AssertUnwindSafe(|| work(conn))) {
            Ok(outcome) => {
                let keep = outcome.is_ok();
                self.outcome = Some(outcome);
                keep
            }
            Err(_) => {
                tracing::error!("a database write panicked; it was rolled back");
                false
            }
        }
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let result = match (self.outcome, commit) {
            // A refused write was rolled back whatever happened to the batch: its refusal stands.
            (Some(Err(refused)), _) => Err(refused),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)) | None, Err(reason)) => Err(EmbeddedError::Write(reason).into()),
            (None, Ok(())) => Err(EmbeddedError::Write("the write panicked".into()).into()),
        };
        // The caller may have stopped waiting (a cancelled request); the write stands anyway,
        // as a DynamoDB request in flight would.
        let _ = self.reply.send(result);
    }
}

/// Owns a database file's writing connection on a dedicated thread.
pub(crate) struct Writer {
    jobs: Mutex<Option<mpsc::Sender<Box<dyn Job>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Dropped after the writer thread has finished (fields drop after `Drop::drop`).
    _checkpointer: Checkpointer,
}

impl Writer {
    /// Starts the writer thread for `conn`.
    pub(crate) fn start(name: &str, conn: Connection) -> Result<Writer, EmbeddedError> {
        let path = conn.path().map(std::path::PathBuf::from).ok_or_else(|| {
            EmbeddedError::Setup(format!("the {name} writer's database has no file"))
        })?;
        let checkpointer = Checkpointer::start(name, &path)?;
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("sqlite-writer-{name}"))
            .spawn(move || run(conn, receiver))
            .map_err(EmbeddedError::Thread)?;
        Ok(Writer {
            jobs: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            _checkpointer: checkpointer,
        })
    }

    /// Runs `work` in a write transaction and returns its result once that has committed. If
    /// `work` fails, its changes are rolled back and its error returned.
    pub(crate) async fn write<F, T, E>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<EmbeddedError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(WriteJob {
            work: Some(work),
            outcome: None,
            reply,
        });
        let sent = {
            let jobs = self
                .jobs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok())
        };
        if !sent {
            return Err(EmbeddedError::WriterStopped.into());
        }
        answer
            .await
            .unwrap_or_else(|_| Err(EmbeddedError::WriterStopped.into()))
    }
}

impl Drop for Writer {
    /// Lets the thread commit what is queued and close the connection, so that a reopen of the
    /// same files right after a drop sees every acknowledged write and no lingering writer.
    fn drop(&mut self) {
        let jobs = self.jobs.get_mut().unwrap_or_else(|p| p.into_inner());
        drop(jobs.take());
        let thread = self.thread.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(thread) = thread.take() {
            if thread.join().is_err() {
                tracing::error!("the database writer thread panicked");
            }
        }
    }
}

/// The writer thread: take every job waiting, commit them together, answer them, repeat until
/// every sender is gone.
fn run(mut conn: Connection, jobs: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = commit_batch(&mut conn, &mut batch).map_err(|error| {
            tracing::error!(%error, writes = batch.len(), "a write batch did not commit");
            error.to_string()
        });
        for job in batch {
            job.finish(commit.clone());
        }
    }
}

fn commit_batch(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    // IMMEDIATE takes the write lock up front, so no statement inside can fail with a busy
    // upgrade half-way through the batch. Dropping `tx` on an error rolls everything back.
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let [job] = batch {
        // Alone in its transaction, a write needs no savepoint (which copies every page it
        // touches to a sub-journal): rolling back the transaction rolls back the write.
        return if job.run(&tx) {
            tx.commit()
        } else {
            tx.rollback()
        };
    }
    for job in batch.iter_mut() {
        let savepoint = tx.savepoint()?;
        if job.run(&savepoint) {
            savepoint.commit()?;
        } else {
            // The default drop behaviour of a savepoint is to roll back, then release.
            savepoint.finish()?;
        }
    }
    tx.commit()
}
