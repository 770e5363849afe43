//! Shared by the handler tests: the fixtures, a fresh embedded store per test (the real adapter
//! the local server runs on), and decorators that make one port fail on purpose.

#![allow(dead_code)]

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use messaging_embedded::Embedded;
use messaging_events::{
    AppendError, AppendRequest, Event, EventStore, GroupId, MessageId, RecordedEvent, StoreError,
    StreamId, Timestamp, UserId,
};
use messaging_projections::{
    HistoryEntry, InboxEntry, PendingWork, ReadModelChange, ReadStore, ReadStoreError,
};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tempfile::TempDir;

/// The users, group and messages the fixtures are about.
pub const ADA: &str = "6f1c2a4e-3b5d-4c7e-8f90-a1b2c3d4e5f6";
pub const BOB: &str = "0d8e4f3a-9c2b-4e1d-a5f6-7b8c9d0e1f2a";
pub const CY: &str = "3a9b7c5d-1e2f-4a6b-8c0d-e4f5a6b7c8d9";
pub const GROUP: &str = "b7e6d5c4-a3b2-4c1d-9e8f-7a6b5c4d3e2f";

pub fn user(id: &str) -> UserId {
    UserId::parse(id).expect("a fixture user id")
}

pub fn group(id: &str) -> GroupId {
    GroupId(id.parse().expect("a fixture group id"))
}

/// Message `n` of the fixtures: 1 Ada→Bob, 2 Cy→Bob, 3 Ada→Bob, 4 Ada→Cy.
pub fn message(n: u32) -> MessageId {
    MessageId(
        format!("a1a1a1a1-0000-4000-8000-00000000000{n}")
            .parse()
            .expect("a fixture message id"),
    )
}

/// A fixture's text.
pub fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn sqs_event(name: &str) -> SqsEvent {
    serde_json::from_str(&fixture(name)).expect("an SQS event")
}

pub fn stream_event(name: &str) -> StreamEvent {
    serde_json::from_str(&fixture(name)).expect("a DynamoDB stream event")
}

/// The message ids of an SQS event's records, in order.
pub fn message_ids(event: &SqsEvent) -> Vec<String> {
    event
        .records
        .iter()
        .map(|r| r.message_id.clone().expect("a message id"))
        .collect()
}

/// The sequence numbers of a stream event's records, in order.
pub fn sequence_numbers(event: &StreamEvent) -> Vec<String> {
    event
        .records
        .iter()
        .map(|r| r.change.sequence_number.clone().expect("a sequence number"))
        .collect()
}

