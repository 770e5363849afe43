//! A work queue in `events.sqlite3`, shaped after SQS.

use crate::convert::{limit_to_sql, micros, to_json};
use crate::writer::Writer;
use crate::{signal, EmbeddedError};
use async_trait::async_trait;
use messaging_events::{Clock, QueueError, QueueMessage, SystemClock, WorkItem, WorkQueue};
use rusqlite::{params, Connection};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// One named queue; all queues share the events file's writer, so an enqueue commits in order
/// with the appends around it.
pub struct EmbeddedQueue {
    name: String,
    writer: Arc<Writer>,
    enqueued: Arc<Notify>,
}

impl EmbeddedQueue {
    pub(crate) fn new(name: &str, writer: Arc<Writer>) -> Self {
        Self {
            name: name.to_string(),
            writer,
            enqueued: Arc::new(Notify::new()),
        }
    }

    /// Notified after every committed enqueue (all current waiters, plus one stored permit).
    pub fn enqueued(&self) -> Arc<Notify> {
        Arc::clone(&self.enqueued)
    }
}

#[async_trait]
impl WorkQueue for EmbeddedQueue {
    async fn enqueue(&self, items: Vec<WorkItem>) -> Result<(), QueueError> {
        if items.is_empty() {
            return Ok(());
        }
        let bodies = items
            .iter()
            .map(|item| to_json("work item", item))
            .collect::<Result<Vec<_>, _>>()?;
        let queue = self.name.clone();
        self.writer
            .write(move |conn| insert(conn, &queue, &bodies))
            .await?;
        signal::wake(&self.enqueued);
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let queue = self.name.clone();
        let visibility = micros(visibility);
        let messages = self
            .writer
            .write(move |conn| receive(conn, &queue, max, visibility))
            .await?;
        Ok(messages)
    }

    async fn ack(&self, receipts: Vec<String>) -> Result<(), QueueError> {
        let receipts = receipts
            .iter()
            .map(|receipt| Receipt::parse(receipt))
            .collect::<Result<Vec<_>, _>>()?;
        if receipts.is_empty() {
            return Ok(());
        }
        let queue = self.name.clone();
        self.writer
            .write(move |conn| delete(conn, &queue, &receipts))
            .await?;
        Ok(())
    }
}

/// Identifies one reception of a message. Like an SQS receipt handle it goes stale when the
/// message is received again, so a slow consumer cannot delete work someone else now owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Receipt {
    id: i64,
    receive_count: i64,
}

impl Receipt {
    fn encode(self) -> String {
        format!("{}:{}", self.id, self.receive_count)
    }

    fn parse(text: &str) -> Result<Receipt, QueueError> {
        let malformed = || QueueError::Malformed(format!("receipt {text:?} was not issued here"));
        let (id, count) = text.split_once(':').ok_or_else(malformed)?;
        Ok(Receipt {
            id: id.parse().map_err(|_| malformed())?,
            receive_count: count.parse().map_err(|_| malformed())?,
        })
    }
}

fn insert(conn: &Connection, queue: &str, bodies: &[String]) -> Result<(), EmbeddedError> {
    let now = SystemClock.now().micros();
    let mut statement = conn.prepare_cached(
        "INSERT INTO queue_messages (queue, body, visible_at, receive_count)
         VALUES (?1, ?2, ?3, 0)",
    )?;
    for body in bodies {
        statement.execute(params![queue, body, now])?;
    }
    Ok(())
}

/// Walks the queue's index in id order, skipping the in-flight messages at its head.
const VISIBLE: &str = "SELECT id, body, receive_count FROM queue_messages
     WHERE queue = ?1 AND visible_at <= ?2 ORDER BY id LIMIT ?3";

fn receive(
    conn: &Connection,
    queue: &str,
    max: usize,
    visibility: i64,
) -> Result<Vec<QueueMessage>, EmbeddedError> {
    let now = SystemClock.now().micros();
    let rows = conn
        .prepare_cached(VISIBLE)?
        .query_map(params![queue, now, limit_to_sql(max)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut messages = Vec::with_capacity(rows.len());
    for (id, body, previous_count) in rows {
        let receipt = Receipt {
            id,
            receive_count: previous_count + 1,
        };
        match serde_json::from_str::<WorkItem>(&body) {
            Ok(item) => {
                hide(conn, receipt, now.saturating_add(visibility))?;
                messages.push(QueueMessage {
                    receipt: receipt.encode(),
                    receive_count: u32::try_from(receipt.receive_count).unwrap_or(u32::MAX),
                    item,
                });
            }
            // One undecodable message must not block the queue behind it forever: park it
            // where an operator can inspect it, as an SQS redrive policy would.
            Err(error) => {
                tracing::error!(queue, id, %error, "undecodable queue message moved to dead_letters");
                dead_letter(conn, receipt, &error.to_string(), now)?;
            }
        }
    }
    Ok(messages)
}

fn hide(conn: &Connection, receipt: Receipt, until: i64) -> Result<(), EmbeddedError> {
    conn.prepare_cached(
        "UPDATE queue_messages SET visible_at = ?2, receive_count = ?3 WHERE id = ?1",
    )?
    .execute(params![receipt.id, until, receipt.receive_count])?;
    Ok(())
}

fn dead_letter(
    conn: &Connection,
    receipt: Receipt,
    reason: &str,
    now: i64,
) -> Result<(), EmbeddedError> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (id, queue, body, receive_count, reason, dead_at)
         SELECT id, queue, body, ?2, ?3, ?4 FROM queue_messages WHERE id = ?1",
    )?
    .execute(params![receipt.id, receipt.receive_count, reason, now])?;
    conn.prepare_cached("DELETE FROM queue_messages WHERE id = ?1")?
        .execute(params![receipt.id])?;
    Ok(())
}

fn delete(conn: &Connection, queue: &str, receipts: &[Receipt]) -> Result<(), EmbeddedError> {
    let mut statement = conn.prepare_cached(
        "DELETE FROM queue_messages WHERE id = ?1 AND receive_count = ?2 AND queue = ?3",
    )?;
    for receipt in receipts {
        statement.execute(params![receipt.id, receipt.receive_count, queue])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_plan::{assert_indexed, events_db};

    #[test]
    fn receive_walks_the_queue_index_in_order() {
        assert_indexed(&events_db(), VISIBLE);
    }

    #[test]
    fn receipts_round_trip() {
        let receipt = Receipt {
            id: 42,
            receive_count: 3,
        };
        assert_eq!(Receipt::parse(&receipt.encode()).unwrap(), receipt);
    }
}
