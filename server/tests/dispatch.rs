//! The embedded server's dispatcher on a real embedded store: accepted messages reach the
//! processor from the change feed without passing through a queue; what fails is queued and
//! delivered from there; nothing is delivered twice, across a restart too.

use async_trait::async_trait;
use messaging_embedded::Embedded;
use messaging_events::{
    AppendError, AppendRequest, Clock, Event, EventStore, Limits, MessageId, NewEvent, QueueError,
    QueueMessage, RecordedEvent, StoreError, StreamId, SystemClock, UserId, WorkItem, WorkQueue,
};
use messaging_projections::ReadStore;
use messaging_server::{worker_deps, Config, WorkerDeps, Workers};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        limits: Limits::default(),
        backend: messaging_server::Backend::Embedded,
        ..Config::from_lookup(|_| None).expect("the defaults are valid")
    }
}

/// A queue that counts what is enqueued on it.
struct CountingQueue {
    inner: Arc<dyn WorkQueue>,
    enqueued: AtomicUsize,
}

#[async_trait]
impl WorkQueue for CountingQueue {
    async fn enqueue(&self, items: Vec<WorkItem>) -> Result<(), QueueError> {
        self.enqueued.fetch_add(items.len(), Ordering::SeqCst);
        self.inner.enqueue(items).await
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        self.inner.receive(max, visibility).await
    }

    async fn ack(&self, receipts: Vec<String>) -> Result<(), QueueError> {
        self.inner.ack(receipts).await
    }
}

/// A store whose first `failures` appends to an inbox fail, as a busy database would.
struct FailingDeliveries {
    inner: Arc<dyn EventStore>,
    failures: AtomicUsize,
}

#[async_trait]
impl EventStore for FailingDeliveries {
    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, AppendError> {
        let delivery = request
            .appends
            .iter()
            .any(|append| append.stream.as_str().starts_with("inbox-"));
        let fail = delivery
            && self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
        if fail {
            return Err(StoreError::Unavailable("injected".into()).into());
        }
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: Option<u64>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from_version, max).await
    }

    async fn last_event(&self, stream: &StreamId) -> Result<Option<RecordedEvent>, StoreError> {
        self.inner.last_event(stream).await
    }

    async fn get_claim(&self, key: &str) -> Result<Option<Value>, StoreError> {
        self.inner.get_claim(key).await
    }
}

/// The loops over `embedded`, with the direct queue counted.
fn deps(embedded: &Embedded, dir: &std::path::Path) -> (WorkerDeps, Arc<CountingQueue>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut deps = worker_deps(
        embedded,
        embedded.read.clone(),
        clock.clone(),
        clock.now(),
        &config(dir),
    );
    let counted = Arc::new(CountingQueue {
        inner: deps.direct_queue.clone(),
        enqueued: AtomicUsize::new(0),
    });
    deps.direct_queue = counted.clone();
    (deps, counted)
}

/// Appends `count` messages from `sender` to `receiver` as the send handler does (no enqueue),
/// numbered from `first`.
async fn send(embedded: &Embedded, sender: UserId, receiver: UserId, first: u64, count: u64) {
    for n in first..first + count {
        let sent = Event::DirectMessageSent {
            message_id: MessageId::new_time_ordered(),
            sender,
            receiver,
            text: format!("{sender} {n}"),
            sent_at: SystemClock.now(),
            blocks_version: 0,
        };
        embedded
            .events
            .append(AppendRequest::single(
                StreamId::outbox(sender),
                n,
                vec![NewEvent::new(sent)],
            ))
            .await
            .expect("accepted");
    }
}

/// The texts in `receiver`'s inbox once it holds `expected` messages.
async fn inbox(embedded: &Embedded, receiver: UserId, expected: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let entries = embedded
            .read
            .inbox_after(receiver, 0, 1_000)
            .await
            .expect("inbox");
        if entries.len() >= expected {
            return entries.into_iter().map(|e| e.message.message).collect();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} messages delivered",
            entries.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each sender's messages in `texts`, in the order they appear.
fn numbers_of(texts: &[String], sender: UserId) -> Vec<u64> {
    let prefix = format!("{sender} ");
    texts
        .iter()
        .filter_map(|text| text.strip_prefix(&prefix))
        .map(|n| n.parse().expect("a number"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_sends_then_they_are_delivered_once_in_order_without_a_queue_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let senders = [
        UserId::new_random(),
        UserId::new_random(),
        UserId::new_random(),
    ];
    let receiver = UserId::new_random();

    let (first_deps, first_queue) = deps(&embedded, dir.path());
    let workers = Workers::start(first_deps);
    for sender in senders {
        send(&embedded, sender, receiver, 0, 10).await;
    }
    inbox(&embedded, receiver, 30).await;
    workers.stop().await;

    // A restart resumes from the dispatcher's checkpoint and delivers only what is new.
    for sender in senders {
        send(&embedded, sender, receiver, 10, 5).await;
    }
    let (second_deps, second_queue) = deps(&embedded, dir.path());
    let workers = Workers::start(second_deps);
    let texts = inbox(&embedded, receiver, 45).await;
    // Anything delivered twice would show up by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let texts_later = inbox(&embedded, receiver, 45).await;
    workers.stop().await;

    assert_eq!(texts, texts_later, "a message was delivered twice");
    assert_eq!(texts.len(), 45);
    for sender in senders {
        assert_eq!(numbers_of(&texts, sender), (0..15).collect::<Vec<_>>());
    }
    assert_eq!(first_queue.enqueued.load(Ordering::SeqCst), 0);
    assert_eq!(second_queue.enqueued.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_delivery_that_fails_then_it_is_queued_and_delivered_once_from_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let (sender, receiver) = (UserId::new_random(), UserId::new_random());
    let (mut deps, queue) = deps(&embedded, dir.path());
    let failing = Arc::new(FailingDeliveries {
        inner: embedded.events.clone(),
        failures: AtomicUsize::new(1),
    });
    deps.processor = Arc::new(messaging_commands::Processor::new(failing.clone()));
    let workers = Workers::start(deps);

    send(&embedded, sender, receiver, 0, 3).await;
    let texts = inbox(&embedded, receiver, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let texts_later = inbox(&embedded, receiver, 3).await;
    workers.stop().await;

    assert_eq!(
        failing.failures.load(Ordering::SeqCst),
        0,
        "no failure injected"
    );
    assert_eq!(texts, texts_later, "a message was delivered twice");
    assert_eq!(numbers_of(&texts, sender), vec![0, 1, 2]);
    // The failed message, and the later ones of its sender held back behind it when they
    // were in the same batch, went through the queue.
    let queued = queue.enqueued.load(Ordering::SeqCst);
    assert!((1..=3).contains(&queued), "{queued} queued");
}
