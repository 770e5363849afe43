//! Where inboxes end, as far as one processor knows.
//!
//! A delivery appends at an inbox's next position, and so reads where the inbox ends first: one
//! point read per delivery, a hundred per group message to a hundred members. A processor that
//! is the only writer of inboxes (the local server: one process, one processor) wrote every end
//! it would read, and can remember them instead. A remembered end may still be stale (another
//! process delivered since): the append's expected version then fails with a conflict, and the
//! delivery forgets the end and reads it. Stale ends cost a refused append each, cheap on the
//! embedded store, a cancelled transaction and a round trip on DynamoDB, where many Lambda
//! instances deliver to the same inboxes: so remembering is a choice of the driver, off unless
//! asked for.
//!
//! Ends are read and written only by the delivery that holds the inbox's turn (`inbox_locks`),
//! so no two deliveries to one inbox disagree about them.

use messaging_events::UserId;
use std::collections::HashMap;
use std::sync::Mutex;

/// Inboxes whose end is remembered at most; past it the memory starts over, which costs only
/// the reads it saved.
const REMEMBERED_INBOXES: usize = 65_536;

/// The last position this processor appended at, per inbox, when remembering is on.
#[derive(Default)]
pub(crate) struct InboxEnds {
    ends: Option<Mutex<HashMap<UserId, u64>>>,
}

impl InboxEnds {
    /// Ends that are remembered.
    pub(crate) fn remembered() -> Self {
        Self {
            ends: Some(Mutex::default()),
        }
    }

    /// Where `user`'s inbox ended after this processor's last append to it, if remembered.
    pub(crate) fn get(&self, user: UserId) -> Option<u64> {
        let ends = self.ends.as_ref()?;
        lock(ends).get(&user).copied()
    }

    /// `user`'s inbox ends at `end` (this processor just appended there).
    pub(crate) fn set(&self, user: UserId, end: u64) {
        let Some(ends) = &self.ends else { return };
        let mut ends = lock(ends);
        if ends.len() >= REMEMBERED_INBOXES && !ends.contains_key(&user) {
            ends.clear();
        }
        ends.insert(user, end);
    }

    /// The remembered end of `user`'s inbox was wrong, or an append's outcome is unknown.
    pub(crate) fn forget(&self, user: UserId) {
        if let Some(ends) = &self.ends {
            lock(ends).remove(&user);
        }
    }
}

fn lock(ends: &Mutex<HashMap<UserId, u64>>) -> std::sync::MutexGuard<'_, HashMap<UserId, u64>> {
    ends.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_remembering_off_then_nothing_is_remembered() {
        let ends = InboxEnds::default();
        let user = UserId::new_random();
        ends.set(user, 3);
        assert_eq!(ends.get(user), None);
    }

    #[test]
    fn given_an_end_set_then_it_is_remembered_until_forgotten() {
        let ends = InboxEnds::remembered();
        let user = UserId::new_random();
        assert_eq!(ends.get(user), None);
        ends.set(user, 3);
        ends.set(user, 4);
        assert_eq!(ends.get(user), Some(4));
        ends.forget(user);
        assert_eq!(ends.get(user), None);
    }

    #[test]
    fn given_the_memory_full_then_it_starts_over() {
        let ends = InboxEnds::remembered();
        let first = UserId::new_random();
        ends.set(first, 1);
        for _ in 1..REMEMBERED_INBOXES {
            ends.set(UserId::new_random(), 1);
        }
        let newcomer = UserId::new_random();
        ends.set(newcomer, 2);
        assert_eq!(ends.get(first), None);
        assert_eq!(ends.get(newcomer), Some(2));
    }
}
