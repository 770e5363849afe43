//! The event log as a whole, for replay: every event of every stream, read in pages that can be
//! resumed after an interruption. A log may be split into segments that are read in parallel
//! (a DynamoDB parallel scan); within a segment, and across segments, no global order is
//! promised beyond each stream's own, which projections do not need (they are order-insensitive).

use crate::{RecordedEvent, StoreError};
use async_trait::async_trait;

/// One page of a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    /// The events, in the segment's order.
    pub events: Vec<RecordedEvent>,
    /// Where the next page starts; `None` when the segment is done.
    pub next: Option<String>,
}

/// The event log port used by replay (the request path never scans).
#[async_trait]
pub trait EventLog: Send + Sync {
    /// How many segments a full read is split into (at least 1).
    fn segments(&self) -> u32;

    /// About how many events the log holds, for progress reports; `None` if unknown.
    async fn estimated_count(&self) -> Result<Option<u64>, StoreError>;

    /// Up to `limit` events of `segment`, after the opaque position `after` (`None`: from the
    /// segment's start).
    async fn read_page(
        &self,
        segment: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, StoreError>;
}
