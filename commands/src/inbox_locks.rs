//! One delivery at a time per inbox within a processor.
//!
//! A delivery reads where an inbox ends and appends at the next position; two deliveries to
//! one inbox that overlap make one of them lose the race, roll back and read again. Group
//! messages to one group reach the same inboxes at once, and every lost race costs the store
//! a write it throws away: under load the rollbacks grow with the commit latency and eat the
//! writer's time (a tipping point at about 2,000 mixed operations per second locally).
//! Queued here instead, the second delivery waits for the first to commit and then appends
//! without a conflict. Processes still race each other (Lambda instances); the retry loop in
//! the processor covers that.

use messaging_events::UserId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Slot = Arc<AsyncMutex<()>>;

/// The inboxes with a delivery under way or waiting, each with its turn-taking lock.
#[derive(Default)]
pub(crate) struct InboxLocks {
    slots: Mutex<HashMap<UserId, Slot>>,
}

/// Held while one delivery to `user`'s inbox runs; the next one waits for its drop.
pub(crate) struct InboxTurn<'a> {
    locks: &'a InboxLocks,
    user: UserId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl InboxLocks {
    /// Waits until no other delivery of this processor is under way to `user`'s inbox.
    pub(crate) async fn turn(&self, user: UserId) -> InboxTurn<'_> {
        // Made before the wait, so that a wait given up (a cancelled delivery) still forgets
        // an inbox nobody else wants.
        let mut turn = InboxTurn {
            locks: self,
            user,
            guard: None,
        };
        let slot = Arc::clone(self.lock_slots().entry(user).or_default());
        turn.guard = Some(slot.lock_owned().await);
        turn
    }

    /// How many inboxes have a delivery under way or waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock_slots().len()
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for InboxTurn<'_> {
    /// Forgets the inbox when nobody else holds or waits for it, so the map stays as small as
    /// the deliveries under way.
    fn drop(&mut self) {
        let mut slots = self.locks.lock_slots();
        drop(self.guard.take());
        // Waiters clone the slot under the map's lock: one only the map holds has none.
        if slots
            .get(&self.user)
            .is_some_and(|slot| Arc::strong_count(slot) == 1)
        {
            slots.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A turn held on one inbox, and a task that has been waiting 20 ms for the next one.
    async fn held_and_waiting(
        locks: &Arc<InboxLocks>,
    ) -> (InboxTurn<'_>, tokio::task::JoinHandle<()>) {
        let user = UserId::new_random();
        let held = locks.turn(user).await;
        let waiting = {
            let locks = Arc::clone(locks);
            tokio::spawn(async move {
                let _turn = locks.turn(user).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        (held, waiting)
    }

    #[tokio::test]
    async fn a_second_delivery_to_one_inbox_waits_for_the_first() {
        let locks = Arc::new(InboxLocks::default());
        let (first, waiting) = held_and_waiting(&locks).await;
        assert!(
            !waiting.is_finished(),
            "the second turn began before the first ended"
        );

        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the second turn never began")
            .expect("the waiting task failed");
        assert_eq!(locks.len(), 0, "an idle inbox stayed in the map");
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_nothing_behind() {
        let locks = Arc::new(InboxLocks::default());
        let (first, waiting) = held_and_waiting(&locks).await;
        // The first turn ends while the other still waits, and the waiter is cancelled before
        // it runs again: nobody is left to hold or want the inbox.
        drop(first);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(locks.len(), 0, "a cancelled wait kept its inbox in the map");
    }

    #[tokio::test]
    async fn deliveries_to_different_inboxes_do_not_wait_for_each_other() {
        let locks = InboxLocks::default();
        let _first = locks.turn(UserId::new_random()).await;
        let _second =
            tokio::time::timeout(Duration::from_secs(5), locks.turn(UserId::new_random()))
                .await
                .expect("a turn on another inbox waited");
        assert_eq!(locks.len(), 2);
    }
}
