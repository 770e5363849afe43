//! The background loops of the local server: what Lambda event source mappings do on AWS (the
//! projector on the change feed, one processor per queue) plus the re-enqueue sweep, and the
//! dispatcher, which hands accepted messages from the change feed to the processor (see
//! `dispatch.rs`; the queues then carry only retries and sweeps).

use crate::dispatch::Dispatcher;
use crate::lag;
use messaging_commands::{Processor, Sweeper};
use messaging_events::{
    ChangeFeed, Clock, Event, QueueMessage, RecordedEvent, Timestamp, UserId, WorkQueue,
};
use messaging_projections::Projector;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// The change-feed consumer name of the projector; its checkpoint survives restarts.
pub const PROJECTOR_CONSUMER: &str = "projector";
/// Most feed records projected in one batch.
const FEED_BATCH: usize = 2_000;
/// Most queue messages handled in one batch (a Lambda batch size).
const QUEUE_BATCH: usize = 256;
/// How long a received message stays hidden; a crash mid-batch redelivers after this.
const VISIBILITY: Duration = Duration::from_secs(30);
/// The longest an idle loop sleeps without a wake-up, in case a notification was missed.
pub(crate) const IDLE_POLL: Duration = Duration::from_secs(1);
/// Pause after a first failure before retrying; it doubles with each failure in a row.
const BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between retries, so that a lasting fault neither spins nor floods the log.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Pause between attempts of the startup sweep while it fails.
const STARTUP_SWEEP_RETRY: Duration = Duration::from_secs(1);
/// After this many receives, a failing message no longer holds back later messages of its
/// sender: a poison message must not stall a sender forever.
const HOLD_BACK_RECEIVES: u32 = 5;
/// How long stopping waits for a loop to finish its current batch before aborting it.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// Everything the loops work on.
pub struct WorkerDeps {
    /// The event store's change feed.
    pub feed: Arc<dyn ChangeFeed>,
    /// Notified after each committed append.
    pub appended: Arc<Notify>,
    /// Writes the read models.
    pub projector: Projector,
    /// Direct-message work.
    pub direct_queue: Arc<dyn WorkQueue>,
    /// Notified after each enqueue on `direct_queue`.
    pub direct_enqueued: Arc<Notify>,
    /// Group-message work.
    pub group_queue: Arc<dyn WorkQueue>,
    /// Notified after each enqueue on `group_queue`.
    pub group_enqueued: Arc<Notify>,
    /// Decides deliveries.
    pub processor: Arc<Processor>,
    /// Re-enqueues accepted work that has no outcome.
    pub sweeper: Arc<Sweeper>,
    /// Where "now" comes from for the sweep.
    pub clock: Arc<dyn Clock>,
    /// When this process started: work accepted before it and unsettled is redone at once.
    pub started_at: Timestamp,
    /// How old unsettled work must be before the periodic sweep redoes it.
    pub sweep_after: Duration,
}

