//! The cost meter (issue 7): DynamoDB requests and capacity units, SQS requests, stream records
//! and Lambda invocations per operation, measured through the real adapters against moto, for a
//! user with 10 and with 10,000 messages of history. The test asserts that every figure is the
//! same for both; `cargo run -p messaging-server --example cost_meter` prints the table and the
//! cost at list prices (BENCHMARKS.md).
//!
//! What is counted, per operation, end to end as it would run on AWS:
//! - the HTTP Lambda's handler call (one invocation, one API Gateway request);
//! - the SQS requests: the command's `SendMessageBatch`, and the receive and delete that the
//!   processor's event source mapping makes (billed to the account), one receive per batch;
//! - the processor's handler call (one invocation per SQS batch: one message here);
//! - the events the operation appended, fed to the projector as its stream batch (records
//!   from the stream are free to a Lambda trigger; one invocation per 100 records, the
//!   template's batch size), and the notifier's share (its filter passes only deliveries);
//! - every DynamoDB request any of these made, with capacity units computed from item sizes
//!   ([`RequestCounter::capacity`]).
//!
//! Reads done only to feed the projector (the stream does that on AWS) are not counted.

use messaging_commands::{
    CommandHandlers, Dependencies, Dispatch, GetNewMessages, Processor, Register, SendGroupMessage,
    SendMessage,
};
use messaging_dynamodb::testing::{create_everything, moto_clients_counted, seed_events};
use messaging_dynamodb::{
    AwsClients, DynamoEventStore, DynamoReadStore, RequestCounter, ResourceNames, SqsQueue,
};
use messaging_events::Clock;
use messaging_events::{
    AppendRequest, Event, EventStore, GroupId, Limits, MessageId, NewEvent, RecordedEvent,
    StreamId, SystemClock, Timestamp, UserId, WorkQueue,
};
use messaging_projections::{project, Projector, ReadStore};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The projector's (and notifier's) stream batch size in the template.
pub const STREAM_BATCH: u64 = 100;

/// What one operation cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cost {
    /// DynamoDB and SQS requests, keyed `Service.Operation` (e.g. `DynamoDB.PutItem`).
    pub requests: BTreeMap<String, u64>,
    /// DynamoDB read request units.
    pub read_units: f64,
    /// DynamoDB write request units.
    pub write_units: f64,
    /// Lambda invocations by function (`http`, `processor`, `projector`, `notifier`).
    pub invocations: BTreeMap<&'static str, u64>,
    /// Event-table stream records the operation produced.
    pub stream_records: u64,
}

impl Cost {
    /// SQS requests of every kind.
    pub fn sqs_requests(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(op, _)| op.to_ascii_lowercase().starts_with("sqs."))
            .map(|(_, n)| n)
            .sum()
    }

    /// DynamoDB requests of every kind.
    pub fn dynamodb_requests(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(op, _)| op.to_ascii_lowercase().starts_with("dynamodb."))
            .map(|(_, n)| n)
            .sum()
    }

    /// Lambda invocations of every function.
    pub fn lambda_invocations(&self) -> u64 {
        self.invocations.values().sum()
    }
}

