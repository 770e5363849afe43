//! The change feed: the events table in `seq` order, resumed from each consumer's checkpoint.

use crate::convert::{limit_to_sql, to_sql};
use crate::event_row::{self, event_columns, EventRow};
use crate::{EmbeddedError, EmbeddedEventStore};
use async_trait::async_trait;
use messaging_events::{ChangeFeed, FeedError, FeedPage, FeedRecord};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

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

    async fn poll_types(
        &self,
        consumer: &str,
        types: &[&str],
        max: usize,
    ) -> Result<FeedPage, FeedError> {
        if max == 0 || types.is_empty() {
            return Ok(FeedPage::default());
        }
        let consumer = consumer.to_string();
        let types: Vec<String> = types.iter().map(|name| name.to_string()).collect();
        let page = self
            .readers
            .scan(move |conn| poll_types(conn, &consumer, &types, max))
            .await?;
        Ok(page)
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

const HEAD: &str = "SELECT max(seq) FROM events";

/// The records of `types` in `(after, up_to]`, at most `max` of them.
fn poll_types_sql(types: usize) -> String {
    let placeholders: Vec<String> = (0..types).map(|i| format!("?{}", i + 4)).collect();
    format!(
        "SELECT {} FROM events WHERE seq > ?1 AND seq <= ?2 AND type IN ({}) ORDER BY seq LIMIT ?3",
        event_columns!(),
        placeholders.join(", ")
    )
}

fn checkpoint(conn: &Connection, consumer: &str) -> Result<i64, EmbeddedError> {
    Ok(conn
        .prepare_cached(CHECKPOINT)?
        .query_row(params![consumer], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

fn poll_types(
    conn: &Connection,
    consumer: &str,
    types: &[String],
    max: usize,
) -> Result<FeedPage, EmbeddedError> {
    let after = checkpoint(conn, consumer)?;
    // Every row up to the head seen now is committed (one writer assigns `seq` in commit
    // order), so the rows skipped below it are skipped for good.
    let head: Option<i64> = conn.prepare_cached(HEAD)?.query_row([], |row| row.get(0))?;
    let Some(head) = head.filter(|head| *head > after) else {
        return Ok(FeedPage::default());
    };
    let mut values = vec![
        Value::Integer(after),
        Value::Integer(head),
        Value::Integer(limit_to_sql(max)),
    ];
    values.extend(types.iter().cloned().map(Value::Text));
    let rows = conn
        .prepare_cached(&poll_types_sql(types.len()))?
        .query_map(params_from_iter(values), event_row::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let records = rows
        .into_iter()
        .map(|row: EventRow| {
            Ok(FeedRecord {
                position: row.seq()?,
                event: row.decode()?,
            })
        })
        .collect::<Result<Vec<_>, EmbeddedError>>()?;
    // A full page stops at its last record; a short one read everything up to the head.
    let read_to = match records.last() {
        Some(last) if records.len() == max => last.position,
        _ => u64::try_from(head).unwrap_or(0),
    };
    Ok(FeedPage {
        records,
        read_to: Some(read_to),
    })
}

fn poll(conn: &Connection, consumer: &str, max: usize) -> Result<Vec<FeedRecord>, EmbeddedError> {
    let checkpoint = checkpoint(conn, consumer)?;
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
        assert_indexed(&conn, HEAD);
        assert_indexed(&conn, &poll_types_sql(2));
    }
}
