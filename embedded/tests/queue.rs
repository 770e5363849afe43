//! The work queues: FIFO, visibility timeouts, receipts and poison messages.

mod common;

use common::{open, sent};
use messaging_embedded::Embedded;
use messaging_events::{MessageId, QueueError, Timestamp, WorkItem, WorkQueue};
use std::time::Duration;

fn item(n: i64) -> WorkItem {
    WorkItem {
        sent: sent(MessageId::new_random(), Timestamp(n)),
    }
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn messages_are_received_in_enqueue_order_and_hidden_while_in_flight() {
    let (_dir, store) = open();
    let items: Vec<_> = (1..=3).map(item).collect();
    store
        .direct_queue
        .enqueue(items[..2].to_vec())
        .await
        .unwrap();
    store
        .direct_queue
        .enqueue(items[2..].to_vec())
        .await
        .unwrap();

    let received = store.direct_queue.receive(10, LONG).await.unwrap();

    let got: Vec<_> = received.iter().map(|m| m.item.clone()).collect();
    assert_eq!(got, items);
    assert!(received.iter().all(|m| m.receive_count == 1));
    assert!(store
        .direct_queue
        .receive(10, LONG)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn receive_takes_at_most_max() {
    let (_dir, store) = open();
    store
        .direct_queue
        .enqueue((1..=3).map(item).collect())
        .await
        .unwrap();
    assert_eq!(store.direct_queue.receive(2, LONG).await.unwrap().len(), 2);
    assert_eq!(store.direct_queue.receive(2, LONG).await.unwrap().len(), 1);
    assert!(store
        .direct_queue
        .receive(0, LONG)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_direct_and_group_queues_are_separate() {
    let (_dir, store) = open();
    store.group_queue.enqueue(vec![item(1)]).await.unwrap();
    assert!(store
        .direct_queue
        .receive(10, LONG)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.group_queue.receive(10, LONG).await.unwrap().len(), 1);
}

#[tokio::test]
async fn given_no_ack_then_the_message_reappears_after_its_visibility_timeout() {
    let (_dir, store) = open();
    store.direct_queue.enqueue(vec![item(1)]).await.unwrap();
    let first = store
        .direct_queue
        .receive(10, Duration::from_millis(50))
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = store.direct_queue.receive(10, LONG).await.unwrap();

    assert_eq!(again.len(), 1);
    assert_eq!(again[0].item, first[0].item);
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt, first[0].receipt);
}

#[tokio::test]
async fn an_ack_deletes_the_message() {
    let (_dir, store) = open();
    let (a, b) = (item(1), item(2));
    store
        .direct_queue
        .enqueue(vec![a.clone(), b.clone()])
        .await
        .unwrap();
    let received = store.direct_queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(received[0].item, a);

    store
        .direct_queue
        .ack(vec![received[0].receipt.clone()])
        .await
        .unwrap();

    let rest = store
        .direct_queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    let rest: Vec<_> = rest.into_iter().map(|m| m.item).collect();
    assert_eq!(rest, vec![b]);
}

#[tokio::test]
async fn an_ack_with_a_stale_receipt_does_not_delete_the_redelivered_message() {
    let (_dir, store) = open();
    store.direct_queue.enqueue(vec![item(1)]).await.unwrap();
    let first = store.direct_queue.receive(1, Duration::ZERO).await.unwrap();
    let second = store.direct_queue.receive(1, Duration::ZERO).await.unwrap();

    store
        .direct_queue
        .ack(vec![first[0].receipt.clone()])
        .await
        .unwrap();

    let third = store.direct_queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(third.len(), 1, "the stale ack deleted the message");
    assert_eq!(third[0].receive_count, 3);
    store
        .direct_queue
        .ack(vec![third[0].receipt.clone(), second[0].receipt.clone()])
        .await
        .unwrap();
    assert!(store
        .direct_queue
        .receive(1, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_receipt_that_was_not_issued_here_is_malformed() {
    let (_dir, store) = open();
    for bad in ["", "12", "a:b", "1:2:3"] {
        assert!(
            matches!(
                store.direct_queue.ack(vec![bad.to_string()]).await,
                Err(QueueError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn an_undecodable_message_is_dead_lettered_and_does_not_block_the_queue() {
    let (dir, store) = open();
    {
        let conn = rusqlite::Connection::open(dir.path().join("events.sqlite3")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.execute(
            "INSERT INTO queue_messages (queue, body, visible_at, receive_count)
             VALUES ('direct', 'garbage', 0, 0)",
            [],
        )
        .unwrap();
    }
    let good = item(7);
    store
        .direct_queue
        .enqueue(vec![good.clone()])
        .await
        .unwrap();

    let received = store.direct_queue.receive(10, LONG).await.unwrap();

    assert_eq!(received.len(), 1);
    assert_eq!(received[0].item, good);
    let conn = rusqlite::Connection::open(dir.path().join("events.sqlite3")).unwrap();
    let dead: String = conn
        .query_row("SELECT body FROM dead_letters", [], |row| row.get(0))
        .unwrap();
    assert_eq!(dead, "garbage");
}

#[tokio::test]
async fn enqueued_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let enqueued = item(1);
    {
        let store = Embedded::open(dir.path()).unwrap();
        store
            .group_queue
            .enqueue(vec![enqueued.clone()])
            .await
            .unwrap();
    }
    let store = Embedded::open(dir.path()).unwrap();
    let received = store.group_queue.receive(10, LONG).await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].item, enqueued);
}

#[tokio::test]
async fn a_waiting_processor_is_woken_by_an_enqueue() {
    let (_dir, store) = open();
    let enqueued = store.direct_queue.enqueued();
    let waiter = tokio::spawn(async move { enqueued.notified().await });
    tokio::task::yield_now().await;

    store.direct_queue.enqueue(vec![item(1)]).await.unwrap();

    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .unwrap();
}
