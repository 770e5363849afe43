//! A work queue on an SQS FIFO queue (see [`crate::create_queues`]).

use crate::ReadError;
use async_trait::async_trait;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};
use messaging_events::{Event, QueueError, QueueMessage, WorkItem, WorkQueue};
use std::time::Duration;

/// Most entries SQS takes in one batch request (and returns from one receive).
const SQS_BATCH: usize = 10;
/// The longest visibility timeout SQS accepts (12 hours).
const MAX_VISIBILITY_SECS: u64 = 12 * 60 * 60;
/// The longest long-poll wait SQS accepts.
const MAX_WAIT_SECS: u64 = 20;
/// Attempts at the entries of a batch that SQS failed on its side.
const BATCH_ATTEMPTS: u32 = 5;

/// The [`WorkQueue`] port on one SQS FIFO queue: one message group per sender (so one
/// sender's messages are processed in acceptance order) and the recorded event's id as
/// de-duplication id (so a retried enqueue within SQS's 5-minute window is dropped).
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    wait_time: Duration,
}

impl SqsQueue {
    /// The queue at `queue_url`; receives return at once when the queue is empty.
    pub fn new(clients: &crate::AwsClients, queue_url: String) -> Self {
        Self {
            client: clients.sqs.clone(),
            queue_url,
            wait_time: Duration::ZERO,
        }
    }

