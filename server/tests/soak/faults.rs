//! Test-only wrappers around the ports (event store, work queues, change feed, read store) that
//! fail, time out, throttle, duplicate and reorder on a seeded schedule.
//!
//! One [`Schedule`] drives every wrapper of a run: a small deterministic RNG (SplitMix64) seeded
//! from the test's seed, an on/off switch (the faults stop before the system settles) and a
//! count of every fault injected. Tasks interleave differently from run to run, so a seed
//! replays the same fault mix and rates, not the exact same interleaving.

use async_trait::async_trait;
use messaging_events::{
    AppendError, AppendRequest, ChangeFeed, EventStore, FeedError, FeedRecord, GroupId, QueueError,
    QueueMessage, RecordedEvent, StoreError, StreamId, Timestamp, UserId, WorkItem, WorkQueue,
};
use messaging_projections::{
    HistoryEntry, InboxEntry, PendingWork, ReadModelChange, ReadStore, ReadStoreError,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often each fault strikes while the schedule is active (probability per call).
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// A call fails before reaching the port (nothing happened).
    pub fail_before: f64,
    /// A write reaches the port and succeeds, but the caller hears a timeout (ambiguous).
    pub fail_after: f64,
    /// A call is delayed by up to `max_delay`.
    pub delay: f64,
    /// The longest injected delay.
    pub max_delay: Duration,
    /// A throttling burst starts: the next 3 to 12 calls of every port fail.
    pub throttle: f64,
    /// A delivered item (queue message, feed record, read-model change batch) comes twice.
    pub duplicate: f64,
    /// A batch is handed over in another order (per-sender order kept on queues).
    pub reorder: f64,
    /// An item handed out earlier is handed out again, late.
    pub stale: f64,
    /// A write is applied in part, then fails (read models; acks).
    pub partial: f64,
}

impl Rates {
    /// The mix of the soak tests.
    pub fn soak() -> Rates {
        Rates {
            fail_before: 0.03,
            fail_after: 0.03,
            delay: 0.05,
            max_delay: Duration::from_millis(25),
            throttle: 0.003,
            duplicate: 0.05,
            reorder: 0.10,
            stale: 0.04,
            partial: 0.03,
        }
    }
}

/// The seeded source of every fault decision, shared by the wrappers of one run.
pub struct Schedule {
    rng: Mutex<u64>,
    active: AtomicBool,
    throttled: AtomicU32,
    rates: Rates,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Schedule {
    pub fn new(seed: u64, rates: Rates) -> Arc<Schedule> {
        Arc::new(Schedule {
            rng: Mutex::new(seed ^ 0x5eed_f00d_cafe_d00d),
            active: AtomicBool::new(true),
            throttled: AtomicU32::new(0),
            rates,
            counts: Mutex::new(BTreeMap::new()),
        })
    }

    /// Stops (or restarts) injecting faults.
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::SeqCst);
        if !active {
            self.throttled.store(0, Ordering::SeqCst);
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// The next pseudo-random number (SplitMix64).
    pub fn next_u64(&self) -> u64 {
        let mut state = self.rng.lock().unwrap();
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when n is 0).
    pub fn below(&self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `p` while active; counts the fault under `what`.
    fn strikes(&self, p: f64, what: &str) -> bool {
        if !self.is_active() || p <= 0.0 {
            return false;
        }
        let hit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p;
        if hit {
            self.count(what);
        }
        hit
    }

    fn count(&self, what: &str) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(what.to_string())
            .or_default() += 1;
    }

    /// What was injected so far, by kind.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap().clone()
    }

