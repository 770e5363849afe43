//! The SQS work queues on moto: per-sender FIFO order, visibility timeouts, receipts,
//! de-duplication by event id, and the dead-letter queue.

use aws_sdk_sqs::types::QueueAttributeName;
use messaging_dynamodb::testing::{moto_clients, unique_names};
use messaging_dynamodb::{
    create_queues, dead_letter_queue_name, queue_urls, AwsClients, QueueUrls, SqsQueue,
};
use messaging_events::{
    Event, MessageId, QueueError, RecordedEvent, StreamId, Timestamp, UserId, WorkItem, WorkQueue,
};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

struct Queues {
    clients: AwsClients,
    urls: QueueUrls,
    direct: SqsQueue,
    group: SqsQueue,
}

/// Fresh queues for one test (moto slows down as a queue fills, so none is shared).
async fn open() -> Queues {
    let clients = moto_clients().await;
    let urls = create_queues(&clients, &unique_names()).await.unwrap();
    Queues {
        direct: SqsQueue::new(&clients, urls.direct.clone()),
        group: SqsQueue::new(&clients, urls.group.clone()),
        clients,
        urls,
    }
}

/// A direct message accepted from `sender`.
fn item_from(sender: UserId, n: i64) -> WorkItem {
    let sent_at = Timestamp(n);
    WorkItem {
        sent: RecordedEvent {
            stream: StreamId::outbox(sender),
            version: u64::try_from(n).unwrap(),
            event_id: uuid::Uuid::new_v4(),
            recorded_at: sent_at,
            event: Event::DirectMessageSent {
                message_id: MessageId::new_random(),
                sender,
                receiver: UserId::new_random(),
                text: format!("m{n}"),
                sent_at,
                blocks_version: 0,
            },
        },
    }
}

/// A direct message from a sender of its own.
fn item(n: i64) -> WorkItem {
    item_from(UserId::new_random(), n)
}

fn items_of(messages: &[messaging_events::QueueMessage]) -> Vec<WorkItem> {
    messages.iter().map(|m| m.item.clone()).collect()
}

#[tokio::test]
async fn creating_the_queues_again_returns_the_same_urls() {
    let clients = moto_clients().await;
    let names = unique_names();
    let created = create_queues(&clients, &names).await.unwrap();
    assert_eq!(create_queues(&clients, &names).await.unwrap(), created);
    assert_eq!(queue_urls(&clients, &names).await.unwrap(), created);

    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&created.direct)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(attributes[&QueueAttributeName::FifoQueue], "true");
    assert_eq!(attributes[&QueueAttributeName::VisibilityTimeout], "60");
    assert_eq!(
        attributes[&QueueAttributeName::ContentBasedDeduplication],
        "false"
    );
    let redrive: serde_json::Value =
        serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
    let dlq = dead_letter_queue_name(&names.direct_queue());
    assert_eq!(dlq, format!("{}direct-dlq.fifo", names.prefix));
    assert!(redrive["deadLetterTargetArn"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{dlq}")));
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
}

#[tokio::test]
async fn queue_urls_of_missing_queues_is_an_error() {
    assert!(queue_urls(&moto_clients().await, &unique_names())
        .await
        .is_err());
}

#[tokio::test]
async fn one_senders_messages_are_received_in_enqueue_order() {
    let q = open().await;
    let (ada, bob) = (UserId::new_random(), UserId::new_random());
    let ada_items: Vec<_> = (1..=4).map(|n| item_from(ada, n)).collect();
    let bob_items: Vec<_> = (1..=3).map(|n| item_from(bob, n)).collect();
    // Interleaved, over several calls.
    q.direct
        .enqueue(vec![
            ada_items[0].clone(),
            bob_items[0].clone(),
            ada_items[1].clone(),
        ])
        .await
        .unwrap();
    q.direct
        .enqueue(vec![bob_items[1].clone(), ada_items[2].clone()])
        .await
        .unwrap();
    q.direct
        .enqueue(vec![ada_items[3].clone(), bob_items[2].clone()])
        .await
        .unwrap();

    let received = q.direct.receive(10, LONG).await.unwrap();

    assert!(received.iter().all(|m| m.receive_count == 1));
    let of = |sender: UserId| -> Vec<WorkItem> {
        items_of(&received)
            .into_iter()
            .filter(|i| i.sent.stream == StreamId::outbox(sender))
            .collect()
    };
    assert_eq!(of(ada), ada_items);
    assert_eq!(of(bob), bob_items);
    assert!(q.direct.receive(10, LONG).await.unwrap().is_empty());
}

#[tokio::test]
async fn more_than_ten_items_are_sent_in_several_batches_in_order() {
    let q = open().await;
    let sender = UserId::new_random();
    let items: Vec<_> = (1..=25).map(|n| item_from(sender, n)).collect();
    q.direct.enqueue(items.clone()).await.unwrap();

    let mut got = Vec::new();
    for _ in 0..10 {
        let batch = q.direct.receive(10, LONG).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 10);
        got.extend(items_of(&batch));
        // One sender is one message group: its next messages wait until these are deleted.
        q.direct
            .ack(batch.into_iter().map(|m| m.receipt).collect())
            .await
            .unwrap();
    }
    assert_eq!(got, items);
}

