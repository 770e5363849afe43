//! The delivery processors: given accepted work from a queue, decide against the state pinned
//! at acceptance and append deliveries and the outcome. Idempotent: a redelivered item finds
//! its outcome (or its per-recipient deliveries) already recorded and adds nothing.

use crate::decide::delivery::{decide_direct, decide_group, Delivery};
use crate::decide::BlockersState;
use crate::group_snapshots;
use crate::inbox_ends::InboxEnds;
use crate::inbox_locks::InboxLocks;
use messaging_events::{
    AppendError, AppendRequest, Claim, Event, EventStore, GroupId, MessageId, NewEvent,
    RecordedEvent, StoreError, StreamAppend, StreamId, Timestamp, UserId, WorkItem,
};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// How often one delivery re-reads an inbox after losing a race for its next position.
const MAX_ATTEMPTS: usize = 32;
/// How many recipients of one message are delivered to at a time, unless the driver chooses
/// (`Processor::delivering_at_once`). Each recipient has an inbox of its own, so these appends
/// never race each other; a group message to 1,000 members takes 1,000 / `DELIVERY_CONCURRENCY`
/// round trips instead of 1,000. Lambda keeps sixteen; more in flight was never measured there.
const DELIVERY_CONCURRENCY: usize = 16;
/// Most unsettled earlier messages of one sender a delivery settles first; beyond, it fails
/// (and is retried) rather than holding one invocation for long.
const MAX_PREDECESSORS: usize = 1_000;

/// Why a work item was not processed; the item stays on the queue and is retried.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The store failed; retry later.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An append failed for a reason other than a race.
    #[error("append failed: {0}")]
    Append(AppendError),
    /// Too many concurrent deliveries to one inbox; retry later.
    #[error("inbox {0} is contended")]
    Contended(StreamId),
    /// The item is not a sent message; it can never succeed.
    #[error("not a message: {0}")]
    NotAMessage(String),
}

impl ProcessError {
    /// Whether retrying can help (otherwise the item belongs in a dead-letter queue).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ProcessError::NotAMessage(_))
    }
}

/// The message as every recipient gets it.
#[derive(Clone)]
struct Message {
    message_id: MessageId,
    sender: UserId,
    receiver: Option<UserId>,
    group_id: Option<GroupId>,
    text: String,
    sent_at: Timestamp,
}

/// Senders whose settled prefix [`Processor`] remembers at most; past it the memory starts
/// over, which costs only the reads it saved.
const REMEMBERED_SENDERS: usize = 65_536;

/// Decides and records delivery of direct and group messages.
#[derive(Clone)]
pub struct Processor {
    store: Arc<dyn EventStore>,
    /// Per outbox stream, a version up to which every message is known settled. Settled
    /// stays settled, so this can only be behind the store, never wrong; it spares the walk
    /// back over the previous message (two reads) for a sender whose last message this
    /// processor settled.
    settled_through: Arc<Mutex<HashMap<StreamId, u64>>>,
    /// Turns deliveries to one inbox into a queue instead of a race (see `inbox_locks`).
    inboxes: Arc<InboxLocks>,
    /// Where inboxes end, when this processor is their only writer (see `inbox_ends`).
    inbox_ends: Arc<InboxEnds>,
    /// How many recipients of one message are delivered to at a time.
    delivery_concurrency: usize,
}

