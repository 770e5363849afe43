//! Test-only in-memory event store and queue with the ports' semantics, for unit tests of the
//! handlers and processors without I/O. The real adapters have their own tests.

use async_trait::async_trait;
use messaging_events::{
    AppendError, AppendRequest, EventStore, QueueError, QueueMessage, RecordedEvent, StoreError,
    StreamId, Timestamp, WorkItem, WorkQueue,
};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct State {
    streams: BTreeMap<StreamId, Vec<RecordedEvent>>,
    claims: BTreeMap<String, Value>,
    log: Vec<RecordedEvent>,
    /// Event reads (`read_stream`, `last_event`) per stream, for tests that count them.
    reads: BTreeMap<StreamId, usize>,
    /// Events those reads returned, per stream.
    events_read: BTreeMap<StreamId, usize>,
    /// Appends refused because a stream had moved on, per stream.
    conflicts: BTreeMap<StreamId, usize>,
    /// `get_claim` calls.
    claim_reads: usize,
    /// Appends under way, and the most there ever were at once.
    appending: usize,
    most_appending: usize,
    /// Whether a refused append names a taken claim before a moved stream (the port promises
    /// no order between them).
    claims_first: bool,
    /// Appends refused because a claim was taken.
    claims_refused: usize,
}

/// The first claim of `request` that is taken already, as the append's error.
fn taken_claim(state: &State, request: &AppendRequest) -> Option<AppendError> {
    request.claims.iter().find_map(|claim| {
        state
            .claims
            .get(&claim.key)
            .map(|existing| AppendError::ClaimTaken {
                key: claim.key.clone(),
                existing: existing.clone(),
            })
    })
}

/// Events in maps behind a mutex.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// A store that, when an append breaks both a claim and a stream's version, reports the
    /// claim (the real adapters report the stream; the port allows either).
    pub fn reporting_claims_first() -> Self {
        let store = Self::default();
        store.state.lock().expect("lock").claims_first = true;
        store
    }

    /// Every event in append order.
    pub fn log(&self) -> Vec<RecordedEvent> {
        self.state.lock().expect("lock").log.clone()
    }

    /// How many times `stream`'s events were read (`read_stream`, `last_event`).
    pub fn reads_of(&self, stream: &StreamId) -> usize {
        let state = self.state.lock().expect("lock");
        state.reads.get(stream).copied().unwrap_or(0)
    }

    /// How many events reads of `stream` returned in all.
    pub fn events_read_of(&self, stream: &StreamId) -> usize {
        let state = self.state.lock().expect("lock");
        state.events_read.get(stream).copied().unwrap_or(0)
    }

    /// How many appends were refused because a claim they take was taken.
    pub fn claims_refused(&self) -> usize {
        self.state.lock().expect("lock").claims_refused
    }

    /// How many times a claim was read (`get_claim`).
    pub fn claim_reads(&self) -> usize {
        self.state.lock().expect("lock").claim_reads
    }

    /// The most appends that were ever under way at once.
    pub fn most_concurrent_appends(&self) -> usize {
        self.state.lock().expect("lock").most_appending
    }

    /// How many appends were refused because `stream` had moved past their expected version.
    pub fn conflicts_on(&self, stream: &StreamId) -> usize {
        let state = self.state.lock().expect("lock");
        state.conflicts.get(stream).copied().unwrap_or(0)
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, AppendError> {
        request.validate()?;
        {
            let mut state = self.state.lock().expect("lock");
            state.appending += 1;
            state.most_appending = state.most_appending.max(state.appending);
        }
        // A real append is a round trip during which other tasks run: concurrent writers race
        // here as they would against a real store.
        tokio::task::yield_now().await;
        let mut state = self.state.lock().expect("lock");
        state.appending -= 1;
        if state.claims_first {
            if let Some(taken) = taken_claim(&state, &request) {
                state.claims_refused += 1;
                return Err(taken);
            }
        }
        let version =
            |s: &State, stream: &StreamId| s.streams.get(stream).map_or(0, Vec::len) as u64;
        for append in &request.appends {
            if version(&state, &append.stream) != append.expected_version {
                *state.conflicts.entry(append.stream.clone()).or_insert(0) += 1;
                return Err(AppendError::Conflict {
                    stream: append.stream.clone(),
                });
            }
        }
        for check in &request.checks {
            if version(&state, &check.stream) != check.version {
                return Err(AppendError::Conflict {
                    stream: check.stream.clone(),
                });
            }
        }
        if let Some(taken) = taken_claim(&state, &request) {
            state.claims_refused += 1;
            return Err(taken);
        }
        let mut written = Vec::new();
        for append in request.appends {
            for (i, new) in append.events.into_iter().enumerate() {
                let recorded = RecordedEvent {
                    stream: append.stream.clone(),
                    version: append.expected_version + 1 + i as u64,
                    event_id: new.event_id,
                    recorded_at: Timestamp(state.log.len() as i64),
                    event: new.event,
                };
                state
                    .streams
                    .entry(append.stream.clone())
                    .or_default()
                    .push(recorded.clone());
                state.log.push(recorded.clone());
                written.push(recorded);
            }
        }
        for claim in request.claims {
            state.claims.insert(claim.key, claim.value);
        }
        Ok(written)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        to_version: Option<u64>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut state = self.state.lock().expect("lock");
        *state.reads.entry(stream.clone()).or_insert(0) += 1;
        let events: Vec<RecordedEvent> = state
            .streams
            .get(stream)
            .map(|events| {
                events
                    .iter()
                    .filter(|e| {
                        e.version > after_version && to_version.is_none_or(|to| e.version <= to)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        *state.events_read.entry(stream.clone()).or_insert(0) += events.len();
        Ok(events)
    }

    async fn last_event(&self, stream: &StreamId) -> Result<Option<RecordedEvent>, StoreError> {
        let mut state = self.state.lock().expect("lock");
        *state.reads.entry(stream.clone()).or_insert(0) += 1;
        let last = state.streams.get(stream).and_then(|e| e.last().cloned());
        *state.events_read.entry(stream.clone()).or_insert(0) += usize::from(last.is_some());
        Ok(last)
    }

    async fn get_claim(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let mut state = self.state.lock().expect("lock");
        state.claim_reads += 1;
        Ok(state.claims.get(key).cloned())
    }
}

/// A FIFO queue without visibility timeouts: received items are simply taken.
#[derive(Default)]
pub struct MemoryQueue {
    items: Mutex<VecDeque<WorkItem>>,
}

impl MemoryQueue {
    /// Takes everything queued.
    pub fn drain(&self) -> Vec<WorkItem> {
        self.items.lock().expect("lock").drain(..).collect()
    }
}

#[async_trait]
impl WorkQueue for MemoryQueue {
    async fn enqueue(&self, items: Vec<WorkItem>) -> Result<(), QueueError> {
        self.items.lock().expect("lock").extend(items);
        Ok(())
    }

    async fn receive(
        &self,
        _max: usize,
        _visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        Ok(Vec::new())
    }

    async fn ack(&self, _receipts: Vec<String>) -> Result<(), QueueError> {
        Ok(())
    }
}
