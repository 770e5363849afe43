//! On DynamoDB and SQS (moto), sending, delivering, projecting and reading new messages cost
//! the same requests for a recipient with 10 messages of history as for one with 5,000: no
//! request reads or writes anything that grows with a user's history.

use messaging_commands::{
    CommandHandlers, Dependencies, GetNewMessages, Processor, Register, SendMessage,
};
use messaging_dynamodb::testing::{moto_clients_counted, unique_names};
use messaging_dynamodb::{
    create_event_tables, create_queues, create_read_tables, DynamoEventStore, DynamoReadStore,
    RequestCounter, SqsQueue,
};
use messaging_events::{
    AppendRequest, Event, EventStore, Limits, MessageId, NewEvent, RecordedEvent, StreamId,
    SystemClock, Timestamp, UserId, WorkItem,
};
use messaging_projections::Projector;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Requests per operation, keyed `operation -> (Service.Operation -> count)`.
type Costs = BTreeMap<&'static str, BTreeMap<String, u64>>;

async fn costs_with_history(history: u64) -> Costs {
    let counter = RequestCounter::new();
    let clients = moto_clients_counted(&counter).await;
    let names = unique_names();
    create_event_tables(&clients, &names)
        .await
        .expect("event tables");
    create_read_tables(&clients, &names)
        .await
        .expect("read tables");
    let urls = create_queues(&clients, &names).await.expect("queues");
    let store = Arc::new(DynamoEventStore::new(&clients, &names));
    let read = Arc::new(DynamoReadStore::new(&clients, &names));
    let handlers = CommandHandlers::new(Dependencies {
        store: store.clone(),
        read: read.clone(),
        direct_queue: Arc::new(SqsQueue::new(&clients, urls.direct)),
        group_queue: Arc::new(SqsQueue::new(&clients, urls.group)),
        clock: Arc::new(SystemClock),
        limits: Limits::default(),
    });
    let processor = Processor::new(store.clone());
    let projector = Projector::new(read.clone());

    let user = || async {
        let registered = handlers
            .register(Register::default(), None)
            .await
            .expect("registered");
        handlers
            .authenticate(&registered.token)
            .await
            .expect("token")
    };
    let sender = user().await;
    let recipient = user().await;

    // The recipient's history: `history` delivered, projected and already read messages.
    let inbox = StreamId::inbox(recipient);
    let mut written: Vec<RecordedEvent> = Vec::new();
    // One event per append (a plain conditional PutItem): moto copies whole tables for every
    // item of a TransactWriteItems, which makes large transactions crawl there.
    for i in 0..history {
        let event = NewEvent::new(Event::MessageDelivered {
            message_id: MessageId::new_random(),
            recipient,
            sender: UserId::new_random(),
            receiver: Some(recipient),
            group_id: None,
            text: format!("old {i}"),
            sent_at: Timestamp(i as i64),
        });
        let request = AppendRequest::single(inbox.clone(), i, vec![event]);
        written.extend(store.append(request).await.expect("history appended"));
    }
    let read_up_to = AppendRequest::single(
        StreamId::reads(recipient),
        0,
        vec![NewEvent::new(Event::MessagesRead {
            user_id: recipient,
            up_to: history,
        })],
    );
    written.extend(store.append(read_up_to).await.expect("marker appended"));
    for chunk in written.chunks(500) {
        projector.handle(chunk).await.expect("history projected");
    }

    let mut costs = Costs::new();
    let before = counter.snapshot();
    let body = SendMessage {
        sender_id: sender.to_string(),
        receiver_id: recipient.to_string(),
        message: "hello".into(),
    };
    handlers
        .send_message(sender, body, None)
        .await
        .expect("accepted");
    costs.insert("send", counter.since(&before));

    let sent = store
        .last_event(&StreamId::outbox(sender))
        .await
        .expect("read")
        .expect("sent event");
    let before = counter.snapshot();
    processor
        .handle(&WorkItem { sent: sent.clone() })
        .await
        .expect("processed");
    costs.insert("deliver", counter.since(&before));

    let delivered = store
        .read_stream(&inbox, history, None)
        .await
        .expect("read");
    let outcome = store
        .read_stream(&StreamId::message(message_id(&sent)), 0, None)
        .await
        .expect("read");
    let batch: Vec<RecordedEvent> = [vec![sent], delivered, outcome].concat();
    assert_eq!(batch.len(), 3, "sent, delivered, dispatched");
    let before = counter.snapshot();
    projector.handle(&batch).await.expect("projected");
    costs.insert("project", counter.since(&before));

    let before = counter.snapshot();
    let query = GetNewMessages {
        user_id: recipient.to_string(),
        since: None,
        limit: None,
    };
    let new = handlers
        .get_new_messages(recipient, query)
        .await
        .expect("polled");
    assert_eq!(new.messages.len(), 1, "only the new message");
    costs.insert("read new", counter.since(&before));

    let before = counter.snapshot();
    let query = GetNewMessages {
        user_id: recipient.to_string(),
        since: None,
        limit: None,
    };
    let empty = handlers
        .get_new_messages(recipient, query)
        .await
        .expect("polled");
    assert!(empty.messages.is_empty());
    costs.insert("read nothing new", counter.since(&before));
    costs
}

fn message_id(sent: &RecordedEvent) -> MessageId {
    match &sent.event {
        Event::DirectMessageSent { message_id, .. } => *message_id,
        other => panic!("not a send: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_costs_do_not_grow_with_history() {
    let small = costs_with_history(10).await;
    let large = costs_with_history(5_000).await;
    println!("requests per operation (history 10): {small:#?}");
    assert_eq!(small, large, "history 10 vs 5,000");
    // Sanity: the meter sees the requests (a cost of nothing would prove nothing).
    assert!(small["send"].values().sum::<u64>() >= 3, "{small:?}");
    assert!(small["read new"].values().sum::<u64>() >= 2, "{small:?}");
}