impl Processor {
    /// A processor over the event store.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            settled_through: Arc::default(),
            inboxes: Arc::default(),
            inbox_ends: Arc::default(),
            delivery_concurrency: DELIVERY_CONCURRENCY,
        }
    }

    /// The same processor delivering to up to `recipients` members of a group at a time (at
    /// least one), for a store that commits concurrent appends together: there, each round of
    /// deliveries waits for a commit, and fewer, larger rounds finish a group message sooner.
    pub fn delivering_at_once(self, recipients: usize) -> Self {
        Self {
            delivery_concurrency: recipients.max(1),
            ..self
        }
    }

    /// The same processor remembering where each inbox ends after its own appends, for a
    /// driver whose processor is the only writer of inboxes: a delivery then reads no inbox
    /// end, and a stale one costs a refused append (see `inbox_ends`).
    pub fn remembering_inbox_ends(self) -> Self {
        Self {
            inbox_ends: Arc::new(InboxEnds::remembered()),
            ..self
        }
    }

    /// Processes one accepted message.
    pub async fn handle(&self, item: &WorkItem) -> Result<(), ProcessError> {
        let sent = &item.sent;
        let message_id = match &sent.event {
            Event::DirectMessageSent { message_id, .. }
            | Event::GroupMessageSent { message_id, .. } => *message_id,
            other => return Err(ProcessError::NotAMessage(other.type_name().into())),
        };
        // Also for a direct message, whose delivery write would refuse a duplicate anyway: a
        // redelivery is settled by this one read instead of a claim read, an inbox read and a
        // refused write, which matters when a lagging projector makes the sweep re-enqueue
        // thousands of settled messages (tried in 61f028b: the queue behind them stalled).
        if self.settled(message_id).await? {
            return Ok(());
        }
        // One sender's messages reach every inbox in acceptance order, even when an earlier
        // one comes late (its enqueue failed and the sweep re-enqueued it, or its processing
        // failed and the queue redelivers it after later ones): settle those first.
        for earlier in self.unsettled_predecessors(sent).await? {
            self.decide(&earlier).await?;
        }
        self.decide(sent).await?;
        self.remember_settled(&sent.stream, sent.version);
        Ok(())
    }

    /// Records that every message of `stream` up to `version` is settled.
    fn remember_settled(&self, stream: &StreamId, version: u64) {
        let mut settled = self
            .settled_through
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if settled.len() >= REMEMBERED_SENDERS && !settled.contains_key(stream) {
            settled.clear();
        }
        let through = settled.entry(stream.clone()).or_insert(0);
        *through = (*through).max(version);
    }

    /// The version up to which every message of `stream` is known settled (0: none known).
    fn known_settled_through(&self, stream: &StreamId) -> u64 {
        let settled = self
            .settled_through
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        settled.get(stream).copied().unwrap_or(0)
    }

    /// Whether the message has its outcome.
    async fn settled(&self, message_id: MessageId) -> Result<bool, StoreError> {
        Ok(self
            .store
            .stream_version(&StreamId::message(message_id))
            .await?
            > 0)
    }

    /// The sender's earlier messages that have no outcome yet, oldest first. Every outcome is
    /// recorded only after those of the sender's earlier messages, so the walk back stops at
    /// the first settled one: usually the previous message (two reads, whatever the history),
    /// and no read at all when this processor settled the previous message itself.
    async fn unsettled_predecessors(
        &self,
        sent: &RecordedEvent,
    ) -> Result<Vec<RecordedEvent>, ProcessError> {
        let mut unsettled = Vec::new();
        let mut version = sent.version;
        let known = self.known_settled_through(&sent.stream);
        while version > 1 && version - 1 > known {
            if unsettled.len() >= MAX_PREDECESSORS {
                return Err(ProcessError::Contended(sent.stream.clone()));
            }
            let Some(previous) = self
                .store
                .read_stream(&sent.stream, version - 2, Some(version - 1))
                .await?
                .pop()
            else {
                break;
            };
            let previous_id = match &previous.event {
                Event::DirectMessageSent { message_id, .. }
                | Event::GroupMessageSent { message_id, .. } => *message_id,
                _ => break,
            };
            if self.settled(previous_id).await? {
                break;
            }
            version = previous.version;
            unsettled.push(previous);
        }
        unsettled.reverse();
        Ok(unsettled)
    }

    /// Decides and records delivery of one accepted message.
    async fn decide(&self, sent: &RecordedEvent) -> Result<(), ProcessError> {
        let message_id = match &sent.event {
            Event::DirectMessageSent { message_id, .. }
            | Event::GroupMessageSent { message_id, .. } => *message_id,
            other => return Err(ProcessError::NotAMessage(other.type_name().into())),
        };
        match &sent.event {
            Event::DirectMessageSent {
                sender,
                receiver,
                text,
                sent_at,
                blocks_version,
                ..
            } => {
                let blockers = self.blockers(*sender, *blocks_version).await?;
                let message = Message {
                    message_id,
                    sender: *sender,
                    receiver: Some(*receiver),
                    group_id: None,
                    text: text.clone(),
                    sent_at: *sent_at,
                };
                self.settle(&message, decide_direct(&blockers, *receiver))
                    .await
            }
            Event::GroupMessageSent {
                sender,
                group_id,
                text,
                sent_at,
                group_version,
                blocks_version,
                ..
            } => {
                let (_, group) = group_snapshots::load(
                    self.store.as_ref(),
                    *group_id,
                    *group_version,
                    Some(*group_version),
                )
                .await?;
                let blockers = self.blockers(*sender, *blocks_version).await?;
                let message = Message {
                    message_id,
                    sender: *sender,
                    receiver: None,
                    group_id: Some(*group_id),
                    text: text.clone(),
                    sent_at: *sent_at,
                };
                self.settle(&message, decide_group(&group, &blockers, *sender))
                    .await
            }
            _ => Ok(()),
        }
    }

    /// The sender's blockers as of the pinned version.
    async fn blockers(&self, sender: UserId, version: u64) -> Result<BlockersState, StoreError> {
        // Most senders have never been blocked: version 0 pins the empty stream, nothing to read.
        if version == 0 {
            return Ok(BlockersState::default());
        }
        let events = self
            .store
            .read_stream(&StreamId::blocks_of(sender), 0, Some(version))
            .await?;
        Ok(BlockersState::from_events(events.iter().map(|e| &e.event)))
    }

    /// Delivers to every recipient, then records the outcome that ends the work.
    async fn settle(&self, message: &Message, delivery: Delivery) -> Result<(), ProcessError> {
        let outcome = match delivery {
            Delivery::Rejected(reason) => {
                tracing::info!(message_id = %message.message_id, ?reason, "message rejected");
                Event::MessageRejected {
                    message_id: message.message_id,
                    reason,
                }
            }
            Delivery::To {
                recipients,
                withheld,
            } => {
                let outcome = Event::MessageDispatched {
                    message_id: message.message_id,
                    delivered: u32::try_from(recipients.len()).unwrap_or(u32::MAX),
                    withheld,
                };
                if let [recipient] = recipients[..] {
                    return self.deliver(message, recipient, Some(outcome)).await;
                }
                self.deliver_all(message, &recipients).await?;
                outcome
            }
        };
        self.record_outcome(message.message_id, outcome).await
    }

    /// Appends the outcome that ends a message's work, once.
    async fn record_outcome(
        &self,
        message_id: MessageId,
        outcome: Event,
    ) -> Result<(), ProcessError> {
        let request = AppendRequest::single(
            StreamId::message(message_id),
            0,
            vec![NewEvent::new(outcome)],
        );
        match self.store.append(request).await {
            // A concurrent duplicate recorded the same outcome first.
            Ok(_) | Err(AppendError::Conflict { .. }) => Ok(()),
            Err(other) => Err(ProcessError::Append(other)),
        }
    }

    /// Delivers to every recipient, `delivery_concurrency` at a time. On the first failure it
    /// starts no more deliveries, waits for those under way and returns that failure (the
    /// redelivered item skips the recipients that already have the message).
    async fn deliver_all(
        &self,
        message: &Message,
        recipients: &[UserId],
    ) -> Result<(), ProcessError> {
        if let [recipient] = recipients {
            return self.deliver(message, *recipient, None).await;
        }
        let mut pending = recipients.iter().copied();
        let mut running = tokio::task::JoinSet::new();
        let mut failure = None;
        loop {
            while failure.is_none() && running.len() < self.delivery_concurrency {
                let Some(recipient) = pending.next() else {
                    break;
                };
                let processor = self.clone();
                let message = message.clone();
                running.spawn(
                    async move { processor.deliver(&message, recipient, None).await }
                        .instrument(tracing::Span::current()),
                );
            }
            match running.join_next().await {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(error))) => {
                    failure.get_or_insert(error);
                }
                Some(Err(error)) if error.is_panic() => {
                    std::panic::resume_unwind(error.into_panic())
                }
                Some(Err(error)) => {
                    failure.get_or_insert(ProcessError::Store(StoreError::Unavailable(format!(
                        "a delivery was cancelled: {error}"
                    ))));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Appends the message to one inbox at its next position, once: the delivery claim
    /// de-duplicates redeliveries and concurrent duplicates.
    ///
    /// With `outcome` (a message with a single recipient, every direct message) the outcome is
    /// appended in the same transaction instead of a claim: one write instead of two, and the
    /// outcome's stream, which only ever holds one event, de-duplicates as the claim would.
    async fn deliver(
        &self,
        message: &Message,
        recipient: UserId,
        outcome: Option<Event>,
    ) -> Result<(), ProcessError> {
        let claim_key = format!("delivery:{}:{}", message.message_id, recipient);
        // Work half done by a build that recorded a direct message's delivery and outcome
        // apart. A delivery without an outcome needs no such read: its append takes the claim,
        // and a claim already taken refuses the append.
        if let Some(outcome) = &outcome {
            if self.store.get_claim(&claim_key).await?.is_some() {
                return self
                    .record_outcome(message.message_id, outcome.clone())
                    .await;
            }
        }
        let inbox = StreamId::inbox(recipient);
        let outcome_stream = StreamId::message(message.message_id);
        let _turn = self.inboxes.turn(recipient).await;
        for attempt in 0..MAX_ATTEMPTS {
            let remembered = self.inbox_ends.get(recipient);
            let position = match remembered {
                Some(end) => end,
                None => self.store.stream_version(&inbox).await?,
            };
            let mut appends = vec![StreamAppend {
                stream: inbox.clone(),
                expected_version: position,
                events: vec![NewEvent::new(Event::MessageDelivered {
                    message_id: message.message_id,
                    recipient,
                    sender: message.sender,
                    receiver: message.receiver,
                    group_id: message.group_id,
                    text: message.text.clone(),
                    sent_at: message.sent_at,
                })],
            }];
            let mut claims = Vec::new();
            match &outcome {
                Some(outcome) => appends.push(StreamAppend {
                    stream: outcome_stream.clone(),
                    expected_version: 0,
                    events: vec![NewEvent::new(outcome.clone())],
                }),
                None => claims.push(Claim {
                    key: claim_key.clone(),
                    value: json!({ "position": position + 1 }),
                }),
            }
            let request = AppendRequest {
                appends,
                checks: Vec::new(),
                claims,
            };
            match self.store.append(request).await {
                Ok(_) => {
                    self.inbox_ends.set(recipient, position + 1);
                    tracing::debug!(message_id = %message.message_id, recipient_id = %recipient, position = position + 1, "delivered");
                    return Ok(());
                }
                // Delivered before (a redelivery, a concurrent duplicate): nothing was written.
                Err(AppendError::ClaimTaken { .. }) => return Ok(()),
                // A concurrent duplicate delivered it and recorded the outcome first.
                Err(AppendError::Conflict { stream }) if stream == outcome_stream => return Ok(()),
                // Another process delivered since this one remembered the end: no race to
                // spread out, read the end and try again.
                Err(AppendError::Conflict { .. }) if remembered.is_some() => {
                    self.inbox_ends.forget(recipient);
                    continue;
                }
                Err(AppendError::Conflict { .. }) => {
                    // Spread concurrent deliveries to one inbox instead of colliding again.
                    let micros = rand::random_range(0..1_000 * (attempt as u64 + 1).min(20));
                    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
                    continue;
                }
                // The append may or may not have happened: where the inbox ends is unknown.
                Err(other) => {
                    self.inbox_ends.forget(recipient);
                    return Err(ProcessError::Append(other));
                }
            }
        }
        Err(ProcessError::Contended(inbox))
    }
}
