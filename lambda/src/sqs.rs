//! The processors' handler: one SQS batch of accepted messages, with partial batch failures.
//!
//! The queues are FIFO with `MessageGroupId` = the sender, so one sender's messages arrive in
//! acceptance order. Lambda deletes every message of the batch that is not reported as failed;
//! so once a message of a group fails, every later message of that group in the batch is
//! reported too, unprocessed: deleting it would deliver it before the failed one. Groups are
//! independent and are processed concurrently.
//!
//! A failed message comes back after the visibility timeout, and after `maxReceiveCount`
//! receives the redrive policy moves it to the dead-letter queue (which is where undecodable
//! and non-retryable messages end up). Processing is idempotent, so redelivery is harmless.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use messaging_commands::Processor;
use messaging_events::{Event, WorkItem};
use std::collections::HashMap;
use tracing::Instrument;

/// The SQS attribute naming a FIFO message's group.
const MESSAGE_GROUP_ID: &str = "MessageGroupId";
/// The SQS attribute counting receives, this one included.
const RECEIVE_COUNT: &str = "ApproximateReceiveCount";

/// One record of the batch, decoded.
struct Work {
    /// Position in the batch (failures are reported in batch order).
    index: usize,
    /// The SQS message id: what a failure is reported by.
    message_id: String,
    /// How often SQS handed it out, for the logs.
    receive_count: String,
    /// The work, or why the body is not work.
    item: Result<WorkItem, String>,
}

/// Processes a batch and returns exactly the messages to leave on the queue.
pub async fn handle_sqs_batch(processor: &Processor, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failed: Vec<(usize, String)> = Vec::new();

    let mut groups: Vec<(String, Vec<Work>)> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    for (index, record) in event.records.into_iter().enumerate() {
        let work = decode(index, &record);
        let key = group_key(index, &record, &work);
        match group_of.get(&key) {
            Some(&at) => groups[at].1.push(work),
            None => {
                group_of.insert(key.clone(), groups.len());
                groups.push((key, vec![work]));
            }
        }
    }

    // One task per group, so that different senders' work overlaps; each task owns a clone of
    // the processor (an `Arc` inside), logs within the invocation's span, and its records' ids
    // stay here in case it panics.
    let mut tasks = Vec::with_capacity(groups.len());
    for (group, chain) in groups {
        let ids: Vec<(usize, String)> = chain
            .iter()
            .map(|w| (w.index, w.message_id.clone()))
            .collect();
        let processor = processor.clone();
        let task_group = group.clone();
        let task = tokio::spawn(
            async move { process_group(&processor, &task_group, chain).await }
                .instrument(tracing::Span::current()),
        );
        tasks.push((group, ids, task));
    }
    for (group, ids, task) in tasks {
        match task.await {
            Ok(group_failures) => failed.extend(group_failures),
            Err(error) => {
                tracing::error!(group, %error, "processing a message group panicked; reporting all its messages as failed");
                failed.extend(ids);
            }
        }
    }

    failed.sort_by_key(|(index, _)| *index);
    for (_, message_id) in failed {
        response.add_failure(message_id);
    }
    response
}

/// Processes one group's messages in batch order; returns the failed and held-back ones.
async fn process_group(
    processor: &Processor,
    group: &str,
    chain: Vec<Work>,
) -> Vec<(usize, String)> {
    let mut failed = Vec::new();
    let mut chain = chain.into_iter();
    for work in chain.by_ref() {
        let message_id = work.message_id.as_str();
        let receive_count = work.receive_count.as_str();
        let item = match work.item {
            Ok(item) => item,
            Err(error) => {
                tracing::error!(
                    message_id,
                    group,
                    receive_count,
                    %error,
                    "undecodable message body; reporting it failed (the redrive policy moves it to the dead-letter queue)"
                );
                failed.push((work.index, work.message_id));
                break;
            }
        };
        let event_id = item.sent.event_id;
        match processor.handle(&item).await {
            Ok(()) => {
                tracing::debug!(message_id, group, %event_id, "processed");
                continue;
            }
            Err(error) if !error.is_retryable() => {
                tracing::error!(
                    message_id,
                    group,
                    %event_id,
                    receive_count,
                    %error,
                    "unprocessable work; reporting it failed (the redrive policy moves it to the dead-letter queue)"
                );
            }
            Err(error) => {
                tracing::warn!(
                    message_id,
                    group,
                    %event_id,
                    receive_count,
                    %error,
                    "processing failed; the message will be redelivered"
                );
            }
        }
        failed.push((work.index, work.message_id));
        break;
    }
    // Whatever follows a failure in the same group waits for it.
    for held in chain {
        tracing::info!(
            message_id = held.message_id.as_str(),
            group,
            "held back behind a failed message of the same group"
        );
        failed.push((held.index, held.message_id));
    }
    failed
}

fn decode(index: usize, record: &SqsMessage) -> Work {
    let message_id = record.message_id.clone().unwrap_or_else(|| {
        // Lambda always sends one; an empty identifier makes Lambda retry the whole batch.
        tracing::error!(index, "SQS record without a message id");
        String::new()
    });
    let item = match record.body.as_deref() {
        None => Err("the record has no body".to_string()),
        Some(body) => serde_json::from_str::<WorkItem>(body).map_err(|e| e.to_string()),
    };
    Work {
        index,
        message_id,
        receive_count: record
            .attributes
            .get(RECEIVE_COUNT)
            .cloned()
            .unwrap_or_default(),
        item,
    }
}

/// The unit of ordering: the FIFO message group; without one (a standard queue, a test), the
/// sender; a record with neither is on its own.
fn group_key(index: usize, record: &SqsMessage, work: &Work) -> String {
    if let Some(group) = record.attributes.get(MESSAGE_GROUP_ID) {
        return format!("group:{group}");
    }
    match work.item.as_ref().map(|item| &item.sent.event) {
        Ok(Event::DirectMessageSent { sender, .. } | Event::GroupMessageSent { sender, .. }) => {
            format!("sender:{sender}")
        }
        _ => format!("record:{index}"),
    }
}