/// The running loops; [`Workers::stop`] ends them.
pub struct Workers {
    shutdown: watch::Sender<bool>,
    caught_up: watch::Receiver<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Workers {
    /// Starts the projector, the dispatcher, the two queues' processors and the sweep on the
    /// current runtime.
    pub fn start(deps: WorkerDeps) -> Workers {
        let (shutdown, stop) = watch::channel(false);
        let (caught_up_tx, caught_up) = watch::channel(false);
        let dispatcher = Dispatcher {
            feed: Arc::clone(&deps.feed),
            appended: Arc::clone(&deps.appended),
            processor: Arc::clone(&deps.processor),
            direct_queue: Arc::clone(&deps.direct_queue),
            group_queue: Arc::clone(&deps.group_queue),
        };
        let tasks = vec![
            ("dispatcher", tokio::spawn(dispatcher.run(stop.clone()))),
            (
                "projector",
                tokio::spawn(project_loop(
                    deps.feed,
                    deps.appended,
                    deps.projector,
                    caught_up_tx,
                    stop.clone(),
                )),
            ),
            (
                "direct processor",
                tokio::spawn(process_loop(
                    "direct",
                    deps.direct_queue,
                    deps.direct_enqueued,
                    deps.processor.clone(),
                    stop.clone(),
                )),
            ),
            (
                "group processor",
                tokio::spawn(process_loop(
                    "group",
                    deps.group_queue,
                    deps.group_enqueued,
                    deps.processor,
                    stop.clone(),
                )),
            ),
            (
                "sweep",
                tokio::spawn(sweep_loop(
                    deps.sweeper,
                    deps.clock,
                    deps.started_at,
                    deps.sweep_after,
                    caught_up.clone(),
                    stop,
                )),
            ),
        ];
        Workers {
            shutdown,
            caught_up,
            tasks,
        }
    }

    /// Resolves once the projector has read the change feed to its end at least once.
    pub async fn caught_up(&self) {
        let mut caught_up = self.caught_up.clone();
        // An error means the projector is gone; there is nothing left to wait for.
        let _ = caught_up.wait_for(|done| *done).await;
    }

    /// Signals every loop to stop after its current batch and waits for them.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        for (name, mut task) in self.tasks {
            match tokio::time::timeout(STOP_GRACE, &mut task).await {
                Ok(Ok(())) => tracing::debug!(worker = name, "worker stopped"),
                Ok(Err(error)) => tracing::error!(worker = name, %error, "worker died"),
                Err(_) => {
                    // Aborting is safe: every loop is at-least-once and its work idempotent.
                    tracing::warn!(worker = name, "worker did not stop in time; aborting it");
                    task.abort();
                }
            }
        }
    }
}

/// Resolves when shutdown is signalled (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Sleeps for `duration` unless shutdown comes first; false means shutdown.
pub(crate) async fn pause(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => true,
        _ = stopped(stop) => false,
    }
}

/// Waits for `wake`, the idle timeout or shutdown; false means shutdown.
pub(crate) async fn idle(wake: impl Future<Output = ()>, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = wake => true,
        _ = tokio::time::sleep(IDLE_POLL) => true,
        _ = stopped(stop) => false,
    }
}

pub(crate) fn is_stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

/// Exponential backoff over consecutive failures.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The pause before the next retry.
    pub(crate) fn next(&mut self) -> Duration {
        let pause = BACKOFF
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        pause
    }

    /// Forgets past failures after a success.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Projects the change feed into the read models, committing the checkpoint after each batch
/// (at-least-once: a failed batch is read and applied again; changes are idempotent).
async fn project_loop(
    feed: Arc<dyn ChangeFeed>,
    appended: Arc<Notify>,
    projector: Projector,
    caught_up: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    while !is_stopping(&stop) {
        // Registered before the poll so that an append racing with an empty poll still wakes us.
        let wake = appended.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();

        let records = match feed.poll(PROJECTOR_CONSUMER, FEED_BATCH).await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "polling the change feed failed; retrying");
                if !pause(backoff.next(), &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let Some(last) = records.iter().map(|record| record.position).max() else {
            backoff.reset();
            caught_up.send_if_modified(|done| !std::mem::replace(done, true));
            if !idle(wake, &mut stop).await {
                break;
            }
            continue;
        };
        let events: Vec<RecordedEvent> = records.into_iter().map(|record| record.event).collect();
        if let Err(error) = projector.handle(&events).await {
            tracing::warn!(%error, events = events.len(), "projecting a batch failed; retrying");
            if !pause(backoff.next(), &mut stop).await {
                break;
            }
            continue;
        }
        match feed.commit(PROJECTOR_CONSUMER, last).await {
            Ok(()) => {
                backoff.reset();
                tracing::debug!(
                    events = events.len(),
                    behind_ms = lag::ms_since(lag::oldest(&events)),
                    "projected a feed batch"
                );
            }
            Err(error) => {
                tracing::warn!(%error, position = last, "committing the feed checkpoint failed");
                if !pause(backoff.next(), &mut stop).await {
                    break;
                }
            }
        }
    }
}

