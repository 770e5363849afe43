//! On DynamoDB and SQS (moto), the faults the AWS deployment must survive change nothing a
//! user can see: a process dying between the append and the enqueue (the sweep re-enqueues the
//! work), SQS delivering a batch twice, and the DynamoDB stream handing out records again and
//! out of order.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use messaging_commands::{
    CommandHandlers, Dependencies, Dispatch, GetAllMessages, GetNewMessages, Processor, Register,
    SendMessage, Sweeper,
};
use messaging_dynamodb::testing::{create_everything, moto_clients};
use messaging_dynamodb::{DynamoEventStore, DynamoReadStore, SqsQueue, StreamPoller};
use messaging_events::{
    AppendRequest, Clock, Event, EventStore, Limits, MessageId, NewEvent, QueueMessage, StreamId,
    SystemClock, Timestamp, UserId, WorkQueue,
};
use messaging_lambda::{handle_sqs_batch, handle_stream_batch};
use messaging_projections::Projector;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Everything one test runs on, over its own tables and queues.
struct Setup {
    store: Arc<DynamoEventStore>,
    handlers: CommandHandlers,
    processor: Processor,
    projector: Projector,
    poller: StreamPoller,
    sweeper: Sweeper,
    direct_queue: Arc<SqsQueue>,
}

async fn setup() -> Setup {
    let clients = moto_clients().await;
    let (names, urls) = create_everything(&clients).await;
    let store = Arc::new(DynamoEventStore::new(&clients, &names));
    let read = Arc::new(DynamoReadStore::new(&clients, &names));
    let direct_queue = Arc::new(SqsQueue::new(&clients, urls.direct));
    let group_queue = Arc::new(SqsQueue::new(&clients, urls.group));
    let handlers = CommandHandlers::new(Dependencies {
        store: store.clone(),
        read: read.clone(),
        direct_queue: direct_queue.clone(),
        group_queue: group_queue.clone(),
        clock: Arc::new(SystemClock),
        limits: Limits::default(),
        dispatch: Dispatch::Enqueue,
    });
    let poller = StreamPoller::new(&clients, &names, "projector")
        .await
        .expect("poller");
    Setup {
        processor: Processor::new(store.clone()),
        projector: Projector::new(read.clone()),
        sweeper: Sweeper::new(read, direct_queue.clone(), group_queue),
        store,
        handlers,
        poller,
        direct_queue,
    }
}

impl Setup {
    async fn user(&self) -> UserId {
        let registered = self
            .handlers
            .register(Register::default(), None)
            .await
            .expect("registered");
        self.handlers
            .authenticate(&registered.token)
            .await
            .expect("token")
    }

    /// Every new stream record, oldest first per shard; commits them all.
    async fn drain_stream(&mut self) -> Vec<EventRecord> {
        let mut records = Vec::new();
        loop {
            let batches = self.poller.poll(1000).await.expect("polled");
            if batches.is_empty() {
                return records;
            }
            for batch in batches {
                let last = batch
                    .event
                    .records
                    .last()
                    .and_then(|r| r.change.sequence_number.clone());
                records.extend(batch.event.records);
                if let Some(last) = last {
                    self.poller
                        .commit(&batch.shard_id, &last)
                        .await
                        .expect("committed");
                }
            }
        }
    }

    /// Projects `records` as one Lambda stream batch; asserts no record failed.
    async fn project(&self, records: Vec<EventRecord>) {
        let mut event = StreamEvent::default();
        event.records = records;
        let response = handle_stream_batch(&self.projector, event).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "projection failures: {:?}",
            response.batch_item_failures
        );
    }

    /// Receives the direct queue's visible messages (expects `count`).
    async fn receive_direct(&self, count: usize) -> Vec<QueueMessage> {
        let mut messages = Vec::new();
        for _ in 0..20 {
            messages.extend(
                self.direct_queue
                    .receive(10, Duration::from_secs(30))
                    .await
                    .expect("received"),
            );
            if messages.len() >= count {
                break;
            }
        }
        assert_eq!(messages.len(), count, "messages on the direct queue");
        messages
    }
}

