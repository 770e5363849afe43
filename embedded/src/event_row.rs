//! How an event row is read back.

use crate::convert::{from_sql, parse_uuid};
use crate::EmbeddedError;
use messaging_events::{decode_json, RecordedEvent, StreamId, Timestamp};
use rusqlite::Row;

/// The columns [`from_row`] expects, in order; a macro so that queries stay `concat!`ed
/// constants that tests can check the query plans of.
macro_rules! event_columns {
    () => {
        "seq, stream, version, event_id, recorded_at, type, schema_version, data"
    };
}
pub(crate) use event_columns;

/// The raw columns of one event row, decoded later so that a bad row is reported as corrupt
/// rather than as an SQLite error.
pub(crate) struct EventRow {
    seq: i64,
    stream: String,
    version: i64,
    event_id: String,
    recorded_at: i64,
    event_type: String,
    schema_version: i64,
    data: String,
}

/// Reads the [`event_columns`] of a row.
pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: row.get(0)?,
        stream: row.get(1)?,
        version: row.get(2)?,
        event_id: row.get(3)?,
        recorded_at: row.get(4)?,
        event_type: row.get(5)?,
        schema_version: row.get(6)?,
        data: row.get(7)?,
    })
}

impl EventRow {
    /// The global position of the event: its change-feed position.
    pub(crate) fn seq(&self) -> Result<u64, EmbeddedError> {
        from_sql(self.seq)
    }

    /// Decodes the event, upcasting data written with an older schema.
    pub(crate) fn decode(self) -> Result<RecordedEvent, EmbeddedError> {
        let schema_version = u32::try_from(self.schema_version)
            .map_err(|e| EmbeddedError::corrupt("event schema version", e))?;
        let event = decode_json(&self.event_type, schema_version, &self.data)
            .map_err(|e| EmbeddedError::corrupt("event", e))?;
        Ok(RecordedEvent {
            stream: StreamId(self.stream),
            version: from_sql(self.version)?,
            event_id: parse_uuid("event id", &self.event_id)?,
            recorded_at: Timestamp(self.recorded_at),
            event,
        })
    }
}
