//! The processors' SQS handler, over the embedded event store.

use crate::helpers::*;
use messaging_commands::Processor;
use messaging_events::{Event, RecordedEvent, StreamId, Timestamp, WorkItem};
use messaging_lambda::handle_sqs_batch;
use std::sync::atomic::Ordering;

#[tokio::test]
async fn a_batch_that_all_succeeds_reports_no_failure_and_delivers_in_sender_order() {
    let store = Store::new();
    let processor = Processor::new(store.events());

    let response = handle_sqs_batch(&processor, sqs_event("sqs-direct-batch.json")).await;

    assert_eq!(sqs_failures(&response), Vec::<String>::new());
    let bob = store.inbox(BOB).await;
    assert_eq!(
        bob.len(),
        3,
        "Bob gets Ada's two messages and Cy's: {bob:?}"
    );
    let ada_order: Vec<_> = bob.iter().filter(|m| **m != message(2)).copied().collect();
    assert_eq!(ada_order, vec![message(1), message(3)], "Ada's order holds");
    assert!(bob.contains(&message(2)));
    assert_eq!(store.inbox(CY).await, vec![message(4)]);
    for n in 1..=4 {
        assert!(
            matches!(
                store.outcome(n).await,
                Some(Event::MessageDispatched { delivered: 1, .. })
            ),
            "message {n} has its outcome"
        );
    }
}

#[tokio::test]
async fn an_undecodable_body_is_the_only_failure_reported() {
    let store = Store::new();
    let processor = Processor::new(store.events());
    let event = sqs_event("sqs-batch-with-undecodable-body.json");
    let ids = message_ids(&event);

    let response = handle_sqs_batch(&processor, event).await;

    assert_eq!(sqs_failures(&response), vec![ids[1].clone()]);
    assert_eq!(store.inbox(BOB).await, vec![message(1), message(3)]);
}

#[tokio::test]
async fn a_failure_holds_back_the_later_messages_of_its_group_only() {
    let store = Store::new();
    let processor = Processor::new(store.events());
    // Ada: message 1, an undecodable body, message 3; Cy: message 2.
    let event = sqs_event("sqs-fifo-batch-with-failure.json");
    let ids = message_ids(&event);

    let response = handle_sqs_batch(&processor, event).await;

    assert_eq!(
        sqs_failures(&response),
        vec![ids[1].clone(), ids[2].clone()],
        "the bad record and Ada's later message stay on the queue"
    );
    let bob = store.inbox(BOB).await;
    assert!(
        bob.contains(&message(1)) && bob.contains(&message(2)),
        "{bob:?}"
    );
    assert!(
        !bob.contains(&message(3)),
        "message 3 was held back, not processed"
    );
    assert_eq!(store.outcome(3).await, None);
}

#[tokio::test]
async fn a_retryable_failure_holds_back_its_group_until_redelivery_succeeds() {
    let store = Store::new();
    let flaky = UnavailableStream::new(store.events(), StreamId::message(message(1)));
    let processor = Processor::new(flaky.clone());
    let event = sqs_event("sqs-direct-batch.json");
    let ids = message_ids(&event);

    let response = handle_sqs_batch(&processor, event.clone()).await;

    // Ada's messages 1, 3 and 4 wait; Cy's message 2 goes through.
    assert_eq!(
        sqs_failures(&response),
        vec![ids[0].clone(), ids[2].clone(), ids[3].clone()]
    );
    assert_eq!(store.inbox(BOB).await, vec![message(2)]);
    assert_eq!(store.inbox(CY).await, vec![]);
    for n in [1, 3, 4] {
        assert_eq!(store.outcome(n).await, None, "message {n} untouched");
    }

    // SQS hands the failed messages out again, in order, once the store has recovered.
    flaky.failing.store(false, Ordering::SeqCst);
    let mut redelivery = event;
    redelivery
        .records
        .retain(|r| sqs_failures(&response).contains(r.message_id.as_ref().expect("an id")));
    let response = handle_sqs_batch(&processor, redelivery).await;

    assert_eq!(sqs_failures(&response), Vec::<String>::new());
    assert_eq!(
        store.inbox(BOB).await,
        vec![message(2), message(1), message(3)]
    );
    assert_eq!(store.inbox(CY).await, vec![message(4)]);
}

#[tokio::test]
async fn without_a_message_group_the_sender_is_the_unit_of_order() {
    let store = Store::new();
    let flaky = UnavailableStream::new(store.events(), StreamId::message(message(1)));
    let processor = Processor::new(flaky);
    let mut event = sqs_event("sqs-direct-batch.json");
    for record in &mut event.records {
        record.attributes.remove("MessageGroupId");
    }
    let ids = message_ids(&event);

    let response = handle_sqs_batch(&processor, event).await;

    assert_eq!(
        sqs_failures(&response),
        vec![ids[0].clone(), ids[2].clone(), ids[3].clone()]
    );
    assert_eq!(store.inbox(BOB).await, vec![message(2)]);
}

#[tokio::test]
async fn work_that_is_not_a_message_is_reported_failed_for_the_dead_letter_queue() {
    let store = Store::new();
    let processor = Processor::new(store.events());
    let mut event = sqs_event("sqs-direct-batch.json");
    let ids = message_ids(&event);
    let not_a_message = WorkItem {
        sent: RecordedEvent {
            stream: StreamId::user(user(CY)),
            version: 1,
            event_id: uuid::Uuid::new_v4(),
            recorded_at: Timestamp(1_732_440_000_000_000),
            event: Event::UserRegistered {
                user_id: user(CY),
                display_name: None,
            },
        },
    };
    event.records[1].body = Some(serde_json::to_string(&not_a_message).expect("encodes"));

    let response = handle_sqs_batch(&processor, event).await;

    assert_eq!(sqs_failures(&response), vec![ids[1].clone()]);
    assert_eq!(store.inbox(BOB).await, vec![message(1), message(3)]);
    assert_eq!(store.inbox(CY).await, vec![message(4)]);
}

#[tokio::test]
async fn a_redelivered_batch_changes_nothing() {
    let store = Store::new();
    let processor = Processor::new(store.events());
    let event = sqs_event("sqs-direct-batch.json");

    let first = handle_sqs_batch(&processor, event.clone()).await;
    let bob_after_first = store.stream(StreamId::inbox(user(BOB))).await;
    let cy_after_first = store.stream(StreamId::inbox(user(CY))).await;
    // Lambda timed out before deleting: the whole batch comes again.
    let second = handle_sqs_batch(&processor, event).await;

    assert_eq!(sqs_failures(&first), Vec::<String>::new());
    assert_eq!(sqs_failures(&second), Vec::<String>::new());
    assert_eq!(
        store.stream(StreamId::inbox(user(BOB))).await,
        bob_after_first
    );
    assert_eq!(
        store.stream(StreamId::inbox(user(CY))).await,
        cy_after_first
    );
    assert_eq!(bob_after_first.len(), 3, "no second inbox event");
    for n in 1..=4 {
        assert_eq!(
            store.stream(StreamId::message(message(n))).await.len(),
            1,
            "one outcome for message {n}"
        );
    }
}