/// The SQS event Lambda would deliver for `messages` (as the local AWS workers build it).
fn sqs_event(messages: &[QueueMessage]) -> SqsEvent {
    let records = messages
        .iter()
        .enumerate()
        .map(|(index, message)| {
            let group = match &message.item.sent.event {
                Event::DirectMessageSent { sender, .. }
                | Event::GroupMessageSent { sender, .. } => sender.to_string(),
                _ => String::new(),
            };
            let mut record = SqsMessage::default();
            record.message_id = Some(format!("m{index}"));
            record.receipt_handle = Some(message.receipt.clone());
            record.body = Some(serde_json::to_string(&message.item).expect("encoded"));
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
    event
}

async fn process(processor: &Processor, event: SqsEvent) {
    let response = handle_sqs_batch(processor, event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "processing failures: {:?}",
        response.batch_item_failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_append_and_enqueue_is_recovered_by_the_sweep() {
    let mut s = setup().await;
    let sender = s.user().await;
    let recipient = s.user().await;

    // The send handler's append, without its enqueue: the process died in between.
    let message_id = MessageId::new_random();
    let sent = Event::DirectMessageSent {
        message_id,
        sender,
        receiver: recipient,
        text: "stranded".into(),
        sent_at: SystemClock.now(),
        blocks_version: 0,
    };
    let request = AppendRequest::single(StreamId::outbox(sender), 0, vec![NewEvent::new(sent)]);
    s.store.append(request).await.expect("appended");

    // The projector sees the acceptance: the message is pending.
    let records = s.drain_stream().await;
    assert!(!records.is_empty(), "the stream carries the acceptance");
    s.project(records).await;

    let swept = s
        .sweeper
        .run_once(Timestamp(i64::MAX))
        .await
        .expect("swept");
    assert_eq!(swept, 1, "the stranded message is re-enqueued");

    let messages = s.receive_direct(1).await;
    process(&s.processor, sqs_event(&messages)).await;
    let records = s.drain_stream().await;
    s.project(records).await;

    let query = GetNewMessages {
        user_id: recipient.to_string(),
        since: None,
        limit: None,
    };
    let new = s
        .handlers
        .get_new_messages(recipient, query)
        .await
        .expect("polled");
    assert_eq!(new.messages.len(), 1, "{:?}", new.messages);
    let got = &new.messages[0];
    assert_eq!(got.message_id, message_id);
    assert_eq!(got.sender_id, sender);
    assert_eq!(got.receiver_id, Some(recipient));
    assert_eq!(got.message, "stranded");

    // Settled: nothing is left for the sweep.
    let swept = s
        .sweeper
        .run_once(Timestamp(i64::MAX))
        .await
        .expect("swept");
    assert_eq!(swept, 0, "a delivered message is not swept again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_sqs_delivery_and_duplicate_reordered_stream_records_change_nothing() {
    let mut s = setup().await;
    let a = s.user().await;
    let b = s.user().await;

    let mut sent_ids = Vec::new();
    for text in ["first", "second"] {
        let body = SendMessage {
            sender_id: a.to_string(),
            receiver_id: b.to_string(),
            message: text.into(),
        };
        let accepted = s
            .handlers
            .send_message(a, body, None)
            .await
            .expect("accepted");
        sent_ids.push(accepted.message_id);
    }

    // SQS delivers the same batch twice.
    let messages = s.receive_direct(2).await;
    let event = sqs_event(&messages);
    process(&s.processor, event.clone()).await;
    process(&s.processor, event).await;

    // The stream delivers everything once in order, then again reversed and duplicated.
    let records = s.drain_stream().await;
    assert!(!records.is_empty(), "the stream carries the events");
    s.project(records.clone()).await;
    let replay: Vec<EventRecord> = records
        .iter()
        .rev()
        .flat_map(|r| [r.clone(), r.clone()])
        .collect();
    s.project(replay).await;

    let query = GetAllMessages {
        user_id: b.to_string(),
        cursor: None,
        limit: None,
    };
    let page = s
        .handlers
        .get_all_messages(b, query)
        .await
        .expect("history");
    let got: Vec<(String, String)> = page
        .messages
        .iter()
        .map(|m| (m.message_id.to_string(), m.message.clone()))
        .collect();
    let want: Vec<(String, String)> = sent_ids
        .iter()
        .cloned()
        .zip(["first".to_string(), "second".to_string()])
        .collect();
    assert_eq!(got, want, "each message exactly once, in send order");

    let inbox = s
        .store
        .read_stream(&StreamId::inbox(b), 0, None)
        .await
        .expect("inbox");
    assert_eq!(inbox.len(), 2, "one delivery per message: {inbox:?}");
}
