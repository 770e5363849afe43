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

/// The records of some event types only, and how far the feed was read for them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedPage {
    /// The records of the types asked for, in append order.
    pub records: Vec<FeedRecord>,
    /// The position up to which the feed was read (records of other types included): what to
    /// commit once `records` are handled. `None` when there was nothing new.
    pub read_to: Option<u64>,
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

    /// Up to `max` records whose events are of `types` ([`crate::Event::type_name`]) after the
    /// consumer's checkpoint, in append order. For a consumer of a few types among many: it
    /// reads past the others without a batch ending at each `max` of them. This default reads
    /// `max` records of any type and keeps the ones asked for.
    async fn poll_types(
        &self,
        consumer: &str,
        types: &[&str],
        max: usize,
    ) -> Result<FeedPage, FeedError> {
        let records = self.poll(consumer, max).await?;
        let read_to = records.iter().map(|record| record.position).max();
        let records = records
            .into_iter()
            .filter(|record| types.contains(&record.event.event.type_name()))
            .collect();
        Ok(FeedPage { records, read_to })
    }

    /// Records that the consumer has handled everything up to `position`.
    async fn commit(&self, consumer: &str, position: u64) -> Result<(), FeedError>;
}
