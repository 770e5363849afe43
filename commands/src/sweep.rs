//! Closes the gap between appending a message and enqueuing it (PRODUCT.md invariant 1):
//! accepted messages that have no outcome after a while are enqueued again. Processors are
//! idempotent, so a message that was merely slow is harmlessly processed twice.

use crate::CommandError;
use messaging_events::{Event, Timestamp, WorkItem, WorkQueue};
use messaging_projections::ReadStore;
use std::sync::Arc;

/// Most pending messages re-enqueued per run.
pub const SWEEP_PAGE: usize = 500;

/// Re-enqueues stranded work.
#[derive(Clone)]
pub struct Sweeper {
    read: Arc<dyn ReadStore>,
    direct_queue: Arc<dyn WorkQueue>,
    group_queue: Arc<dyn WorkQueue>,
}

impl Sweeper {
    /// A sweeper reading the pending read model and feeding both processors' queues.
    pub fn new(
        read: Arc<dyn ReadStore>,
        direct_queue: Arc<dyn WorkQueue>,
        group_queue: Arc<dyn WorkQueue>,
    ) -> Self {
        Self {
            read,
            direct_queue,
            group_queue,
        }
    }

    /// Re-enqueues messages accepted before `accepted_before` that have no outcome yet;
    /// returns how many.
    pub async fn run_once(&self, accepted_before: Timestamp) -> Result<usize, CommandError> {
        let pending = self
            .read
            .pending_before(accepted_before, SWEEP_PAGE)
            .await?;
        let (mut direct, mut group) = (Vec::new(), Vec::new());
        for work in pending {
            let item = WorkItem { sent: work.sent };
            match item.sent.event {
                Event::GroupMessageSent { .. } => group.push(item),
                _ => direct.push(item),
            }
        }
        let count = direct.len() + group.len();
        if !direct.is_empty() {
            self.direct_queue.enqueue(direct).await?;
        }
        if !group.is_empty() {
            self.group_queue.enqueue(group).await?;
        }
        if count > 0 {
            tracing::info!(count, "re-enqueued accepted messages without an outcome");
        }
        Ok(count)
    }
}
