//! The event store port on SQLite.

use crate::convert::to_sql;
use crate::event_row::{self, event_columns, EventRow};
use crate::readers::Readers;
use crate::writer::Writer;
use crate::{append, signal, EmbeddedError};
use async_trait::async_trait;
use messaging_events::{
    AppendError, AppendRequest, Clock, EventStore, RecordedEvent, StoreError, StreamId, SystemClock,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Arc;
use tokio::sync::Notify;

/// The event store and its change feed, in `events.sqlite3`.
pub struct EmbeddedEventStore {
    pub(crate) writer: Arc<Writer>,
    pub(crate) readers: Arc<Readers>,
    appended: Arc<Notify>,
}

impl EmbeddedEventStore {
    pub(crate) fn new(writer: Arc<Writer>, readers: Arc<Readers>) -> Self {
        Self {
            writer,
            readers,
            appended: Arc::new(Notify::new()),
        }
    }

    /// Notified after every committed append (all current waiters, plus one stored permit).
    pub fn appended(&self) -> Arc<Notify> {
        Arc::clone(&self.appended)
    }
}

#[async_trait]
impl EventStore for EmbeddedEventStore {
    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, AppendError> {
        request.validate()?;
        // The time is taken on the writer thread so that recorded_at follows commit order.
        let recorded = self
            .writer
            .write(move |conn| append::append(conn, &request, SystemClock.now()))
            .await?;
        signal::wake(&self.appended);
        Ok(recorded)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        to_version: Option<u64>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.clone();
        let to = to_version.map_or(i64::MAX, to_sql);
        let events = self
            .readers
            .read(move |conn| read_range(conn, &stream, to_sql(after_version), to))
            .await?;
        Ok(events)
    }

    async fn last_event(&self, stream: &StreamId) -> Result<Option<RecordedEvent>, StoreError> {
        let stream = stream.clone();
        let event = self.readers.read(move |conn| last(conn, &stream)).await?;
        Ok(event)
    }

    /// One search of the (stream, version) index: no table row read, no event decoded.
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let stream = stream.clone();
        let version = self
            .readers
            .read(move |conn| append::current_version(conn, &stream))
            .await?;
        Ok(version)
    }

    async fn get_claim(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let key = key.to_string();
        let value = self
            .readers
            .read(move |conn| append::claim_value(conn, &key))
            .await?;
        Ok(value)
    }
}

const READ_RANGE: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE stream = ?1 AND version > ?2 AND version <= ?3 ORDER BY version"
);

/// One row via the (stream, version) index, however long the stream.
const LAST_EVENT: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE stream = ?1 ORDER BY version DESC LIMIT 1"
);

fn read_range(
    conn: &Connection,
    stream: &StreamId,
    after: i64,
    to: i64,
) -> Result<Vec<RecordedEvent>, EmbeddedError> {
    let rows = conn
        .prepare_cached(READ_RANGE)?
        .query_map(params![stream.as_str(), after, to], event_row::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(EventRow::decode).collect()
}

fn last(conn: &Connection, stream: &StreamId) -> Result<Option<RecordedEvent>, EmbeddedError> {
    let row = conn
        .prepare_cached(LAST_EVENT)?
        .query_row(params![stream.as_str()], event_row::from_row)
        .optional()?;
    row.map(EventRow::decode).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_plan::{assert_indexed, events_db};

    #[test]
    fn stream_reads_use_the_stream_version_index() {
        let conn = events_db();
        assert_indexed(&conn, READ_RANGE);
        assert_indexed(&conn, LAST_EVENT);
    }
}
