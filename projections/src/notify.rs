//! Real-time delivery ports: who is told when a delivery reaches an inbox, and what a long poll
//! waits on.
//!
//! Polling stays the contract's base: the inbox is the source of truth, a notification only
//! says "look now". A [`DeliveryListener`] is told after the read store applied a batch (so a
//! query made after the notification sees the entry), through [`NotifyingReadStore`], the
//! decorator the projector writes through. An [`InboxWaiter`] is what `get-new-messages?wait=N`
//! blocks on between two queries: the local server's in-process hub, or, where no hub can
//! exist (a Lambda function sees no projector), a timer that re-queries ([`PollingWaiter`]).

use crate::{HistoryEntry, InboxEntry, MessageView, PendingWork, ReadModelChange};
use crate::{ReadStore, ReadStoreError};
use async_trait::async_trait;
use messaging_events::{GroupId, Timestamp, UserId};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The longest wait a client may ask of `get-new-messages` (`wait=0..=20` seconds).
pub const MAX_LONG_POLL: Duration = Duration::from_secs(20);

/// One inbox entry the read store has just applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Whose inbox.
    pub user: UserId,
    /// The entry.
    pub entry: InboxEntry,
}

/// Told after a batch of read-model changes was applied, with the inbox entries among them
/// (in the batch's order). Called on the projector's path: it must not block (drop rather
/// than wait), and it may see an entry twice (the projector is at-least-once).
pub trait DeliveryListener: Send + Sync {
    /// The entries just applied.
    fn delivered(&self, deliveries: &[Delivery]);
}

/// A [`ReadStore`] that tells a [`DeliveryListener`] about the inbox entries of each batch once
/// the inner store applied it. Reads go straight through.
pub struct NotifyingReadStore {
    inner: Arc<dyn ReadStore>,
    listener: Arc<dyn DeliveryListener>,
}

impl NotifyingReadStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ReadStore>, listener: Arc<dyn DeliveryListener>) -> Self {
        Self { inner, listener }
    }
}

#[async_trait]
impl ReadStore for NotifyingReadStore {
    async fn apply(&self, changes: &[ReadModelChange]) -> Result<(), ReadStoreError> {
        self.inner.apply(changes).await?;
        let deliveries: Vec<Delivery> = changes
            .iter()
            .filter_map(|change| match change {
                ReadModelChange::InboxEntry { user, entry } => Some(Delivery {
                    user: *user,
                    entry: entry.clone(),
                }),
                _ => None,
            })
            .collect();
        if !deliveries.is_empty() {
            self.listener.delivered(&deliveries);
        }
        Ok(())
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

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something was delivered to the user (or may have been): query again.
    Delivered,
    /// Nothing known, but it is time to look again (a polling waiter's tick).
    Recheck,
    /// The server is stopping: answer with what there is.
    Stopping,
}

/// A wait in progress: it already listens when it is created, before it is first polled.
pub type Wakeup = Pin<Box<dyn Future<Output = Wake> + Send>>;

/// What a long poll blocks on between two queries.
pub trait InboxWaiter: Send + Sync {
    /// Starts listening for deliveries to `user` *now* (before the caller's query, so that a
    /// delivery applied between the query and the wait is not missed) and returns the wait.
    fn subscribe(&self, user: UserId) -> Wakeup;

    /// The longest this waiter lets a request wait; longer asks are shortened to it.
    fn max_wait(&self) -> Duration;
}

/// A waiter without notifications: it wakes every `interval` to re-query, and caps waits at
/// `max_wait`. What a Lambda function uses, where the projector runs elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollingWaiter {
    /// Pause between two queries.
    pub interval: Duration,
    /// The cap on a request's wait.
    pub max_wait: Duration,
}

impl PollingWaiter {
    /// The HTTP Lambda's policy: re-query every second, wait at most 5 s (a waiting function
    /// is billed for every millisecond and holds one unit of concurrency; see the README).
    pub const LAMBDA: PollingWaiter = PollingWaiter {
        interval: Duration::from_secs(1),
        max_wait: Duration::from_secs(5),
    };
}

