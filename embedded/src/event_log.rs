//! The whole event log for replay: `events.sqlite3` in commit order (one segment; the
//! position is the last row's `seq`).

use crate::event_row::{self, event_columns, EventRow};
use crate::event_store::EmbeddedEventStore;
use crate::EmbeddedError;
use async_trait::async_trait;
use messaging_events::{EventLog, LogPage, StoreError};
use rusqlite::{params, Connection};

const PAGE: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
);

const COUNT: &str = "SELECT COALESCE(MAX(seq), 0) FROM events";

#[async_trait]
impl EventLog for EmbeddedEventStore {
    fn segments(&self) -> u32 {
        1
    }

    async fn estimated_count(&self) -> Result<Option<u64>, StoreError> {
        // seq counts up from 1 and events are never deleted, so the last seq is the count.
        let count = self
            .readers
            .read(|conn: &Connection| -> Result<i64, EmbeddedError> {
                Ok(conn.query_row(COUNT, [], |row| row.get(0))?)
            })
            .await?;
        Ok(Some(u64::try_from(count).unwrap_or(0)))
    }

    async fn read_page(
        &self,
        _segment: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, StoreError> {
        let after: i64 = match after {
            None => 0,
            Some(position) => position.parse().map_err(|_| {
                StoreError::Corrupt(format!("not an event log position: {position:?}"))
            })?,
        };
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .readers
            .scan(move |conn| page(conn, after, limit_sql))
            .await?;
        let last = rows.last().map(|(seq, _)| *seq);
        let full = rows.len() == limit;
        let events = rows.into_iter().map(|(_, event)| event).collect();
        // A short page is the end of the log as of now; events appended later reach the new
        // generation through the live projector (see projections::replay).
        let next = match last {
            Some(seq) if full => Some(seq.to_string()),
            _ => None,
        };
        Ok(LogPage { events, next })
    }
}

fn page(
    conn: &Connection,
    after: i64,
    limit: i64,
) -> Result<Vec<(u64, messaging_events::RecordedEvent)>, EmbeddedError> {
    let rows = conn
        .prepare_cached(PAGE)?
        .query_map(params![after, limit], event_row::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|row: EventRow| {
            let seq = row.seq()?;
            row.decode().map(|event| (seq, event))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_plan::{assert_indexed, events_db};

    #[test]
    fn pages_walk_the_primary_key() {
        let conn = events_db();
        assert_indexed(&conn, PAGE);
    }
}