/// Operations in the order they are measured, with their costs.
pub type Costs = Vec<(&'static str, Cost)>;

/// The adapters on fresh tables and queues, with the counter behind every client.
pub struct Meter {
    counter: RequestCounter,
    clients: AwsClients,
    names: ResourceNames,
    read: Arc<DynamoReadStore>,
    store: Arc<DynamoEventStore>,
    handlers: CommandHandlers,
    projector: Projector,
    direct_queue: Arc<SqsQueue>,
    group_queue: Arc<SqsQueue>,
}

/// The counts at one moment, to subtract from later ones.
struct Mark {
    requests: BTreeMap<String, u64>,
    units: (f64, f64),
}

impl Meter {
    /// Creates the tables and queues (uncounted from the operations' point of view).
    pub async fn new() -> Meter {
        let counter = RequestCounter::new();
        let clients = moto_clients_counted(&counter).await;
        let (names, urls) = create_everything(&clients).await;
        let store = Arc::new(DynamoEventStore::new(&clients, &names));
        let read = Arc::new(DynamoReadStore::new(&clients, &names));
        let direct_queue =
            Arc::new(SqsQueue::new(&clients, urls.direct).with_wait_time(Duration::ZERO));
        let group_queue =
            Arc::new(SqsQueue::new(&clients, urls.group).with_wait_time(Duration::ZERO));
        let handlers = CommandHandlers::new(Dependencies {
            store: store.clone(),
            read: read.clone(),
            direct_queue: direct_queue.clone(),
            group_queue: group_queue.clone(),
            clock: Arc::new(SystemClock),
            limits: Limits::default(),
            dispatch: Dispatch::Enqueue,
        });
        Meter {
            counter,
            clients,
            names,
            read: read.clone(),
            projector: Projector::new(read),
            store,
            handlers,
            direct_queue,
            group_queue,
        }
    }

    fn mark(&self) -> Mark {
        let units = self.counter.capacity();
        Mark {
            requests: self.counter.snapshot(),
            units: (units.read, units.write),
        }
    }

    /// Adds what happened since `mark` to `cost`.
    fn charge(&self, mark: Mark, cost: &mut Cost) {
        for (op, n) in self.counter.since(&mark.requests) {
            *cost.requests.entry(op).or_insert(0) += n;
        }
        let units = self.counter.capacity();
        cost.read_units += units.read - mark.units.0;
        cost.write_units += units.write - mark.units.1;
    }

    /// A registered user (uncounted).
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

    /// Projects `events` as the stream would hand them over, counting the projector's (and
    /// the notifier's) invocations and requests.
    async fn project(&self, events: &[RecordedEvent], cost: &mut Cost) {
        let mark = self.mark();
        for batch in events.chunks(STREAM_BATCH as usize) {
            self.projector.handle(batch).await.expect("projected");
        }
        self.charge(mark, cost);
        let records = events.len() as u64;
        let deliveries = events
            .iter()
            .filter(|e| matches!(e.event, Event::MessageDelivered { .. }))
            .count() as u64;
        cost.stream_records += records;
        *cost.invocations.entry("projector").or_insert(0) += records.div_ceil(STREAM_BATCH);
        if deliveries > 0 {
            *cost.invocations.entry("notifier").or_insert(0) += deliveries.div_ceil(STREAM_BATCH);
        }
    }

    /// The newest event of a stream (uncounted: the stream delivers it on AWS).
    async fn last(&self, stream: &StreamId) -> RecordedEvent {
        self.store
            .last_event(stream)
            .await
            .expect("read")
            .expect("an event")
    }

    /// Receives the queued work, processes it and deletes it, as the processor's event
    /// source mapping and function do (counted).
    async fn process(&self, queue: &SqsQueue, cost: &mut Cost) -> RecordedEvent {
        let mark = self.mark();
        let received = queue
            .receive(10, Duration::from_secs(60))
            .await
            .expect("received");
        assert_eq!(received.len(), 1, "one queued message");
        let message = &received[0];
        // A processor that has not seen the sender before (a cold Lambda instance), so every
        // row pays the walk back to the sender's previous message; a warm one that settled
        // that message itself skips those two reads.
        Processor::new(self.store.clone())
            .handle(&message.item)
            .await
            .expect("processed");
        queue
            .ack(vec![message.receipt.clone()])
            .await
            .expect("deleted");
        self.charge(mark, cost);
        *cost.invocations.entry("processor").or_insert(0) += 1;
        message.item.sent.clone()
    }

    /// Everything a send produced: the sent event, one delivery per recipient, the outcome.
    async fn send_events(&self, sent: RecordedEvent, recipients: &[UserId]) -> Vec<RecordedEvent> {
        let mut events = vec![sent.clone()];
        for recipient in recipients {
            events.push(self.last(&StreamId::inbox(*recipient)).await);
        }
        events.push(self.last(&StreamId::message(message_id(&sent))).await);
        events
    }

    /// `history` delivered, projected and read messages for `recipient`, and `history` sent
    /// messages in `sender`'s outbox. Written as the items an append and a projection write,
    /// 25 per batch request, instead of appended and projected one by one (minutes on moto):
    /// the operations measured afterwards find the same tables either way.
    async fn build_history(&self, sender: UserId, recipient: UserId, history: u64) {
        let (inbox, outbox) = (StreamId::inbox(recipient), StreamId::outbox(sender));
        let sender_head = self
            .store
            .last_event(&outbox)
            .await
            .expect("read")
            .map_or(0, |e| e.version);
        let recorded = |stream: &StreamId, version: u64, event: Event| RecordedEvent {
            stream: stream.clone(),
            version,
            event_id: uuid::Uuid::new_v4(),
            recorded_at: SystemClock.now(),
            event,
        };
        let mut delivered = Vec::new();
        let mut sent = Vec::new();
        for i in 0..history {
            delivered.push(recorded(
                &inbox,
                i + 1,
                Event::MessageDelivered {
                    message_id: MessageId::new_random(),
                    recipient,
                    sender: UserId::new_random(),
                    receiver: Some(recipient),
                    group_id: None,
                    text: format!("old {i}"),
                    sent_at: Timestamp(i as i64),
                },
            ));
            sent.push(recorded(
                &outbox,
                sender_head + i + 1,
                Event::DirectMessageSent {
                    message_id: MessageId::new_random(),
                    sender,
                    receiver: UserId::new_random(),
                    text: format!("old {i}"),
                    sent_at: Timestamp(i as i64),
                    blocks_version: 0,
                },
            ));
        }
        seed_events(&self.clients, &self.names, &delivered)
            .await
            .expect("inbox history");
        seed_events(&self.clients, &self.names, &sent)
            .await
            .expect("outbox history");
        // The newest old send has its outcome, as in a live system: the processor settles a
        // sender's unsettled earlier messages before a new one (per-sender order).
        if history > 0 {
            let newest = message_id(&self.last(&outbox).await);
            let outcome = Event::MessageDispatched {
                message_id: newest,
                delivered: 1,
                withheld: 0,
            };
            self.store
                .append(AppendRequest::single(
                    StreamId::message(newest),
                    0,
                    vec![NewEvent::new(outcome)],
                ))
                .await
                .expect("outcome of the newest old send");
        }
        delivered.extend(
            self.store
                .append(AppendRequest::single(
                    StreamId::reads(recipient),
                    0,
                    vec![NewEvent::new(Event::MessagesRead {
                        user_id: recipient,
                        up_to: history,
                    })],
                ))
                .await
                .expect("marker"),
        );
        let changes: Vec<_> = delivered.iter().flat_map(project).collect();
        self.read.seed(&changes).await.expect("projected");
        // The seeded items read back as appended and projected ones would.
        if history > 0 {
            assert_eq!(self.last(&inbox).await.version, history);
            assert_eq!(self.last(&outbox).await.version, sender_head + history);
            let newest = self
                .read
                .inbox_after(recipient, history - 1, 10)
                .await
                .expect("inbox");
            assert_eq!(newest.len(), 1, "the seeded inbox");
            let oldest = self
                .read
                .history_after(recipient, None, 1)
                .await
                .expect("history");
            assert_eq!(oldest.len(), 1, "the seeded history");
        }
    }

    /// A group of `size` members (the sender and the recipient among them), created by
    /// appending its event and projecting it (uncounted: creating groups is not measured).
    async fn group(
        &self,
        sender: UserId,
        recipient: UserId,
        size: usize,
    ) -> (GroupId, Vec<UserId>) {
        let group_id = GroupId::new_random();
        let mut members = vec![sender, recipient];
        members.extend((2..size).map(|_| UserId::new_random()));
        let created = self
            .store
            .append(AppendRequest::single(
                StreamId::group(group_id),
                0,
                vec![NewEvent::new(Event::GroupCreated {
                    group_id,
                    name: format!("group of {size}"),
                    admin: sender,
                    members: members.clone(),
                })],
            ))
            .await
            .expect("group created");
        self.projector.handle(&created).await.expect("projected");
        (group_id, members)
    }

    /// `count` messages delivered to `recipient` and projected (uncounted).
    async fn deliver_new(&self, recipient: UserId, count: u64) {
        let inbox = StreamId::inbox(recipient);
        let head = self.last(&inbox).await.version;
        let events: Vec<NewEvent> = (0..count)
            .map(|i| {
                NewEvent::new(Event::MessageDelivered {
                    message_id: MessageId::new_random(),
                    recipient,
                    sender: UserId::new_random(),
                    receiver: Some(recipient),
                    group_id: None,
                    text: format!("new {i}"),
                    sent_at: Timestamp(1_000_000 + i as i64),
                })
            })
            .collect();
        let written = self
            .store
            .append(AppendRequest::single(inbox, head, events))
            .await
            .expect("delivered");
        self.projector.handle(&written).await.expect("projected");
    }

    /// One get-new-messages call and the projection of the marker it moved, if it did.
    async fn poll(&self, recipient: UserId, expected: usize) -> Cost {
        let mut cost = Cost::default();
        let reads = StreamId::reads(recipient);
        let marker_before = self.last(&reads).await.version;
        let mark = self.mark();
        let new = self
            .handlers
            .get_new_messages(
                recipient,
                GetNewMessages {
                    user_id: recipient.to_string(),
                    since: None,
                    limit: None,
                },
            )
            .await
            .expect("polled");
        self.charge(mark, &mut cost);
        *cost.invocations.entry("http").or_insert(0) += 1;
        assert_eq!(new.messages.len(), expected, "new messages");
        let marker = self.last(&reads).await;
        if marker.version > marker_before {
            self.project(&[marker], &mut cost).await;
        }
        cost
    }

    /// Sends a group message to a new group of `size` and follows it to the read models.
    async fn group_message(&self, sender: UserId, recipient: UserId, size: usize) -> Cost {
        let (group_id, members) = self.group(sender, recipient, size).await;
        let mut cost = Cost::default();
        let mark = self.mark();
        self.handlers
            .send_group_message(
                sender,
                SendGroupMessage {
                    sender_id: sender.to_string(),
                    group_id: group_id.to_string(),
                    message: "hello group".into(),
                },
                None,
            )
            .await
            .expect("accepted");
        self.charge(mark, &mut cost);
        *cost.invocations.entry("http").or_insert(0) += 1;
        let sent = self.process(&self.group_queue, &mut cost).await;
        let recipients: Vec<UserId> = members.into_iter().filter(|m| *m != sender).collect();
        let events = self.send_events(sent, &recipients).await;
        self.project(&events, &mut cost).await;
        cost
    }

    /// Every operation, for a sender and a recipient with `history` messages each, with group
    /// messages to groups of each of `group_sizes`.
    pub async fn measure(history: u64, group_sizes: &[usize]) -> Costs {
        let meter = Meter::new().await;
        let sender = meter.user().await;
        let recipient = meter.user().await;
        meter.build_history(sender, recipient, history).await;
        let mut costs = Costs::new();

        costs.push(("poll, nothing new", meter.poll(recipient, 0).await));
        meter.deliver_new(recipient, 10).await;
        costs.push(("poll, 10 new", meter.poll(recipient, 10).await));

        let mut direct = Cost::default();
        let mark = meter.mark();
        meter
            .handlers
            .send_message(
                sender,
                SendMessage {
                    sender_id: sender.to_string(),
                    receiver_id: recipient.to_string(),
                    message: "hello".into(),
                },
                None,
            )
            .await
            .expect("accepted");
        meter.charge(mark, &mut direct);
        *direct.invocations.entry("http").or_insert(0) += 1;
        let sent = meter.process(&meter.direct_queue, &mut direct).await;
        let events = meter.send_events(sent, &[recipient]).await;
        meter.project(&events, &mut direct).await;
        costs.push(("direct message", direct));

        for &size in group_sizes {
            let name = match size {
                10 => "group message, 10 members",
                100 => "group message, 100 members",
                1000 => "group message, 1,000 members",
                _ => "group message, other size",
            };
            costs.push((name, meter.group_message(sender, recipient, size).await));
        }

        let mut register = Cost::default();
        let mark = meter.mark();
        let registered = meter
            .handlers
            .register(Register::default(), None)
            .await
            .expect("registered");
        meter.charge(mark, &mut register);
        *register.invocations.entry("http").or_insert(0) += 1;
        let user = meter
            .handlers
            .authenticate(&registered.token)
            .await
            .expect("token");
        let events = meter
            .store
            .read_stream(&StreamId::user(user), 0, None)
            .await
            .expect("read");
        meter.project(&events, &mut register).await;
        costs.push(("register", register));
        costs
    }
}

fn message_id(sent: &RecordedEvent) -> MessageId {
    match &sent.event {
        Event::DirectMessageSent { message_id, .. }
        | Event::GroupMessageSent { message_id, .. } => *message_id,
        other => panic!("not a send: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cost_grows_with_history() {
    // Groups of 10 and 100 show the per-member cost; the example adds 1,000, which takes
    // minutes on moto and says nothing more.
    let small = Meter::measure(10, &[10, 100]).await;
    let large = Meter::measure(10_000, &[10, 100]).await;
    for ((name, a), (_, b)) in small.iter().zip(&large) {
        println!("{name}: {a:?}");
        assert_eq!(a, b, "{name}: history 10 vs 10,000");
    }
    // Sanity: the meter sees the work (a cost of nothing would prove nothing).
    let direct = &small[2].1;
    assert!(direct.write_units >= 3.0, "{direct:?}");
    assert!(direct.sqs_requests() >= 3, "{direct:?}");
    assert_eq!(direct.invocations.get("processor"), Some(&1), "{direct:?}");
}