pub fn sqs_failures(response: &SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

pub fn stream_failures(response: &DynamoDbEventResponse) -> Vec<Option<String>> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// A fresh embedded store in its own directory.
pub struct Store {
    pub embedded: Embedded,
    _dir: TempDir,
}

impl Store {
    pub fn new() -> Store {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let embedded = Embedded::open(dir.path()).expect("the embedded store opens");
        Store {
            embedded,
            _dir: dir,
        }
    }

    pub fn events(&self) -> Arc<dyn EventStore> {
        self.embedded.events.clone()
    }

    pub fn read(&self) -> Arc<dyn ReadStore> {
        self.embedded.read.clone()
    }

    /// A stream's events.
    pub async fn stream(&self, stream: StreamId) -> Vec<RecordedEvent> {
        self.embedded
            .events
            .read_stream(&stream, 0, None)
            .await
            .expect("reading a stream")
    }

    /// The messages delivered to `recipient`, in inbox order.
    pub async fn inbox(&self, recipient: &str) -> Vec<MessageId> {
        self.stream(StreamId::inbox(user(recipient)))
            .await
            .into_iter()
            .map(|recorded| match recorded.event {
                Event::MessageDelivered { message_id, .. } => message_id,
                other => panic!("not a delivery in an inbox: {other:?}"),
            })
            .collect()
    }

    /// The outcome recorded for message `n`, if any.
    pub async fn outcome(&self, n: u32) -> Option<Event> {
        self.embedded
            .events
            .last_event(&StreamId::message(message(n)))
            .await
            .expect("reading an outcome")
            .map(|recorded| recorded.event)
    }

    /// Bob's projected inbox (message ids by position).
    pub async fn projected_inbox(&self, recipient: &str) -> Vec<(u64, MessageId)> {
        self.embedded
            .read
            .inbox_after(user(recipient), 0, 100)
            .await
            .expect("reading the inbox model")
            .into_iter()
            .map(|entry| (entry.position, entry.message.message_id))
            .collect()
    }

    /// A user's projected history (message ids by sort key).
    pub async fn projected_history(&self, of: &str) -> Vec<MessageId> {
        self.embedded
            .read
            .history_after(user(of), None, 100)
            .await
            .expect("reading the history model")
            .into_iter()
            .map(|entry| entry.message.message_id)
            .collect()
    }
}

/// Everything the read models answer about the fixtures' users and group, to compare states.
pub async fn read_model_snapshot(store: &Store) -> Value {
    let read = &store.embedded.read;
    let mut members = read
        .group_members(group(GROUP))
        .await
        .expect("members")
        .map(|mut m| {
            m.sort();
            m
        });
    if let Some(m) = members.as_mut() {
        m.dedup();
    }
    serde_json::json!({
        "bob_inbox": format!("{:?}", store.projected_inbox(BOB).await),
        "ada_history": format!("{:?}", store.projected_history(ADA).await),
        "bob_history": format!("{:?}", store.projected_history(BOB).await),
        "bob_marker": read.read_marker(user(BOB)).await.expect("marker"),
        "members": format!("{members:?}"),
        "blocked_by_bob": format!("{:?}", read.blocked_by(user(BOB)).await.expect("blocks")),
        "pending": format!("{:?}", read.pending_before(Timestamp(i64::MAX), 100).await.expect("pending")
            .into_iter().map(|w| w.message_id).collect::<Vec<_>>()),
    })
}

/// An event store that is unavailable for reads of and appends to one stream while `failing`
/// is set (a throttled partition, say); everything else goes to the real store.
pub struct UnavailableStream {
    pub inner: Arc<dyn EventStore>,
    pub stream: StreamId,
    pub failing: AtomicBool,
}

impl UnavailableStream {
    pub fn new(inner: Arc<dyn EventStore>, stream: StreamId) -> Arc<UnavailableStream> {
        Arc::new(UnavailableStream {
            inner,
            stream,
            failing: AtomicBool::new(true),
        })
    }

    fn check(&self, stream: &StreamId) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) && *stream == self.stream {
            return Err(StoreError::Unavailable(format!("{stream} is throttled")));
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for UnavailableStream {
    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, AppendError> {
        for append in &request.appends {
            self.check(&append.stream).map_err(AppendError::Store)?;
        }
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        to_version: Option<u64>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.check(stream)?;
        self.inner
            .read_stream(stream, after_version, to_version)
            .await
    }

    async fn last_event(&self, stream: &StreamId) -> Result<Option<RecordedEvent>, StoreError> {
        self.check(stream)?;
        self.inner.last_event(stream).await
    }

    async fn get_claim(&self, key: &str) -> Result<Option<Value>, StoreError> {
        self.inner.get_claim(key).await
    }
}

/// A read store whose writes fail while `failing` is set and the batch holds a change that
/// `poison` picks; the rest of the batch is then not applied either.
pub struct FailingWrites {
    pub inner: Arc<dyn ReadStore>,
    pub poison: fn(&ReadModelChange) -> bool,
    pub failing: AtomicBool,
}

impl FailingWrites {
    pub fn new(inner: Arc<dyn ReadStore>, poison: fn(&ReadModelChange) -> bool) -> Arc<Self> {
        Arc::new(FailingWrites {
            inner,
            poison,
            failing: AtomicBool::new(true),
        })
    }
}

#[async_trait]
impl ReadStore for FailingWrites {
    async fn apply(&self, changes: &[ReadModelChange]) -> Result<(), ReadStoreError> {
        if self.failing.load(Ordering::SeqCst) && changes.iter().any(self.poison) {
            return Err(ReadStoreError::Unavailable("write throttled".into()));
        }
        self.inner.apply(changes).await
    }

    async fn inbox_after(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, ReadStoreError> {
        self.inner.inbox_after(user, after, limit).await
    }

    async fn history_after(
        &self,
        user: UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ReadStoreError> {
        self.inner.history_after(user, after, limit).await
    }

    async fn read_marker(&self, user: UserId) -> Result<u64, ReadStoreError> {
        self.inner.read_marker(user).await
    }

    async fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>, ReadStoreError> {
        self.inner.group_members(group).await
    }

    async fn blocked_by(&self, blocker: UserId) -> Result<Vec<UserId>, ReadStoreError> {
        self.inner.blocked_by(blocker).await
    }

    async fn pending_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingWork>, ReadStoreError> {
        self.inner.pending_before(before, limit).await
    }
}