impl InboxWaiter for PollingWaiter {
    fn subscribe(&self, _user: UserId) -> Wakeup {
        let interval = self.interval;
        Box::pin(async move {
            tokio::time::sleep(interval).await;
            Wake::Recheck
        })
    }

    fn max_wait(&self) -> Duration {
        self.max_wait
    }
}

/// Runs `query` until it gives a non-empty answer (`is_empty` false) or `wait` (capped by the
/// waiter) has passed, waiting on `waiter` in between; returns the last answer. The wait is
/// subscribed before each query, so a delivery that lands between a query and the wait wakes
/// it at once. Errors end the poll at once.
pub async fn long_poll<T, E, F, Fut>(
    waiter: &dyn InboxWaiter,
    user: UserId,
    wait: Duration,
    mut query: F,
    is_empty: impl Fn(&T) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + wait.min(waiter.max_wait());
    loop {
        let wake = waiter.subscribe(user);
        let answer = query().await?;
        if !is_empty(&answer) || tokio::time::Instant::now() >= deadline {
            return Ok(answer);
        }
        match tokio::time::timeout_at(deadline, wake).await {
            Ok(Wake::Delivered | Wake::Recheck) => continue,
            Ok(Wake::Stopping) | Err(_) => return Ok(answer),
        }
    }
}

/// A message as the REST contract shows it (the GET endpoints' message object), for pushing.
#[derive(Serialize)]
struct MessageJson<'a> {
    message_id: String,
    sender_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    receiver_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<String>,
    message: &'a str,
    sent_at: String,
}

