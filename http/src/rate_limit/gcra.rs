//! The rate decision, pure: the generic cell rate algorithm (GCRA), a token bucket kept as one
//! number per user: the "theoretical arrival time" (TAT) at which the allowance would be full
//! again. Time is nanoseconds since an arbitrary epoch, so the decision needs no clock.

use super::Admission;
use std::time::Duration;

/// Nanoseconds in a minute.
const MINUTE_NANOS: u64 = 60_000_000_000;

/// One unit every `interval`, with bursts of up to `burst` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    interval_nanos: u64,
    burst: u64,
}

impl Rate {
    /// `n` units per minute with bursts of `n`; `None` for 0 (no limit).
    pub fn per_minute(n: u32) -> Option<Rate> {
        if n == 0 {
            return None;
        }
        Some(Rate {
            interval_nanos: (MINUTE_NANOS / u64::from(n)).max(1),
            burst: u64::from(n),
        })
    }

    /// How far ahead of now the TAT may be while a unit is still admitted.
    fn tolerance(self) -> u64 {
        self.interval_nanos.saturating_mul(self.burst - 1)
    }
}

/// Decides one request at `now` given the user's stored TAT (`None`: never seen, or forgotten
/// because it had fallen behind `now`, which means the same). Returns the TAT to store and the
/// admission; a refused request leaves the TAT as it was, so refusals cost no allowance.
pub fn decide(rate: Rate, tat: Option<u64>, now: u64) -> (u64, Admission) {
    let tat = tat.map_or(now, |tat| tat.max(now));
    let ahead = tat - now;
    if ahead > rate.tolerance() {
        let wait = ahead - rate.tolerance();
        return (
            tat,
            Admission::Limited {
                retry_after: Duration::from_nanos(wait),
            },
        );
    }
    (tat.saturating_add(rate.interval_nanos), Admission::Allowed)
}

/// Whether a stored TAT carries no information any more (the allowance is full again).
pub fn is_spent(tat: u64, now: u64) -> bool {
    tat <= now
}

/// `Retry-After` in whole seconds: rounded up, at least 1 (0 would invite an immediate retry
/// that is refused again).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// Runs `count` requests at `now`, threading the TAT, and returns how many were admitted.
    fn admitted(rate: Rate, tat: &mut Option<u64>, now: u64, count: usize) -> usize {
        let mut allowed = 0;
        for _ in 0..count {
            let (next, admission) = decide(rate, *tat, now);
            *tat = Some(next);
            if admission == Admission::Allowed {
                allowed += 1;
            }
        }
        allowed
    }

    #[test]
    fn a_fresh_user_gets_a_full_burst_then_is_refused() {
        let rate = Rate::per_minute(3).unwrap();
        let mut tat = None;
        assert_eq!(admitted(rate, &mut tat, 0, 10), 3);
    }

    #[test]
    fn the_allowance_refills_at_the_rate() {
        // 3 a minute: one unit every 20 s.
        let rate = Rate::per_minute(3).unwrap();
        let mut tat = None;
        assert_eq!(admitted(rate, &mut tat, 0, 3), 3);
        let (_, refused) = decide(rate, tat, 0);
        assert_eq!(
            refused,
            Admission::Limited {
                retry_after: Duration::from_secs(20)
            }
        );
        assert_eq!(admitted(rate, &mut tat, 19 * SEC, 1), 0);
        assert_eq!(admitted(rate, &mut tat, 20 * SEC, 5), 1);
        // After a long pause the allowance is full again, never more than the burst.
        assert_eq!(admitted(rate, &mut tat, 3600 * SEC, 10), 3);
    }

    #[test]
    fn refusals_do_not_use_the_allowance() {
        let rate = Rate::per_minute(60).unwrap();
        let mut tat = None;
        assert_eq!(admitted(rate, &mut tat, 0, 60), 60);
        let before = tat;
        assert_eq!(admitted(rate, &mut tat, 0, 1000), 0);
        assert_eq!(tat, before);
        assert_eq!(admitted(rate, &mut tat, SEC, 1), 1);
    }

    #[test]
    fn zero_means_no_limit_and_huge_limits_do_not_overflow() {
        assert_eq!(Rate::per_minute(0), None);
        let rate = Rate::per_minute(u32::MAX).unwrap();
        let mut tat = None;
        assert_eq!(admitted(rate, &mut tat, u64::MAX - SEC, 100), 100);
    }

    #[test]
    fn spent_states_can_be_forgotten() {
        let rate = Rate::per_minute(2).unwrap();
        let (tat, _) = decide(rate, None, 10 * SEC);
        assert!(!is_spent(tat, 10 * SEC));
        assert!(is_spent(tat, 40 * SEC));
        // Forgetting a spent state decides exactly like keeping it.
        assert_eq!(
            decide(rate, Some(tat), 40 * SEC),
            decide(rate, None, 40 * SEC)
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(20)), 20);
        assert_eq!(retry_after_secs(Duration::from_millis(20_001)), 21);
    }
}
