//! The embedded server's dispatcher: accepted direct messages go from the change feed straight
//! to the processor. Through a queue, each message cost the events writer three more commits
//! (insert, receive, delete); the feed is as durable as a queue and reading it writes nothing
//! but one checkpoint per batch. What fails here is handed to the durable queue, whose loop
//! retries it with a queue's hold-back and dead-letter rules, and the checkpoint moves past it.

use crate::lag;
use crate::workers::{idle, is_stopping, pause, process_batch, Backoff};
use messaging_commands::Processor;
use messaging_events::{ChangeFeed, Event, FeedRecord, QueueMessage, WorkItem, WorkQueue};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// The change-feed consumer name of the dispatcher; its checkpoint survives restarts.
pub const DISPATCHER_CONSUMER: &str = "dispatcher";
/// The events the dispatcher reads (`Event::type_name`); the feed skips the others for it (a
/// send is one event in six or more: deliveries, outcomes, reads, claims' events).
const SENDS: [&str; 2] = ["DirectMessageSent", "GroupMessageSent"];
/// Most sends read in one batch (those of different senders are processed concurrently).
/// A batch ends when its longest chain of one sender's messages is done, so larger batches
/// carry more per round: under overload (10,000/s asked) 500 let the dispatcher fall behind by
/// tens of thousands of events while accepts went on (send-to-visible p99 5.5 s); 2,000
/// keeps it within about a second, and changes nothing at 5,000/s.
const SEND_BATCH: usize = 2_000;

/// Where the dispatcher reads and where it hands what it could not process.
pub(crate) struct Dispatcher {
    pub(crate) feed: Arc<dyn ChangeFeed>,
    pub(crate) appended: Arc<Notify>,
    pub(crate) processor: Arc<Processor>,
    pub(crate) direct_queue: Arc<dyn WorkQueue>,
    pub(crate) group_queue: Arc<dyn WorkQueue>,
}

impl Dispatcher {
    /// Processes every accepted message of the feed, at least once, until shutdown.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        while !is_stopping(&stop) {
            // Registered before the poll so that an append racing with an empty poll still wakes us.
            let wake = self.appended.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();

            let page = match self
                .feed
                .poll_types(DISPATCHER_CONSUMER, &SENDS, SEND_BATCH)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "dispatcher: polling the change feed failed; retrying");
                    if !pause(backoff.next(), &mut stop).await {
                        break;
                    }
                    continue;
                }
            };
            let Some(last) = page.read_to else {
                backoff.reset();
                if !idle(wake, &mut stop).await {
                    break;
                }
                continue;
            };
            // Nothing is committed unless every send of the batch is processed or queued: a
            // failure here reads the batch again, and the processor is idempotent.
            match self.dispatch(page.records, last).await {
                Ok(()) => backoff.reset(),
                Err(error) => {
                    tracing::warn!(%error, position = last, "dispatching a feed batch failed; retrying");
                    if !pause(backoff.next(), &mut stop).await {
                        break;
                    }
                }
            }
        }
    }

    /// Processes the direct messages among `records`, queues the group messages and the
    /// direct messages that failed, and moves the checkpoint to `last`. Group messages take a
    /// delivery per member: processed here, one to many members would hold back every direct
    /// message behind it, and their queue costs little next to their deliveries.
    async fn dispatch(&self, records: Vec<FeedRecord>, last: u64) -> Result<(), DispatchError> {
        let (count, oldest) = (records.len(), lag::oldest(records.iter().map(|r| &r.event)));
        let (group, direct): (Vec<QueueMessage>, Vec<QueueMessage>) = as_work(records)
            .into_iter()
            .partition(|message| matches!(message.item.sent.event, Event::GroupMessageSent { .. }));
        if !group.is_empty() {
            let items = group.into_iter().map(|message| message.item).collect();
            self.group_queue.enqueue(items).await?;
        }
        if !direct.is_empty() {
            let failed = process_batch("feed", &self.processor, direct).await.left;
            if !failed.is_empty() {
                tracing::warn!(
                    count = failed.len(),
                    "dispatcher: queued failed direct messages for retry"
                );
                let items = failed.into_iter().map(|message| message.item).collect();
                self.direct_queue.enqueue(items).await?;
            }
        }
        self.feed.commit(DISPATCHER_CONSUMER, last).await?;
        tracing::debug!(
            sends = count,
            behind_ms = lag::ms_since(oldest),
            "dispatched a feed batch"
        );
        Ok(())
    }
}

/// Why a batch must be read again.
#[derive(Debug, thiserror::Error)]
enum DispatchError {
    #[error(transparent)]
    Queue(#[from] messaging_events::QueueError),
    #[error(transparent)]
    Feed(#[from] messaging_events::FeedError),
}

/// The accepted messages of `records`, in feed order, shaped as first receptions.
fn as_work(records: Vec<FeedRecord>) -> Vec<QueueMessage> {
    records
        .into_iter()
        .filter(|record| {
            matches!(
                record.event.event,
                Event::DirectMessageSent { .. } | Event::GroupMessageSent { .. }
            )
        })
        .map(|record| QueueMessage {
            // Only told apart, never sent back to a queue.
            receipt: record.position.to_string(),
            receive_count: 1,
            item: WorkItem { sent: record.event },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_events::{GroupId, MessageId, Timestamp, UserId};

    #[test]
    fn the_types_read_are_the_sends() {
        let (sender, message_id) = (UserId::new_random(), MessageId::new_random());
        let direct = Event::DirectMessageSent {
            message_id,
            sender,
            receiver: UserId::new_random(),
            text: String::new(),
            sent_at: Timestamp(0),
            blocks_version: 0,
        };
        let group = Event::GroupMessageSent {
            message_id,
            sender,
            group_id: GroupId::new_random(),
            text: String::new(),
            sent_at: Timestamp(0),
            group_version: 1,
            blocks_version: 0,
        };
        assert_eq!(SENDS, [direct.type_name(), group.type_name()]);
    }
}
