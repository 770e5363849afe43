//! The in-process delivery hub of the local server: the projector tells it about every inbox
//! entry it applied ([`DeliveryListener`]), and it fans the message out to whoever listens for
//! that user right now: long polls waiting on `get-new-messages?wait=N` ([`InboxWaiter`]) and
//! open WebSocket connections.
//!
//! Memory is bounded: a user has a channel only while someone listens (the last listener to
//! leave removes it), and each channel is a ring of [`CHANNEL_CAPACITY`] messages. Publishing
//! never waits: a listener that falls more than a ring behind loses messages and learns it
//! (`Lagged`), and re-syncs from the inbox, which stays the source of truth.

use axum::extract::ws::Utf8Bytes;
use messaging_events::UserId;
use messaging_projections::{
    message_json, Delivery, DeliveryListener, InboxWaiter, Wake, Wakeup, MAX_LONG_POLL,
};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};

/// Messages a listener may fall behind by before it lags.
pub const CHANNEL_CAPACITY: usize = 64;
/// Shards of the user map, so that listeners of different users rarely share a lock.
const SHARDS: usize = 32;

type Channels = HashMap<UserId, broadcast::Sender<Utf8Bytes>>;

struct Inner {
    shards: Vec<Mutex<Channels>>,
    stop: watch::Sender<bool>,
    connections: AtomicUsize,
    all_closed: Notify,
}

/// The hub; cheap to clone (shared).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Hub {
        let (stop, _) = watch::channel(false);
        Hub {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                stop,
                connections: AtomicUsize::new(0),
                all_closed: Notify::new(),
            }),
        }
    }

    fn shard(&self, user: UserId) -> &Mutex<Channels> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut hasher);
        &self.inner.shards[(hasher.finish() as usize) % SHARDS]
    }

    /// Listens to `user`'s deliveries from now on.
    pub fn subscribe(&self, user: UserId) -> Subscription {
        let mut channels = self.shard(user).lock().expect("hub shard");
        let receiver = channels
            .entry(user)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        Subscription {
            hub: self.clone(),
            user,
            receiver: Some(receiver),
        }
    }

    /// Users with at least one listener (for tests and the benchmark).
    pub fn listened_users(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.lock().expect("hub shard").len())
            .sum()
    }

    /// Tells every listener that the server stops: long polls answer, WebSocket connections
    /// close with a close frame.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Resolves when shutdown was asked.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    /// Whether shutdown was asked.
    pub fn is_stopping(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Counts an open WebSocket connection until the guard is dropped.
    pub fn connection_guard(&self) -> ConnectionGuard {
        self.inner.connections.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard { hub: self.clone() }
    }

    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Waits until every WebSocket connection has closed, at most `limit`; false if some
    /// were still open then.
    pub async fn connections_closed(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let closed = self.inner.all_closed.notified();
                tokio::pin!(closed);
                closed.as_mut().enable();
                if self.connections() == 0 {
                    return;
                }
                closed.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    fn publish(&self, delivery: &Delivery) {
        let channels = self.shard(delivery.user).lock().expect("hub shard");
        if let Some(sender) = channels.get(&delivery.user) {
            // Serialised once per delivery, shared by every listener of the user. An error
            // only means the last listener has just left.
            let json = Utf8Bytes::from(message_json(&delivery.entry.message));
            let _ = sender.send(json);
            // The benchmark's "projector wrote it" mark (BENCHMARKS.md, "Real-time delivery").
            tracing::trace!(message_id = %delivery.entry.message.message_id, "published");
        }
    }

    fn release(&self, user: UserId) {
        let mut channels = self.shard(user).lock().expect("hub shard");
        if channels
            .get(&user)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(&user);
        }
    }
}

impl DeliveryListener for Hub {
    fn delivered(&self, deliveries: &[Delivery]) {
        for delivery in deliveries {
            self.publish(delivery);
        }
    }
}

impl InboxWaiter for Hub {
    fn subscribe(&self, user: UserId) -> Wakeup {
        let mut subscription = Hub::subscribe(self, user);
        let mut stop = self.stopping();
        Box::pin(async move {
            tokio::select! {
                received = subscription.recv() => match received {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Wake::Delivered,
                    Err(broadcast::error::RecvError::Closed) => Wake::Stopping,
                },
                _ = stop.wait_for(|stop| *stop) => Wake::Stopping,
            }
        })
    }

