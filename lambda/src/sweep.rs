//! The sweeper function's handler: run on a schedule (EventBridge), it re-enqueues accepted
//! messages that still have no outcome after `sweep_after` (PRODUCT.md invariant 1). On Lambda
//! this is what closes the gap when the HTTP function dies between appending a message and
//! enqueuing it; the processors are idempotent, so re-enqueuing slow work is harmless.

use messaging_commands::{CommandError, Sweeper};
use messaging_events::{Clock, Timestamp};
use serde::Serialize;
use std::time::Duration;

/// What one scheduled run did (the function's response, visible in its logs and test invokes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Messages put back on a queue.
    pub re_enqueued: usize,
}

/// Re-enqueues every message accepted more than `sweep_after` ago that has no outcome.
///
/// A failure is returned as an error so that the invocation counts as failed (and alarms),
/// the next scheduled run retries it.
pub async fn handle_sweep(
    sweeper: &Sweeper,
    clock: &dyn Clock,
    sweep_after: Duration,
) -> Result<SweepReport, CommandError> {
    let age = i64::try_from(sweep_after.as_micros()).unwrap_or(i64::MAX);
    let before = Timestamp(clock.now().micros().saturating_sub(age));
    // One page per run: re-enqueued work stays pending until a processor settles it, so a
    // second page now would mostly repeat the first. The next scheduled run takes the rest.
    let re_enqueued = sweeper.run_once(before).await?;
    tracing::info!(re_enqueued, "sweep finished");
    Ok(SweepReport { re_enqueued })
}
