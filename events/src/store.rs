use crate::{Event, StreamId, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Most items one append may touch (events + checks + claims): DynamoDB's transaction limit.
pub const MAX_ITEMS_PER_APPEND: usize = 100;
/// Largest stored item: DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// An event about to be appended. The id makes an ambiguous append checkable afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id of this event; a retry of the same command reuses it.
    pub event_id: Uuid,
    /// The fact itself.
    pub event: Event,
}

impl NewEvent {
    /// Wraps an event with a fresh id.
    pub fn new(event: Event) -> Self {
        Self {
            event_id: Uuid::new_v4(),
            event,
        }
    }
}

/// An event as read back from the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its position in the stream, starting at 1, without gaps.
    pub version: u64,
    /// The id given at append.
    pub event_id: Uuid,
    /// When the store accepted it.
    pub recorded_at: Timestamp,
    /// The fact.
    pub event: Event,
}

/// Appends `events` to `stream`, which must be at `expected_version` (0 = empty).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    /// Target stream.
    pub stream: StreamId,
    /// The version the caller read; the append fails with a conflict if it moved.
    pub expected_version: u64,
    /// Events to add, in order.
    pub events: Vec<NewEvent>,
}

/// Requires `stream` to still be at `version` when the append commits (DynamoDB ConditionCheck).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCheck {
    /// Stream to check.
    pub stream: StreamId,
    /// Its required current version.
    pub version: u64,
}

/// A unique key that must not exist yet, stored with a value (idempotency records, token
/// hashes, delivery de-duplication). Claims are write-side data, read with [`EventStore::get_claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The unique key.
    pub key: String,
    /// What to remember under it.
    pub value: Value,
}

/// One atomic write: all of it commits or none of it does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendRequest {
    /// Streams to append to.
    pub appends: Vec<StreamAppend>,
    /// Streams that must not have moved.
    pub checks: Vec<VersionCheck>,
    /// Keys that must not exist yet.
    pub claims: Vec<Claim>,
}

impl AppendRequest {
    /// A request appending to one stream.
    pub fn single(stream: StreamId, expected_version: u64, events: Vec<NewEvent>) -> Self {
        Self {
            appends: vec![StreamAppend {
                stream,
                expected_version,
                events,
            }],
            ..Self::default()
        }
    }

    /// Number of items the write touches (the unit of DynamoDB's transaction limit).
    pub fn item_count(&self) -> usize {
        self.appends.iter().map(|a| a.events.len()).sum::<usize>()
            + self.checks.len()
            + self.claims.len()
    }

    /// Checks the limits every adapter enforces, so that the embedded store refuses exactly what
    /// DynamoDB would.
    pub fn validate(&self) -> Result<(), AppendError> {
        let items = self.item_count();
        if items == 0 {
            return Err(AppendError::Invalid(
                "an append must write something".into(),
            ));
        }
        if items > MAX_ITEMS_PER_APPEND {
            return Err(AppendError::Invalid(format!(
                "{items} items in one append; the limit is {MAX_ITEMS_PER_APPEND}"
            )));
        }
        for event in self.appends.iter().flat_map(|a| a.events.iter()) {
            let size = serde_json::to_vec(&event.event)
                .map(|v| v.len())
                .unwrap_or(0);
            if size > MAX_ITEM_BYTES {
                return Err(AppendError::Invalid(format!(
                    "event of {size} bytes exceeds the item limit of {MAX_ITEM_BYTES}"
                )));
            }
        }
        Ok(())
    }
}

/// Why an append did not commit. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A stream was not at the expected version (someone else appended first).
    #[error("stream {stream} is not at the expected version")]
    Conflict { stream: StreamId },
    /// A claimed key exists already; `existing` is what was stored under it.
    #[error("claim {key} is taken")]
    ClaimTaken { key: String, existing: Value },
    /// The request breaks a store limit.
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The store failed; the append may or may not have happened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Temporary: throttling, timeouts, a busy database. Retrying may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Data in the store that this build cannot read.
    #[error("corrupt data in store: {0}")]
    Corrupt(String),
}

/// The event store port: an append-only log of streams, plus write-side claims.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Atomically appends events, checks stream versions and takes claims.
    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, AppendError>;

    /// Reads `stream` from `after_version` (exclusive) up to `to_version` (inclusive, or to the
    /// end), oldest first, reading every page.
    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        to_version: Option<u64>,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The newest event of `stream`, if any (one item read, whatever the stream's length).
    async fn last_event(&self, stream: &StreamId) -> Result<Option<RecordedEvent>, StoreError>;

    /// The version of `stream`'s newest event, 0 when it has none: for the checks that need no
    /// event (does it exist, where does it end), which an adapter may answer from its index
    /// without reading or decoding the event.
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        Ok(self
            .last_event(stream)
            .await?
            .map_or(0, |last| last.version))
    }

    /// The value stored under a claim.
    async fn get_claim(&self, key: &str) -> Result<Option<Value>, StoreError>;
}
