//! The in-process adapter: one GCRA state per user in memory, forgotten once it is spent so
//! that memory follows the number of recently active senders, not of all users.

use super::gcra::{self, Rate};
use super::{Admission, RateLimiter};
use async_trait::async_trait;
use messaging_events::UserId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Below this many tracked users, spent states are not worth a sweep.
const MIN_SWEEP_LEN: usize = 1024;

/// Per-user limits counted in this process (the local server; one Lambda instance).
#[derive(Debug)]
pub struct InProcessRateLimiter {
    rate: Rate,
    epoch: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tats: HashMap<UserId, u64>,
    /// Sweep spent states once the map has grown past this (doubling keeps sweeps amortised O(1)).
    sweep_at: usize,
}

impl InProcessRateLimiter {
    /// A limiter admitting `rate` per user.
    pub fn new(rate: Rate) -> InProcessRateLimiter {
        InProcessRateLimiter {
            rate,
            epoch: Instant::now(),
            state: Mutex::new(State {
                tats: HashMap::new(),
                sweep_at: MIN_SWEEP_LEN,
            }),
        }
    }

    /// Users whose state is currently kept (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.lock().tats.len()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map inconsistent (each update is one
        // insert), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The decision at `now` (nanoseconds since the limiter started), for tests.
    fn admit_at(&self, user: UserId, now: u64) -> Admission {
        let mut state = self.lock();
        let (tat, admission) = gcra::decide(self.rate, state.tats.get(&user).copied(), now);
        state.tats.insert(user, tat);
        if state.tats.len() >= state.sweep_at {
            state.tats.retain(|_, tat| !gcra::is_spent(*tat, now));
            state.sweep_at = (state.tats.len() * 2).max(MIN_SWEEP_LEN);
        }
        admission
    }
}

#[async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn admit(&self, user: UserId) -> Admission {
        let now = self.now();
        self.admit_at(user, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_are_limited_independently() {
        let limiter = InProcessRateLimiter::new(Rate::per_minute(2).unwrap());
        let (alice, bob) = (UserId::new_random(), UserId::new_random());
        assert_eq!(limiter.admit(alice).await, Admission::Allowed);
        assert_eq!(limiter.admit(alice).await, Admission::Allowed);
        assert!(matches!(
            limiter.admit(alice).await,
            Admission::Limited { .. }
        ));
        assert_eq!(limiter.admit(bob).await, Admission::Allowed);
    }

    #[test]
    fn spent_states_are_swept_so_memory_follows_active_users() {
        let limiter = InProcessRateLimiter::new(Rate::per_minute(60).unwrap());
        for _ in 0..MIN_SWEEP_LEN - 1 {
            limiter.admit_at(UserId::new_random(), 0);
        }
        assert_eq!(limiter.tracked(), MIN_SWEEP_LEN - 1);
        // A minute later every earlier state is spent: the next insert sweeps them.
        limiter.admit_at(UserId::new_random(), 60_000_000_000);
        assert_eq!(limiter.tracked(), 1);
    }
}