/// Hands queued work to the processor and acknowledges what it settled. Failed messages stay
/// unacknowledged and reappear after the visibility timeout.
async fn process_loop(
    queue_name: &'static str,
    queue: Arc<dyn WorkQueue>,
    enqueued: Arc<Notify>,
    processor: Arc<Processor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    while !is_stopping(&stop) {
        let wake = enqueued.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();

        let messages = match queue.receive(QUEUE_BATCH, VISIBILITY).await {
            Ok(messages) => {
                backoff.reset();
                messages
            }
            Err(error) => {
                tracing::warn!(queue = queue_name, %error, "receiving work failed; retrying");
                if !pause(backoff.next(), &mut stop).await {
                    break;
                }
                continue;
            }
        };
        if messages.is_empty() {
            if !idle(wake, &mut stop).await {
                break;
            }
            continue;
        }

        let (count, oldest) = (
            messages.len(),
            lag::oldest(messages.iter().map(|m| &m.item.sent)),
        );
        let settled = process_batch(queue_name, &processor, messages)
            .await
            .settled;
        tracing::debug!(
            queue = queue_name,
            messages = count,
            behind_ms = lag::ms_since(oldest),
            "processed a queue batch"
        );
        if !settled.is_empty() {
            if let Err(error) = queue.ack(settled).await {
                // Redelivery is harmless: the processor is idempotent.
                tracing::warn!(queue = queue_name, %error, "acknowledging work failed");
            }
        }
    }
}

/// What became of a batch.
#[derive(Default)]
pub(crate) struct BatchOutcome {
    /// The receipts of the messages that are done with (processed, or never processable).
    pub(crate) settled: Vec<String>,
    /// The messages to try again, in their sender's order.
    pub(crate) left: Vec<QueueMessage>,
}

/// Processes a batch. Messages of different senders are processed concurrently (so that the
/// store can commit their writes together); those of one sender in queue order, and after a
/// failure the sender's later messages are held back: delivering them first would break the
/// per-sender order.
pub(crate) async fn process_batch(
    queue_name: &'static str,
    processor: &Arc<Processor>,
    messages: Vec<QueueMessage>,
) -> BatchOutcome {
    let mut chains: Vec<Vec<QueueMessage>> = Vec::new();
    let mut chain_of: HashMap<Option<UserId>, usize> = HashMap::new();
    for message in messages {
        let sender = sender_of(&message.item.sent);
        let index = *chain_of.entry(sender).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[index].push(message);
    }

    let mut tasks = JoinSet::new();
    for chain in chains {
        let processor = Arc::clone(processor);
        tasks.spawn(async move { process_chain(queue_name, &processor, chain).await });
    }
    let mut outcome = BatchOutcome::default();
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(chain) => {
                outcome.settled.extend(chain.settled);
                outcome.left.extend(chain.left);
            }
            // Its messages are neither settled nor left: from a queue they come back after the
            // visibility timeout; from the dispatcher, whose checkpoint moves on, the sweep
            // re-enqueues them once they are `sweep_after` old (they stay pending).
            Err(error) => tracing::error!(queue = queue_name, %error, "processing task died"),
        }
    }
    outcome
}

/// Processes one sender's messages in order, stopping at a retryable failure.
async fn process_chain(
    queue_name: &'static str,
    processor: &Processor,
    chain: Vec<QueueMessage>,
) -> BatchOutcome {
    let mut outcome = BatchOutcome {
        settled: Vec::with_capacity(chain.len()),
        left: Vec::new(),
    };
    let mut holding_back = false;
    for message in chain {
        let event_id = message.item.sent.event_id;
        if holding_back {
            tracing::debug!(queue = queue_name, %event_id, "held back behind a failed message of the same sender");
            outcome.left.push(message);
            continue;
        }
        match processor.handle(&message.item).await {
            Ok(()) => outcome.settled.push(message.receipt),
            Err(error) if !error.is_retryable() => {
                // Retrying can never succeed; on AWS this would go to the dead-letter queue.
                tracing::error!(queue = queue_name, %event_id, %error, "dropping unprocessable work");
                outcome.settled.push(message.receipt);
            }
            Err(error) => {
                tracing::warn!(
                    queue = queue_name,
                    %event_id,
                    receive_count = message.receive_count,
                    %error,
                    "processing failed; the message will be redelivered"
                );
                holding_back = message.receive_count < HOLD_BACK_RECEIVES;
                outcome.left.push(message);
            }
        }
    }
    outcome
}

