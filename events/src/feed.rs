use crate::RecordedEvent;
use async_trait::async_trait;

/// One change as a projector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRecord {
    /// Position in the feed, used as the checkpoint.
    pub position: u64,
    /// The appended event.
    pub event: RecordedEvent,
}

/// A change-feed failure.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Temporary failure; retry.
    #[error("change feed unavailable: {0}")]
    Unavailable(String),
}

/// The change feed of the event store, shaped after DynamoDB Streams read by a Lambda event
/// source mapping: at-least-once, resumed from the consumer's last committed checkpoint.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Up to `max` records after the consumer's checkpoint, in append order.
    async fn poll(&self, consumer: &str, max: usize) -> Result<Vec<FeedRecord>, FeedError>;

    /// Records that the consumer has handled everything up to `position`.
    async fn commit(&self, consumer: &str, position: u64) -> Result<(), FeedError>;
}
