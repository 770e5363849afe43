use crate::RecordedEvent;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Work for a processor: an accepted message, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// The `DirectMessageSent` or `GroupMessageSent` event to decide on.
    pub sent: RecordedEvent,
}

/// A received queue message: acknowledge it with its receipt once handled.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// Opaque handle for [`WorkQueue::ack`].
    pub receipt: String,
    /// How many times it was received, this time included.
    pub receive_count: u32,
    /// The work.
    pub item: WorkItem,
}

/// A queue failure.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Temporary failure; retry.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// A message that cannot be decoded.
    #[error("malformed queue message: {0}")]
    Malformed(String),
}

/// The work-queue port, shaped after SQS: at-least-once, messages reappear after their
/// visibility timeout unless acknowledged.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Durably enqueues items (SQS SendMessageBatch).
    async fn enqueue(&self, items: Vec<WorkItem>) -> Result<(), QueueError>;

    /// Receives up to `max` visible messages and hides them for `visibility`.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError>;

    /// Deletes handled messages.
    async fn ack(&self, receipts: Vec<String>) -> Result<(), QueueError>;
}