    /// Before a call: maybe wait, maybe fail (throttling or an outage). `Err` carries the text
    /// of the injected error.
    async fn before(&self, port: &str) -> Result<(), String> {
        if !self.is_active() {
            return Ok(());
        }
        if self.strikes(self.rates.delay, &format!("{port}: delay")) {
            let micros = self.below(self.rates.max_delay.as_micros() as usize + 1) as u64;
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
        if self.strikes(self.rates.throttle, "throttling burst") {
            self.throttled
                .fetch_add(3 + self.below(10) as u32, Ordering::SeqCst);
        }
        let throttled = self
            .throttled
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if throttled {
            self.count(&format!("{port}: throttled"));
            return Err(format!("injected: {port} throttled"));
        }
        if self.strikes(self.rates.fail_before, &format!("{port}: fail")) {
            return Err(format!("injected: {port} unavailable"));
        }
        Ok(())
    }

    /// After a write that happened: maybe report a timeout anyway.
    fn after(&self, port: &str) -> Result<(), String> {
        if self.strikes(
            self.rates.fail_after,
            &format!("{port}: timeout after the write"),
        ) {
            Err(format!("injected: {port} timed out (the write happened)"))
        } else {
            Ok(())
        }
    }

    /// Shuffles `items` in place (Fisher-Yates).
    fn shuffle<T>(&self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The event store, failing and timing out.
pub struct FaultyStore {
    inner: Arc<dyn EventStore>,
    schedule: Arc<Schedule>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn EventStore>, schedule: Arc<Schedule>) -> Arc<FaultyStore> {
        Arc::new(FaultyStore { inner, schedule })
    }
}

fn store_error(text: String) -> StoreError {
    StoreError::Unavailable(text)
}

#[async_trait]
impl EventStore for FaultyStore {
    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, AppendError> {
        self.schedule
            .before("store.append")
            .await
            .map_err(|e| AppendError::Store(store_error(e)))?;
        let recorded = self.inner.append(request).await?;
        self.schedule
            .after("store.append")
            .map_err(|e| AppendError::Store(store_error(e)))?;
        Ok(recorded)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        to_version: Option<u64>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.schedule
            .before("store.read")
            .await
            .map_err(store_error)?;
        self.inner
            .read_stream(stream, after_version, to_version)
            .await
    }

    async fn last_event(&self, stream: &StreamId) -> Result<Option<RecordedEvent>, StoreError> {
        self.schedule
            .before("store.read")
            .await
            .map_err(store_error)?;
        self.inner.last_event(stream).await
    }

    async fn get_claim(&self, key: &str) -> Result<Option<Value>, StoreError> {
        self.schedule
            .before("store.read")
            .await
            .map_err(store_error)?;
        self.inner.get_claim(key).await
    }
}

/// Marks receipts this wrapper made up for stale redeliveries; acking them is a no-op.
const STALE_RECEIPT: &str = "stale-redelivery:";

/// A work queue, failing, timing out, duplicating, reordering and redelivering late. It also
/// caps the visibility timeout, so that unacknowledged work comes back within the test (and
/// slow batches overlap with their own redelivery).
pub struct FaultyQueue {
    inner: Arc<dyn WorkQueue>,
    schedule: Arc<Schedule>,
    name: &'static str,
    max_visibility: Duration,
    seen: Mutex<Vec<QueueMessage>>,
}

impl FaultyQueue {
    pub fn new(
        inner: Arc<dyn WorkQueue>,
        schedule: Arc<Schedule>,
        name: &'static str,
        max_visibility: Duration,
    ) -> Arc<FaultyQueue> {
        Arc::new(FaultyQueue {
            inner,
            schedule,
            name,
            max_visibility,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn port(&self, op: &str) -> String {
        format!("{}.{op}", self.name)
    }
}

fn queue_error(text: String) -> QueueError {
    QueueError::Unavailable(text)
}

/// The unit of order on a queue: messages of one sender stay in their order.
fn sender(message: &QueueMessage) -> Option<UserId> {
    use messaging_events::Event;
    match &message.item.sent.event {
        Event::DirectMessageSent { sender, .. } | Event::GroupMessageSent { sender, .. } => {
            Some(*sender)
        }
        _ => None,
    }
}

#[async_trait]
impl WorkQueue for FaultyQueue {
    async fn enqueue(&self, items: Vec<WorkItem>) -> Result<(), QueueError> {
        let s = &self.schedule;
        s.before(&self.port("enqueue")).await.map_err(queue_error)?;
        let twice = s.strikes(s.rates.duplicate, &self.port("enqueue twice"));
        if twice {
            self.inner.enqueue(items.clone()).await?;
        }
        self.inner.enqueue(items).await?;
        s.after(&self.port("enqueue")).map_err(queue_error)
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        let s = &self.schedule;
        s.before(&self.port("receive")).await.map_err(queue_error)?;
        let mut messages = self
            .inner
            .receive(max, visibility.min(self.max_visibility))
            .await?;
        if !messages.is_empty() {
            let mut seen = self.seen.lock().unwrap();
            seen.extend(messages.iter().cloned());
            let excess = seen.len().saturating_sub(256);
            seen.drain(..excess);
        }
        if messages.is_empty() || !s.is_active() {
            return Ok(messages);
        }
        // A message handed out twice in one batch, right after itself.
        if s.strikes(s.rates.duplicate, &self.port("receive duplicate")) {
            let i = s.below(messages.len());
            let copy = messages[i].clone();
            messages.insert(i + 1, copy);
        }
        // An old message again (settled or not), with a receipt of its own.
        if s.strikes(s.rates.stale, &self.port("stale redelivery")) {
            let seen = self.seen.lock().unwrap();
            if !seen.is_empty() {
                let mut old = seen[s.below(seen.len())].clone();
                old.receipt = format!("{STALE_RECEIPT}{}", old.receipt);
                old.receive_count += 1;
                // Where acceptance order puts it among its sender's messages (FIFO per
                // sender), anywhere if none of them is in the batch.
                let same = |m: &QueueMessage| sender(m) == sender(&old);
                let at = match messages
                    .iter()
                    .position(|m| same(m) && m.item.sent.version > old.item.sent.version)
                {
                    Some(i) => i,
                    None => messages
                        .iter()
                        .rposition(same)
                        .map_or(s.below(messages.len() + 1), |i| i + 1),
                };
                messages.insert(at, old);
            }
        }
        // Another order across senders; each sender's messages keep theirs.
        if messages.len() > 1 && s.strikes(s.rates.reorder, &self.port("reorder")) {
            let mut chains: Vec<(Option<UserId>, Vec<QueueMessage>)> = Vec::new();
            for message in messages.drain(..) {
                let key = sender(&message);
                match chains.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, chain)) => chain.push(message),
                    None => chains.push((key, vec![message])),
                }
            }
            s.shuffle(&mut chains);
            messages = chains.into_iter().flat_map(|(_, chain)| chain).collect();
        }
        Ok(messages)
    }

    async fn ack(&self, receipts: Vec<String>) -> Result<(), QueueError> {
        let s = &self.schedule;
        s.before(&self.port("ack")).await.map_err(queue_error)?;
        let mut unique = HashSet::new();
        let mut receipts: Vec<String> = receipts
            .into_iter()
            .filter(|r| !r.starts_with(STALE_RECEIPT) && unique.insert(r.clone()))
            .collect();
        let partial = receipts.len() > 1 && s.strikes(s.rates.partial, &self.port("ack part"));
        if partial {
            receipts.truncate(1 + s.below(receipts.len() - 1));
        }
        if !receipts.is_empty() {
            self.inner.ack(receipts).await?;
        }
        if partial {
            return Err(queue_error("injected: ack applied in part".into()));
        }
        s.after(&self.port("ack")).map_err(queue_error)
    }
}

/// The change feed, failing, duplicating, reordering and handing out old records again; its
/// commits fail, time out, or are silently lost (the batch is read again).
pub struct FaultyFeed {
    inner: Arc<dyn ChangeFeed>,
    schedule: Arc<Schedule>,
    seen: Mutex<Vec<FeedRecord>>,
}

impl FaultyFeed {
    pub fn new(inner: Arc<dyn ChangeFeed>, schedule: Arc<Schedule>) -> Arc<FaultyFeed> {
        Arc::new(FaultyFeed {
            inner,
            schedule,
            seen: Mutex::new(Vec::new()),
        })
    }
}

fn feed_error(text: String) -> FeedError {
    FeedError::Unavailable(text)
}

#[async_trait]
impl ChangeFeed for FaultyFeed {
    async fn poll(&self, consumer: &str, max: usize) -> Result<Vec<FeedRecord>, FeedError> {
        let s = &self.schedule;
        s.before("feed.poll").await.map_err(feed_error)?;
        let mut records = self.inner.poll(consumer, max).await?;
        if !records.is_empty() {
            let mut seen = self.seen.lock().unwrap();
            seen.extend(records.iter().cloned());
            let excess = seen.len().saturating_sub(2048);
            seen.drain(..excess);
        }
        if records.is_empty() || !s.is_active() {
            return Ok(records);
        }
        if s.strikes(s.rates.duplicate, "feed.poll duplicates") {
            let copies: Vec<FeedRecord> = (0..=s.below(3))
                .map(|_| records[s.below(records.len())].clone())
                .collect();
            records.extend(copies);
        }
        if s.strikes(s.rates.stale, "feed.poll stale records") {
            let seen = self.seen.lock().unwrap();
            let copies: Vec<FeedRecord> = (0..=s.below(8))
                .map(|_| seen[s.below(seen.len())].clone())
                .collect();
            records.extend(copies);
        }
        if s.strikes(s.rates.reorder, "feed.poll reorder") {
            s.shuffle(&mut records);
        }
        Ok(records)
    }

    async fn commit(&self, consumer: &str, position: u64) -> Result<(), FeedError> {
        let s = &self.schedule;
        s.before("feed.commit").await.map_err(feed_error)?;
        if s.strikes(s.rates.partial, "feed.commit lost") {
            return Ok(());
        }
        self.inner.commit(consumer, position).await?;
        s.after("feed.commit").map_err(feed_error)
    }
}

/// The read models: writes fail, time out, apply in part, out of order, twice, and old batches
/// are applied again late (a stream record redelivered after newer ones); reads fail.
pub struct FaultyRead {
    inner: Arc<dyn ReadStore>,
    schedule: Arc<Schedule>,
    applied: Mutex<Vec<Vec<ReadModelChange>>>,
}

impl FaultyRead {
    pub fn new(inner: Arc<dyn ReadStore>, schedule: Arc<Schedule>) -> Arc<FaultyRead> {
        Arc::new(FaultyRead {
            inner,
            schedule,
            applied: Mutex::new(Vec::new()),
        })
    }
}

fn read_error(text: String) -> ReadStoreError {
    ReadStoreError::Unavailable(text)
}

#[async_trait]
impl ReadStore for FaultyRead {
    async fn apply(&self, changes: &[ReadModelChange]) -> Result<(), ReadStoreError> {
        let s = &self.schedule;
        s.before("read.apply").await.map_err(read_error)?;
        if !s.is_active() {
            return self.inner.apply(changes).await;
        }
        if s.strikes(s.rates.stale, "read.apply old batch again") {
            let old = {
                let applied = self.applied.lock().unwrap();
                (!applied.is_empty()).then(|| applied[s.below(applied.len())].clone())
            };
            if let Some(old) = old {
                self.inner.apply(&old).await?;
            }
        }
        let mut batch = changes.to_vec();
        if batch.len() > 1 && s.strikes(s.rates.reorder, "read.apply reorder") {
            s.shuffle(&mut batch);
        }
        if s.strikes(s.rates.duplicate, "read.apply twice") {
            batch.extend(batch.clone());
        }
        if batch.len() > 1 && s.strikes(s.rates.partial, "read.apply in part") {
            let mut part = batch.clone();
            s.shuffle(&mut part);
            part.truncate(1 + s.below(batch.len() - 1));
            self.inner.apply(&part).await?;
            return Err(read_error("injected: read.apply failed half way".into()));
        }
        self.inner.apply(&batch).await?;
        {
            let mut applied = self.applied.lock().unwrap();
            applied.push(changes.to_vec());
            let excess = applied.len().saturating_sub(256);
            applied.drain(..excess);
        }
        s.after("read.apply").map_err(read_error)
    }

    async fn inbox_after(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, ReadStoreError> {
        self.schedule
            .before("read.query")
            .await
            .map_err(read_error)?;
        self.inner.inbox_after(user, after, limit).await
    }

    async fn history_after(
        &self,
        user: UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ReadStoreError> {
        self.schedule
            .before("read.query")
            .await
            .map_err(read_error)?;
        self.inner.history_after(user, after, limit).await
    }

    async fn read_marker(&self, user: UserId) -> Result<u64, ReadStoreError> {
        self.schedule
            .before("read.query")
            .await
            .map_err(read_error)?;
        self.inner.read_marker(user).await
    }

    async fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>, ReadStoreError> {
        self.schedule
            .before("read.query")
            .await
            .map_err(read_error)?;
        self.inner.group_members(group).await
    }

    async fn blocked_by(&self, blocker: UserId) -> Result<Vec<UserId>, ReadStoreError> {
        self.schedule
            .before("read.query")
            .await
            .map_err(read_error)?;
        self.inner.blocked_by(blocker).await
    }

    async fn pending_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingWork>, ReadStoreError> {
        self.schedule
            .before("read.query")
            .await
            .map_err(read_error)?;
        self.inner.pending_before(before, limit).await
    }
}