/// The JSON text of `message` exactly as `GET /get-new-messages` shows it: what is pushed to
/// WebSocket clients (they deduplicate by `message_id`).
pub fn message_json(message: &MessageView) -> String {
    let json = MessageJson {
        message_id: message.message_id.to_string(),
        sender_id: message.sender_id.to_string(),
        receiver_id: message.receiver_id.map(|id| id.to_string()),
        group_id: message.group_id.map(|id| id.to_string()),
        message: &message.message,
        sent_at: message.sent_at.to_rfc3339(),
    };
    serde_json::to_string(&json).expect("a message always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryReadStore;
    use messaging_events::MessageId;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use tokio::sync::Notify;

    fn view(receiver: Option<UserId>, group: Option<GroupId>) -> MessageView {
        MessageView {
            message_id: MessageId::new_random(),
            sender_id: UserId::new_random(),
            receiver_id: receiver,
            group_id: group,
            message: "hi \"there\"".into(),
            sent_at: Timestamp(1_500_000),
        }
    }

    #[test]
    fn pushed_json_is_the_get_endpoints_message_object() {
        let receiver = UserId::new_random();
        let v = view(Some(receiver), None);
        let got: serde_json::Value = serde_json::from_str(&message_json(&v)).unwrap();
        assert_eq!(
            got,
            serde_json::json!({
                "message_id": v.message_id.to_string(),
                "sender_id": v.sender_id.to_string(),
                "receiver_id": receiver.to_string(),
                "message": "hi \"there\"",
                "sent_at": "1970-01-01T00:00:01.5Z",
            })
        );
        let group = GroupId::new_random();
        let got: serde_json::Value =
            serde_json::from_str(&message_json(&view(None, Some(group)))).unwrap();
        assert_eq!(got["group_id"], group.to_string());
        assert!(got.get("receiver_id").is_none());
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Delivery>>);

    impl DeliveryListener for Recorder {
        fn delivered(&self, deliveries: &[Delivery]) {
            self.0.lock().unwrap().extend_from_slice(deliveries);
        }
    }

    #[tokio::test]
    async fn the_listener_hears_inbox_entries_after_they_are_readable() {
        let inner: Arc<dyn ReadStore> = Arc::new(MemoryReadStore::default());
        let recorder = Arc::new(Recorder::default());
        let store = NotifyingReadStore::new(inner.clone(), recorder.clone());
        let user = UserId::new_random();
        let entry = InboxEntry {
            position: 1,
            message: view(Some(user), None),
        };
        store
            .apply(&[
                ReadModelChange::ReadMarker { user, up_to: 0 },
                ReadModelChange::InboxEntry {
                    user,
                    entry: entry.clone(),
                },
            ])
            .await
            .unwrap();
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec![Delivery {
                user,
                entry: entry.clone()
            }]
        );
        assert_eq!(store.inbox_after(user, 0, 10).await.unwrap(), vec![entry]);
        // A batch without inbox entries tells nobody.
        store
            .apply(&[ReadModelChange::ReadMarker { user, up_to: 1 }])
            .await
            .unwrap();
        assert_eq!(recorder.0.lock().unwrap().len(), 1);
    }

    /// A waiter woken by hand; counts subscriptions.
    #[derive(Default)]
    struct ManualWaiter {
        notify: Arc<Notify>,
        subscriptions: AtomicUsize,
    }

    impl InboxWaiter for ManualWaiter {
        fn subscribe(&self, _user: UserId) -> Wakeup {
            self.subscriptions.fetch_add(1, Ordering::SeqCst);
            let notify = self.notify.clone();
            Box::pin(async move {
                notify.notified().await;
                Wake::Delivered
            })
        }

        fn max_wait(&self) -> Duration {
            MAX_LONG_POLL
        }
    }

    #[tokio::test]
    async fn a_long_poll_answers_at_the_first_non_empty_query() {
        let waiter = ManualWaiter::default();
        let calls = AtomicUsize::new(0);
        let notify = waiter.notify.clone();
        let poll = long_poll(
            &waiter,
            UserId::new_random(),
            Duration::from_secs(20),
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, ()>(if n == 0 { vec![] } else { vec![n] }) }
            },
            Vec::is_empty,
        );
        let wake = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            notify.notify_waiters();
        };
        let started = tokio::time::Instant::now();
        let (answer, ()) = tokio::join!(poll, wake);
        assert_eq!(answer, Ok(vec![1]));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert_eq!(waiter.subscriptions.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_long_poll_times_out_with_the_empty_answer() {
        let waiter = ManualWaiter::default();
        let started = tokio::time::Instant::now();
        let answer = long_poll(
            &waiter,
            UserId::new_random(),
            Duration::from_millis(300),
            || async { Ok::<Vec<u8>, ()>(vec![]) },
            Vec::is_empty,
        )
        .await;
        assert_eq!(answer, Ok(vec![]));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_polling_waiter_requeries_every_interval_and_caps_the_wait() {
        assert_eq!(PollingWaiter::LAMBDA.interval, Duration::from_secs(1));
        assert_eq!(PollingWaiter::LAMBDA.max_wait, Duration::from_secs(5));
        let waiter = PollingWaiter {
            interval: Duration::from_millis(100),
            max_wait: Duration::from_millis(500),
        };
        let calls = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let answer = long_poll(
            &waiter,
            UserId::new_random(),
            Duration::from_secs(20),
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok::<Vec<u8>, ()>(vec![]) }
            },
            Vec::is_empty,
        )
        .await;
        assert_eq!(answer, Ok(vec![]));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(5),
            "{took:?}"
        );
        // About every 100 ms over the 500 ms cap.
        let calls = calls.load(Ordering::SeqCst);
        assert!((3..=6).contains(&calls), "{calls} queries");
    }

    #[tokio::test]
    async fn errors_end_a_long_poll_at_once() {
        let waiter = ManualWaiter::default();
        let answer: Result<Vec<u8>, &str> = long_poll(
            &waiter,
            UserId::new_random(),
            Duration::from_secs(20),
            || async { Err("down") },
            Vec::is_empty,
        )
        .await;
        assert_eq!(answer, Err("down"));
    }
}
