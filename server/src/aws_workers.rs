//! The background loops when the server runs against DynamoDB and SQS: they poll SQS and the
//! event table's DynamoDB stream and call the very Lambda handlers that the event source
//! mappings call on AWS, with the same batches and the same partial-failure semantics.

use crate::workers::{idle, is_stopping, pause, sweep_loop, Backoff, STOP_GRACE};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use messaging_commands::{Processor, Sweeper};
use messaging_dynamodb::StreamPoller;
use messaging_events::{Clock, Event, Timestamp, WorkQueue};
use messaging_lambda::{handle_sqs_batch, handle_stream_batch};
use messaging_projections::Projector;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Most stream records per batch (the mapping's BatchSize).
const STREAM_BATCH: usize = 100;
/// Most SQS messages per batch (the mapping's BatchSize; SQS returns at most 10 per call).
const QUEUE_BATCH: usize = 10;
/// How long a received message stays hidden: shorter than the queues' 60 s so that work a
/// killed local process held comes back soon; a batch takes far less.
const VISIBILITY: Duration = Duration::from_secs(15);
/// Pause between empty polls: AWS pollers poll continuously; an emulator does not need it.
const EMPTY_POLL: Duration = Duration::from_millis(100);

/// Everything the AWS-mode loops work on.
pub struct AwsWorkerDeps {
    /// Reads the event table's stream.
    pub poller: StreamPoller,
    /// Writes the read models.
    pub projector: Projector,
    /// Direct-message work.
    pub direct_queue: Arc<dyn WorkQueue>,
    /// Group-message work.
    pub group_queue: Arc<dyn WorkQueue>,
    /// Decides deliveries.
    pub processor: Arc<Processor>,
    /// Re-enqueues accepted work that has no outcome.
    pub sweeper: Arc<Sweeper>,
    /// Where "now" comes from for the sweep.
    pub clock: Arc<dyn Clock>,
    /// When this process started.
    pub started_at: Timestamp,
    /// How old unsettled work must be before the periodic sweep redoes it.
    pub sweep_after: Duration,
}

/// The running loops.
pub struct AwsWorkers {
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl AwsWorkers {
    /// Starts the stream projector, the two queue processors and the sweep.
    pub fn start(deps: AwsWorkerDeps) -> AwsWorkers {
        let (shutdown, stop) = watch::channel(false);
        let (caught_up_tx, caught_up) = watch::channel(false);
        let tasks = vec![
            (
                "stream projector",
                tokio::spawn(stream_loop(
                    deps.poller,
                    deps.projector,
                    caught_up_tx,
                    stop.clone(),
                )),
            ),
            (
                "direct processor",
                tokio::spawn(queue_loop(
                    "direct",
                    deps.direct_queue,
                    deps.processor.clone(),
                    stop.clone(),
                )),
            ),
            (
                "group processor",
                tokio::spawn(queue_loop(
                    "group",
                    deps.group_queue,
                    deps.processor,
                    stop.clone(),
                )),
            ),
            (
                "sweep",
                tokio::spawn(sweep_loop(
                    deps.sweeper,
                    deps.clock,
                    deps.started_at,
                    deps.sweep_after,
                    caught_up,
                    stop,
                )),
            ),
        ];
        AwsWorkers { shutdown, tasks }
    }

    /// Signals every loop to stop after its current batch and waits for them.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        for (name, mut task) in self.tasks {
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                tracing::warn!(worker = name, "worker did not stop in time; aborting it");
                task.abort();
            }
        }
    }
}

/// Polls the stream and hands each shard's batch to the projector Lambda handler; commits up
/// to the record before the first reported failure, so that a failed record and everything
/// after it are delivered again (what the event source mapping does).
async fn stream_loop(
    mut poller: StreamPoller,
    projector: Projector,
    caught_up: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    while !is_stopping(&stop) {
        let batches = match poller.poll(STREAM_BATCH).await {
            Ok(batches) => batches,
            Err(error) => {
                tracing::warn!(%error, "polling the stream failed; retrying");
                if !pause(backoff.next(), &mut stop).await {
                    break;
                }
                continue;
            }
        };
        if batches.is_empty() {
            backoff.reset();
            caught_up.send_if_modified(|done| !std::mem::replace(done, true));
            if !idle(tokio::time::sleep(EMPTY_POLL), &mut stop).await {
                break;
            }
            continue;
        }
        let mut failed = false;
        for batch in batches {
            let sequence_numbers: Vec<String> = batch
                .event
                .records
                .iter()
                .filter_map(|r| r.change.sequence_number.clone())
                .collect();
            let response = handle_stream_batch(&projector, batch.event).await;
            let first_failure = response
                .batch_item_failures
                .iter()
                .filter_map(|f| f.item_identifier.clone())
                .filter_map(|id| sequence_numbers.iter().position(|s| *s == id))
                .min();
            let done = match first_failure {
                Some(index) => {
                    failed = true;
                    index
                }
                None => sequence_numbers.len(),
            };
            if let Some(last_good) = done.checked_sub(1).and_then(|i| sequence_numbers.get(i)) {
                if let Err(error) = poller.commit(&batch.shard_id, last_good).await {
                    tracing::warn!(%error, "committing the stream checkpoint failed");
                    failed = true;
                }
            }
        }
        if failed {
            if !pause(backoff.next(), &mut stop).await {
                break;
            }
        } else {
            backoff.reset();
        }
    }
}

/// Receives SQS messages, hands them to the processor Lambda handler as an SQS event, and
/// deletes exactly the messages it did not report as failed.
async fn queue_loop(
    queue_name: &'static str,
    queue: Arc<dyn WorkQueue>,
    processor: Arc<Processor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    while !is_stopping(&stop) {
        let messages = match queue.receive(QUEUE_BATCH, VISIBILITY).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(queue = queue_name, %error, "receiving work failed; retrying");
                if !pause(backoff.next(), &mut stop).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        if messages.is_empty() {
            if !pause(EMPTY_POLL, &mut stop).await {
                break;
            }
            continue;
        }
        let mut receipts = HashMap::new();
        let records = messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| {
                let id = format!("m{index}");
                receipts.insert(id.clone(), message.receipt.clone());
                let group = match &message.item.sent.event {
                    Event::DirectMessageSent { sender, .. }
                    | Event::GroupMessageSent { sender, .. } => sender.to_string(),
                    _ => String::new(),
                };
                let mut record = SqsMessage::default();
                record.message_id = Some(id);
                record.receipt_handle = Some(message.receipt);
                record.body = serde_json::to_string(&message.item).ok();
                record.attributes = HashMap::from([
                    ("MessageGroupId".to_string(), group),
                    (
                        "ApproximateReceiveCount".to_string(),
                        message.receive_count.to_string(),
                    ),
                ]);
                record
            })
            .collect();
        let mut event = SqsEvent::default();
        event.records = records;
        let response = handle_sqs_batch(&processor, event).await;
        for failure in &response.batch_item_failures {
            receipts.remove(&failure.item_identifier);
        }
        let done: Vec<String> = receipts.into_values().collect();
        if !done.is_empty() {
            if let Err(error) = queue.ack(done).await {
                tracing::warn!(queue = queue_name, %error, "deleting handled messages failed");
            }
        }
    }
}
