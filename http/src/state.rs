//! What every request handler shares: the command handlers, the limits and the rate limiter.

use crate::rate_limit::{RateLimit, RateLimiter};
use messaging_commands::{CommandHandlers, Dependencies};
use messaging_events::Limits;
use std::sync::Arc;

/// The state of the router; cheap to clone (everything inside is shared).
#[derive(Clone)]
pub struct AppState {
    /// The command and query handlers.
    pub handlers: CommandHandlers,
    /// The limits the handlers were built with; the body limit is enforced by the router.
    pub limits: Limits,
    /// Admits or refuses each send, per user, before anything is written.
    pub rate_limiter: Arc<dyn RateLimiter>,
}

impl AppState {
    /// Builds the handlers over the given ports, with the default rate limit counted in this
    /// process (a driver that forgets to configure it still limits).
    pub fn new(deps: Dependencies) -> AppState {
        let limits = deps.limits;
        AppState {
            handlers: CommandHandlers::new(deps),
            limits,
            rate_limiter: RateLimit::default().in_process(),
        }
    }

    /// The same state with `limit` counted in this process (`0` per minute: no limit).
    pub fn with_rate_limit(self, limit: RateLimit) -> AppState {
        self.with_rate_limiter(limit.in_process())
    }

    /// The same state with another rate limiter (e.g. one shared between processes).
    pub fn with_rate_limiter(mut self, rate_limiter: Arc<dyn RateLimiter>) -> AppState {
        self.rate_limiter = rate_limiter;
        self
    }
}
