//! The change feed: the events table in `seq` order, resumed from each consumer's checkpoint.

use crate::convert::{limit_to_sql, to_sql};
use crate::event_row::{self, event_columns, EventRow};
use crate::{EmbeddedError, EmbeddedEventStore};
use async_trait::async_trait;
use messaging_events::{ChangeFeed, FeedError, FeedRecord};
use rusqlite::{params, Connection, OptionalExtension};

#[async_trait]
impl ChangeFeed for EmbeddedEventStore {
    async fn poll(&self, consumer: &str, max: usize) -> Result<Vec<FeedRecord>, FeedError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let consumer = consumer.to_string();
        let records = self
            .readers
            .scan(move |conn| poll(conn, &consumer, max))
            .await?;
        Ok(records)
    }

    async fn commit(&self, consumer: &str, position: u64) -> Result<(), FeedError> {
        let consumer = consumer.to_string();
        let position = to_sql(position);
        self.writer
            .write(move |conn| -> Result<(), EmbeddedError> {
                // max() keeps a late or repeated commit of an older batch from moving it back.
                conn.prepare_cached(
                    "INSERT INTO checkpoints (consumer, position) VALUES (?1, ?2)
                     ON CONFLICT (consumer) DO UPDATE SET position = max(position, excluded.position)",
                )?
                .execute(params![consumer, position])?;
                Ok(())
            })
            .await?;
        Ok(())
    }
}

const CHECKPOINT: &str = "SELECT position FROM checkpoints WHERE consumer = ?1";

const POLL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
);

fn poll(conn: &Connection, consumer: &str, max: usize) -> Result<Vec<FeedRecord>, EmbeddedError> {
    let checkpoint: i64 = conn
        .prepare_cached(CHECKPOINT)?
        .query_row(params![consumer], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let rows = conn
        .prepare_cached(POLL)?
        .query_map(params![checkpoint, limit_to_sql(max)], event_row::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|row: EventRow| {
            Ok(FeedRecord {
                position: row.seq()?,
                event: row.decode()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_plan::{assert_indexed, events_db};

    #[test]
    fn a_poll_reads_from_the_checkpoint_onwards_only() {
        let conn = events_db();
        assert_indexed(&conn, CHECKPOINT);
        assert_indexed(&conn, POLL);
    }
}