    /// Long polling: a receive on an empty queue waits up to `wait` (at most 20 s) for a
    /// message, which saves the empty receives a busy poller would pay for.
    pub fn with_wait_time(mut self, wait: Duration) -> Self {
        self.wait_time = wait;
        self
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends up to ten items, retrying only the entries that SQS failed on its side.
    async fn send_batch(&self, items: &[WorkItem]) -> Result<(), ReadError> {
        let mut pending = items
            .iter()
            .enumerate()
            .map(|(index, item)| send_entry(index, item))
            .collect::<Result<Vec<_>, _>>()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(pending.clone()))
                .send()
                .await
                .map_err(|e| ReadError::request("sqs.SendMessageBatch", e))?;
            let failed = output.failed();
            if failed.is_empty() {
                return Ok(());
            }
            // Entries rejected for what they are would be rejected again.
            if let Some(entry) = failed.iter().find(|f| f.sender_fault()) {
                return Err(batch_error("sqs.SendMessageBatch", entry));
            }
            if attempt >= BATCH_ATTEMPTS {
                return Err(batch_error("sqs.SendMessageBatch", &failed[0]));
            }
            // Resending an entry that did go through is harmless: its de-duplication id drops
            // it. (A failed entry resent after a later one of the same sender succeeded lands
            // after it; SQS gives no way to keep the order then.)
            pending.retain(|entry| failed.iter().any(|f| f.id() == entry.id()));
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Deletes up to ten messages, retrying only the entries that SQS failed on its side;
    /// returns the entries SQS refused as the client's fault.
    async fn delete_batch(
        &self,
        receipts: &[String],
    ) -> Result<Vec<BatchResultErrorEntry>, ReadError> {
        let mut pending = receipts
            .iter()
            .enumerate()
            .map(|(index, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .map_err(|e| ReadError::corrupt("delete entry", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut refused = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(pending.clone()))
                .send()
                .await
                .map_err(|e| ReadError::request("sqs.DeleteMessageBatch", e))?;
            let (sender_fault, retryable): (Vec<_>, Vec<_>) =
                output.failed.into_iter().partition(|f| f.sender_fault());
            refused.extend(sender_fault);
            if retryable.is_empty() {
                return Ok(refused);
            }
            if attempt >= BATCH_ATTEMPTS {
                return Err(batch_error("sqs.DeleteMessageBatch", &retryable[0]));
            }
            pending.retain(|entry| retryable.iter().any(|f| f.id() == entry.id()));
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

/// The message group: the sender, whose messages must be processed in acceptance order.
fn message_group(item: &WorkItem) -> String {
    match &item.sent.event {
        Event::DirectMessageSent { sender, .. } | Event::GroupMessageSent { sender, .. } => {
            sender.to_string()
        }
        // Not work the processors expect; its stream still keeps its events in order.
        _ => item.sent.stream.to_string(),
    }
}

fn send_entry(index: usize, item: &WorkItem) -> Result<SendMessageBatchRequestEntry, ReadError> {
    let body = serde_json::to_string(item).map_err(|e| ReadError::corrupt("work item", e))?;
    SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(body)
        .message_group_id(message_group(item))
        .message_deduplication_id(item.sent.event_id.to_string())
        .build()
        .map_err(|e| ReadError::corrupt("send entry", e))
}

fn batch_error(operation: &'static str, entry: &BatchResultErrorEntry) -> ReadError {
    ReadError::Request {
        operation,
        detail: format!(
            "entry failed with {}: {}",
            entry.code(),
            entry.message().unwrap_or_default()
        ),
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.min(6))
}

/// Whole seconds, rounded up (a visibility of 50 ms must still hide the message), capped.
fn seconds(duration: Duration, max: u64) -> i32 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(secs.min(max)).unwrap_or(i32::MAX)
}

#[async_trait]
impl WorkQueue for SqsQueue {
    async fn enqueue(&self, items: Vec<WorkItem>) -> Result<(), QueueError> {
        // Batches go one after the other: SQS keeps the order of one group across requests
        // only if a request is sent after the previous one succeeded.
        for batch in items.chunks(SQS_BATCH) {
            self.send_batch(batch).await?;
        }
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
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::try_from(max.min(SQS_BATCH)).unwrap_or(1))
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY_SECS))
            .wait_time_seconds(seconds(self.wait_time, MAX_WAIT_SECS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| ReadError::request("sqs.ReceiveMessage", e))?;
        let mut received = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let Some(receipt) = message.receipt_handle.clone() else {
                tracing::warn!(queue = %self.queue_url, "SQS returned a message without a receipt");
                continue;
            };
            let receive_count = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|count| count.parse().ok())
                .unwrap_or(1);
            match serde_json::from_str::<WorkItem>(message.body().unwrap_or_default()) {
                Ok(item) => received.push(QueueMessage {
                    receipt,
                    receive_count,
                    item,
                }),
                // The port has no way to hand over a message nobody can decode. It is not
                // deleted: it comes back after its visibility timeout and, after the redrive
                // policy's receive count, moves to the dead-letter queue, where it can be
                // inspected; meanwhile other senders' messages flow.
                Err(error) => tracing::error!(
                    queue = %self.queue_url,
                    message_id = message.message_id().unwrap_or_default(),
                    receive_count,
                    %error,
                    "undecodable work item left for the dead-letter queue"
                ),
            }
        }
        Ok(received)
    }

    async fn ack(&self, receipts: Vec<String>) -> Result<(), QueueError> {
        if receipts.iter().any(|r| r.trim().is_empty()) {
            return Err(QueueError::Malformed("an empty receipt".into()));
        }
        let mut refused = Vec::new();
        for batch in receipts.chunks(SQS_BATCH) {
            refused.extend(self.delete_batch(batch).await?);
        }
        // A refused receipt deleted nothing: one SQS did not issue, or (on AWS FIFO queues)
        // one whose visibility timeout ran out. Its message, if any, is received again and
        // handled again, which processing tolerates; the other receipts were used.
        match refused.first() {
            None => Ok(()),
            Some(first) => Err(QueueError::Malformed(format!(
                "SQS refused {} of {} receipts ({}: {})",
                refused.len(),
                receipts.len(),
                first.code(),
                first.message().unwrap_or_default()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_rounds_up_to_whole_seconds_and_is_capped() {
        assert_eq!(seconds(Duration::ZERO, 10), 0);
        assert_eq!(seconds(Duration::from_millis(50), 10), 1);
        assert_eq!(seconds(Duration::from_secs(3), 10), 3);
        assert_eq!(seconds(Duration::from_secs(3600), 10), 10);
    }
}