#[tokio::test]
async fn a_senders_later_messages_wait_while_an_earlier_one_is_in_flight() {
    let q = open().await;
    let sender = UserId::new_random();
    let (first, second) = (item_from(sender, 1), item_from(sender, 2));
    q.direct
        .enqueue(vec![first.clone(), second.clone()])
        .await
        .unwrap();

    let received = q.direct.receive(1, LONG).await.unwrap();
    assert_eq!(items_of(&received), vec![first]);
    assert!(
        q.direct.receive(10, LONG).await.unwrap().is_empty(),
        "the group is locked while its first message is in flight"
    );

    q.direct
        .ack(vec![received[0].receipt.clone()])
        .await
        .unwrap();
    assert_eq!(
        items_of(&q.direct.receive(10, LONG).await.unwrap()),
        vec![second]
    );
}

#[tokio::test]
async fn receive_takes_at_most_max() {
    let q = open().await;
    q.direct.enqueue((1..=3).map(item).collect()).await.unwrap();
    assert_eq!(q.direct.receive(2, LONG).await.unwrap().len(), 2);
    assert_eq!(q.direct.receive(2, LONG).await.unwrap().len(), 1);
    assert!(q.direct.receive(0, LONG).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_direct_and_group_queues_are_separate() {
    let q = open().await;
    q.group.enqueue(vec![item(1)]).await.unwrap();
    assert!(q.direct.receive(10, LONG).await.unwrap().is_empty());
    assert_eq!(q.group.receive(10, LONG).await.unwrap().len(), 1);
    assert_eq!(q.direct.queue_url(), q.urls.direct);
    assert_eq!(q.group.queue_url(), q.urls.group);
}

#[tokio::test]
async fn given_no_ack_then_the_message_reappears_after_its_visibility_timeout() {
    let q = open().await;
    q.direct.enqueue(vec![item(1)]).await.unwrap();
    // SQS counts visibility in whole seconds: 50 ms becomes 1 s.
    let first = q
        .direct
        .receive(10, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(q.direct.receive(10, LONG).await.unwrap().is_empty());

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let again = q.direct.receive(10, LONG).await.unwrap();

    assert_eq!(again.len(), 1);
    assert_eq!(again[0].item, first[0].item);
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt, first[0].receipt);
}

#[tokio::test]
async fn an_ack_deletes_the_message() {
    let q = open().await;
    let (a, b) = (item(1), item(2));
    q.direct.enqueue(vec![a.clone(), b.clone()]).await.unwrap();
    let received = q.direct.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(items_of(&received), vec![a]);

    q.direct
        .ack(vec![received[0].receipt.clone()])
        .await
        .unwrap();

    let rest = q.direct.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(items_of(&rest), vec![b]);
}

/// SQS documents that a delete must use the latest receipt of a message: with an older one
/// the request "succeeds" but deletes nothing, and FIFO queues refuse a receipt whose
/// visibility timeout ran out. moto 5.2.5 differs: it accepts any receipt the message ever
/// had and deletes the message, even while it is in flight under a newer receipt. Both are
/// safe here, because `ack` comes only after the message was handled: the redelivered copy
/// is either handled again (AWS) or dropped as done (moto).
#[tokio::test]
async fn a_stale_receipt_after_redelivery_deletes_the_message_on_moto() {
    let q = open().await;
    q.direct.enqueue(vec![item(1)]).await.unwrap();
    let first = q.direct.receive(1, Duration::ZERO).await.unwrap();
    let second = q.direct.receive(1, LONG).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(second[0].receipt, first[0].receipt);

    q.direct.ack(vec![first[0].receipt.clone()]).await.unwrap();

    // Gone for good on moto: not even the current receipt's visibility brings it back.
    q.clients
        .sqs
        .change_message_visibility()
        .queue_url(&q.urls.direct)
        .receipt_handle(&second[0].receipt)
        .visibility_timeout(0)
        .send()
        .await
        .expect_err("moto no longer knows the message");
    assert!(q
        .direct
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    // Acknowledging it again with the current receipt is harmless.
    q.direct.ack(vec![second[0].receipt.clone()]).await.unwrap();
}

#[tokio::test]
async fn a_receipt_sqs_did_not_issue_is_malformed_and_the_others_are_still_deleted() {
    let q = open().await;
    q.direct.enqueue(vec![item(1)]).await.unwrap();
    let received = q.direct.receive(1, Duration::ZERO).await.unwrap();

    let result = q
        .direct
        .ack(vec!["not-a-receipt".into(), received[0].receipt.clone()])
        .await;

    assert!(
        matches!(result, Err(QueueError::Malformed(_))),
        "{result:?}"
    );
    assert!(q
        .direct
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_same_event_enqueued_twice_is_received_once() {
    let q = open().await;
    let (retried, other) = (item(1), item(2));
    q.direct.enqueue(vec![retried.clone()]).await.unwrap();
    // A retry of the same enqueue, and the same event within one call.
    q.direct
        .enqueue(vec![retried.clone(), other.clone(), retried.clone()])
        .await
        .unwrap();

    let received = q.direct.receive(10, LONG).await.unwrap();
    let mut got = items_of(&received);
    got.sort_by_key(|i| i.sent.version);
    assert_eq!(got, vec![retried, other]);
    q.direct
        .ack(received.into_iter().map(|m| m.receipt).collect())
        .await
        .unwrap();
    assert!(q
        .direct
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_undecodable_message_is_skipped_and_ends_in_the_dead_letter_queue() {
    let q = open().await;
    q.clients
        .sqs
        .send_message()
        .queue_url(&q.urls.direct)
        .message_body("garbage")
        .message_group_id("somebody")
        .message_deduplication_id("garbage-1")
        .send()
        .await
        .unwrap();
    let good = item(7);
    q.direct.enqueue(vec![good.clone()]).await.unwrap();

    let received = q.direct.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(items_of(&received), vec![good]);
    q.direct
        .ack(received.into_iter().map(|m| m.receipt).collect())
        .await
        .unwrap();

    // Received (and skipped) four more times, it is moved on the sixth receive.
    for _ in 0..6 {
        assert!(q
            .direct
            .receive(10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty());
    }
    let dlq = q
        .clients
        .sqs
        .get_queue_url()
        .queue_name(dead_letter_queue_name(
            q.urls.direct.rsplit('/').next().unwrap(),
        ))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dead = q
        .clients
        .sqs
        .receive_message()
        .queue_url(dlq)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("garbage"));
}
