//! The embedded adapter: the event store, change feed, work queues and read models on SQLite,
//! for the local server and tests. It keeps the semantics of the DynamoDB/SQS adapter (same
//! limits, same conflicts, at-least-once delivery) so the same behavioural tests pass on both.
//!
//! Two files live in the data directory: `events.sqlite3` (events, claims, feed checkpoints and
//! queues: everything the write side needs, so an append and an enqueue share one writer) and
//! `read.sqlite3` (the read models, which replay can rebuild from the events alone). Both run
//! in WAL mode with `synchronous=FULL`: a write is durable before its caller hears "ok".
//!
//! `appended()` and `enqueued()` hand out [`tokio::sync::Notify`]s that are signalled after each
//! commit: every task waiting at that moment wakes, and one permit is stored so a task that
//! polled just before the commit and waits just after it does not sleep through it.

mod append;
mod checkpointer;
mod connection;
mod convert;
mod error;
mod event_log;
mod event_row;
mod event_store;
mod feed;
mod generations;
#[cfg(test)]
mod query_plan;
mod queue;
mod read_store;
mod readers;
mod schema;
mod signal;
mod writer;

pub use error::EmbeddedError;
pub use event_store::EmbeddedEventStore;
pub use generations::EmbeddedCatalog;
pub use queue::EmbeddedQueue;
pub use read_store::EmbeddedReadStore;

use connection::CacheSize;
use readers::Readers;
use std::path::Path;
use std::sync::Arc;
use writer::Writer;

/// Every port of the embedded adapter, opened on one data directory.
#[derive(Clone)]
pub struct Embedded {
    /// The event store and its change feed.
    pub events: Arc<EmbeddedEventStore>,
    /// The queue of accepted direct messages (`direct`).
    pub direct_queue: Arc<EmbeddedQueue>,
    /// The queue of accepted group messages (`group`).
    pub group_queue: Arc<EmbeddedQueue>,
    /// The read models.
    pub read: Arc<EmbeddedReadStore>,
}

impl Embedded {
    /// Opens (creating if missing) the data directory and its two database files.
    ///
    /// Blocking: it does file I/O and schema setup; call it at startup.
    pub fn open(data_dir: &Path) -> Result<Embedded, EmbeddedError> {
        std::fs::create_dir_all(data_dir).map_err(|source| EmbeddedError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;

        let events_path = data_dir.join("events.sqlite3");
        let events_conn = connection::open_writer(&events_path, &schema::EVENTS, CacheSize::Small)?;
        let events_writer = Arc::new(Writer::start("events", events_conn)?);
        let events_readers = Readers::new(events_path);

        Ok(Embedded {
            events: Arc::new(EmbeddedEventStore::new(
                Arc::clone(&events_writer),
                events_readers,
            )),
            direct_queue: Arc::new(EmbeddedQueue::new("direct", Arc::clone(&events_writer))),
            group_queue: Arc::new(EmbeddedQueue::new("group", events_writer)),
            read: Arc::new(EmbeddedReadStore::open(&data_dir.join("read.sqlite3"))?),
        })
    }
}