/// The sender of an accepted message, the unit within which order must hold.
fn sender_of(sent: &RecordedEvent) -> Option<UserId> {
    match &sent.event {
        Event::DirectMessageSent { sender, .. } | Event::GroupMessageSent { sender, .. } => {
            Some(*sender)
        }
        _ => None,
    }
}

/// Closes the gap between append and enqueue: a process that died in between left accepted
/// work that no queue holds. Once the read models are caught up, everything accepted before
/// this process started and still unsettled is enqueued again; after that, periodically,
/// whatever has stayed unsettled for `sweep_after`.
pub(crate) async fn sweep_loop(
    sweeper: Arc<Sweeper>,
    clock: Arc<dyn Clock>,
    started_at: Timestamp,
    sweep_after: Duration,
    mut caught_up: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    // Before the projector catches up, the pending list misses work appended just before the
    // last stop, and a sweep now would silently skip it.
    tokio::select! {
        result = caught_up.wait_for(|done| *done) => if result.is_err() { return },
        _ = stopped(&mut stop) => return,
    }
    loop {
        match sweeper.run_once(started_at).await {
            Ok(0) => break,
            Ok(count) => {
                tracing::info!(count, "re-enqueued work left unsettled by an earlier run");
                break;
            }
            Err(error) => {
                tracing::warn!(%error, "startup sweep failed; retrying");
                if !pause(STARTUP_SWEEP_RETRY, &mut stop).await {
                    return;
                }
            }
        }
    }

    let period = (sweep_after / 2).max(Duration::from_millis(10));
    let age = i64::try_from(sweep_after.as_micros()).unwrap_or(i64::MAX);
    while pause(period, &mut stop).await {
        let before = Timestamp(clock.now().micros().saturating_sub(age));
        match sweeper.run_once(before).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "re-enqueued unsettled work"),
            Err(error) => tracing::warn!(%error, "sweep failed; retrying at the next period"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap_and_resets() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.next(), BACKOFF);
        assert_eq!(backoff.next(), BACKOFF * 2);
        for _ in 0..40 {
            assert!(backoff.next() <= MAX_BACKOFF);
        }
        assert_eq!(backoff.next(), MAX_BACKOFF);
        backoff.reset();
        assert_eq!(backoff.next(), BACKOFF);
    }

    #[tokio::test]
    async fn given_shutdown_when_idle_then_it_returns_at_once() {
        let (tx, mut rx) = watch::channel(false);
        tx.send_replace(true);
        let started = std::time::Instant::now();
        assert!(!idle(std::future::pending(), &mut rx).await);
        assert!(!pause(Duration::from_secs(60), &mut rx).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn given_a_notification_registered_before_it_fires_then_idle_wakes() {
        let (_tx, mut rx) = watch::channel(false);
        let notify = Arc::new(Notify::new());
        let wake = notify.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        // Fired between registration and waiting, as an append racing with a poll would.
        notify.notify_waiters();
        let started = std::time::Instant::now();
        assert!(idle(wake, &mut rx).await);
        assert!(started.elapsed() < IDLE_POLL / 2);
    }

    #[tokio::test]
    async fn given_no_notification_then_idle_gives_up_after_the_poll_interval() {
        let (_tx, mut rx) = watch::channel(false);
        assert!(idle(std::future::pending(), &mut rx).await);
    }
}
