//! Per-user rate limiting of sends: a port ([`RateLimiter`]), its configuration
//! ([`RateLimit`], `MESSAGING_RATE_LIMIT_PER_MINUTE`) and the in-process adapter
//! ([`InProcessRateLimiter`]) over the pure cell-rate decision in [`gcra`].
//!
//! The in-process adapter counts per process: on the local server that is the whole system;
//! on Lambda it is per warm instance, so the bound there is best effort (N concurrent
//! instances admit up to N times the limit) and API Gateway's stage throttling is the global
//! one. A shared limiter (e.g. on DynamoDB) would implement the same trait.

pub mod gcra;
mod in_process;

pub use in_process::InProcessRateLimiter;

use async_trait::async_trait;
use messaging_events::UserId;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable that sets the limit (`0` turns limiting off).
pub const RATE_LIMIT_VAR: &str = "MESSAGING_RATE_LIMIT_PER_MINUTE";

/// Sends per user per minute when the variable is unset: ten a second sustained, far above
/// what a person types and far below what a script flooding one account would send.
pub const DEFAULT_PER_MINUTE: u32 = 600;

/// Whether a request may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; one unit of the allowance was used.
    Allowed,
    /// Refused; the allowance has room again after this long.
    Limited {
        /// How long to wait before retrying.
        retry_after: Duration,
    },
}

/// The port: decides, per user, whether one more send is admitted now.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Uses one unit of `user`'s allowance, or says how long until one is available.
    async fn admit(&self, user: UserId) -> Admission;
}

/// A limiter that admits everything (`MESSAGING_RATE_LIMIT_PER_MINUTE=0`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

#[async_trait]
impl RateLimiter for Unlimited {
    async fn admit(&self, _user: UserId) -> Admission {
        Admission::Allowed
    }
}

/// The configured limit: sends per user per minute, with bursts up to the same number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sends per user per minute; `0` means no limit.
    pub per_minute: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_minute: DEFAULT_PER_MINUTE,
        }
    }
}

/// `MESSAGING_RATE_LIMIT_PER_MINUTE` holds something that is not a count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{RATE_LIMIT_VAR}={value:?}: expected a whole number of sends per minute (0 = off)")]
pub struct RateLimitError {
    /// What the variable was set to.
    pub value: String,
}

impl RateLimit {
    /// No limit.
    pub const OFF: RateLimit = RateLimit { per_minute: 0 };

    /// Reads [`RATE_LIMIT_VAR`] through `lookup`; unset or empty means the default.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<RateLimit, RateLimitError> {
        match lookup(RATE_LIMIT_VAR).map(|value| value.trim().to_string()) {
            None => Ok(RateLimit::default()),
            Some(value) if value.is_empty() => Ok(RateLimit::default()),
            Some(value) => value
                .parse()
                .map(|per_minute| RateLimit { per_minute })
                .map_err(|_| RateLimitError { value }),
        }
    }

    /// Whether requests are limited at all.
    pub fn is_on(self) -> bool {
        self.per_minute > 0
    }

    /// The in-process limiter for this limit (or [`Unlimited`] when it is off).
    pub fn in_process(self) -> Arc<dyn RateLimiter> {
        match gcra::Rate::per_minute(self.per_minute) {
            Some(rate) => Arc::new(InProcessRateLimiter::new(rate)),
            None => Arc::new(Unlimited),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<RateLimit, RateLimitError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RateLimit::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_limit_is_on_by_default_and_zero_turns_it_off() {
        assert_eq!(read(&[]).unwrap(), RateLimit { per_minute: 600 });
        assert_eq!(
            read(&[(RATE_LIMIT_VAR, " ")]).unwrap(),
            RateLimit::default()
        );
        assert_eq!(read(&[(RATE_LIMIT_VAR, "30")]).unwrap().per_minute, 30);
        assert!(!read(&[(RATE_LIMIT_VAR, "0")]).unwrap().is_on());
        for bad in ["-1", "lots", "1.5", "99999999999"] {
            let error = read(&[(RATE_LIMIT_VAR, bad)]).unwrap_err();
            assert!(error.to_string().contains(RATE_LIMIT_VAR), "{error}");
        }
    }

    #[tokio::test]
    async fn an_off_limit_admits_everything() {
        let limiter = RateLimit::OFF.in_process();
        let user = UserId::new_random();
        for _ in 0..10_000 {
            assert_eq!(limiter.admit(user).await, Admission::Allowed);
        }
    }
}