    fn max_wait(&self) -> Duration {
        MAX_LONG_POLL
    }
}

/// One listener of one user's deliveries; leaving (drop) frees the user's channel if it was
/// the last one.
pub struct Subscription {
    hub: Hub,
    user: UserId,
    receiver: Option<broadcast::Receiver<Utf8Bytes>>,
}

impl Subscription {
    /// The next message (its JSON text), in projection order.
    pub async fn recv(&mut self) -> Result<Utf8Bytes, broadcast::error::RecvError> {
        match self.receiver.as_mut() {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver first, so that the count the release looks at no longer includes it.
        drop(self.receiver.take());
        self.hub.release(self.user);
    }
}

/// An open WebSocket connection, counted while alive.
pub struct ConnectionGuard {
    hub: Hub,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.hub.inner.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.hub.inner.all_closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_events::{MessageId, Timestamp};
    use messaging_projections::{InboxEntry, MessageView};

    fn delivery(user: UserId, position: u64) -> Delivery {
        Delivery {
            user,
            entry: InboxEntry {
                position,
                message: MessageView {
                    message_id: MessageId::new_random(),
                    sender_id: UserId::new_random(),
                    receiver_id: Some(user),
                    group_id: None,
                    message: format!("m{position}"),
                    sent_at: Timestamp(position as i64),
                },
            },
        }
    }

    #[tokio::test]
    async fn listeners_get_their_users_messages_in_order_and_nobody_elses() {
        let hub = Hub::new();
        let (alice, bob) = (UserId::new_random(), UserId::new_random());
        let mut first = hub.subscribe(alice);
        let mut second = hub.subscribe(alice);
        let mut other = hub.subscribe(bob);
        hub.delivered(&[delivery(alice, 1), delivery(alice, 2)]);
        for subscription in [&mut first, &mut second] {
            for n in 1..=2 {
                let json = subscription.recv().await.unwrap();
                assert!(json.as_str().contains(&format!("\"m{n}\"")), "{json}");
            }
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(20), other.recv())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_last_listener_to_leave_frees_the_channel_and_unlistened_users_cost_nothing() {
        let hub = Hub::new();
        let user = UserId::new_random();
        hub.delivered(&[delivery(user, 1)]);
        assert_eq!(hub.listened_users(), 0);
        let a = hub.subscribe(user);
        let b = hub.subscribe(user);
        assert_eq!(hub.listened_users(), 1);
        drop(a);
        assert_eq!(hub.listened_users(), 1);
        drop(b);
        assert_eq!(hub.listened_users(), 0);
    }

    #[tokio::test]
    async fn a_slow_listener_lags_instead_of_blocking_the_projector() {
        let hub = Hub::new();
        let user = UserId::new_random();
        let mut slow = hub.subscribe(user);
        let batch: Vec<Delivery> = (1..=CHANNEL_CAPACITY as u64 + 10)
            .map(|n| delivery(user, n))
            .collect();
        hub.delivered(&batch); // returns at once
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
    }

    #[tokio::test]
    async fn a_waiter_subscribed_before_a_delivery_is_woken_by_it_even_if_polled_later() {
        let hub = Hub::new();
        let user = UserId::new_random();
        let wake = InboxWaiter::subscribe(&hub, user);
        hub.delivered(&[delivery(user, 1)]);
        let woke = tokio::time::timeout(Duration::from_secs(1), wake).await;
        assert_eq!(woke, Ok(Wake::Delivered));
    }

    #[tokio::test]
    async fn shutdown_wakes_waiters_and_connections_are_counted() {
        let hub = Hub::new();
        let wake = InboxWaiter::subscribe(&hub, UserId::new_random());
        let guard = hub.connection_guard();
        assert_eq!(hub.connections(), 1);
        hub.shutdown();
        assert_eq!(wake.await, Wake::Stopping);
        assert!(!hub.connections_closed(Duration::from_millis(10)).await);
        drop(guard);
        assert!(hub.connections_closed(Duration::from_millis(10)).await);
    }
}
