//! The change feed: commit order, checkpoints and at-least-once delivery.

mod common;

use common::{open, single, stream};
use messaging_embedded::Embedded;
use messaging_events::{ChangeFeed, EventStore, FeedRecord};
use std::time::Duration;

fn positions(records: &[FeedRecord]) -> Vec<u64> {
    records.iter().map(|r| r.position).collect()
}

#[tokio::test]
async fn poll_returns_every_stream_in_append_order() {
    let (_dir, store) = open();
    let (a, b) = (stream(), stream());
    let mut appended = store.events.append(single(&a, 2)).await.unwrap();
    appended.extend(store.events.append(single(&b, 1)).await.unwrap());

    let records = store.events.poll("projector", 10).await.unwrap();

    assert_eq!(positions(&records), vec![1, 2, 3]);
    let events: Vec<_> = records.into_iter().map(|r| r.event).collect();
    assert_eq!(events, appended);
}

#[tokio::test]
async fn poll_returns_at_most_max_records() {
    let (_dir, store) = open();
    store.events.append(single(&stream(), 5)).await.unwrap();
    assert_eq!(
        positions(&store.events.poll("p", 2).await.unwrap()),
        vec![1, 2]
    );
    assert!(store.events.poll("p", 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn given_a_commit_then_the_next_poll_resumes_after_it() {
    let (_dir, store) = open();
    store.events.append(single(&stream(), 4)).await.unwrap();

    store.events.commit("p", 2).await.unwrap();

    assert_eq!(
        positions(&store.events.poll("p", 10).await.unwrap()),
        vec![3, 4]
    );
}

#[tokio::test]
async fn uncommitted_records_are_returned_again() {
    let (_dir, store) = open();
    store.events.append(single(&stream(), 2)).await.unwrap();
    let first = store.events.poll("p", 10).await.unwrap();
    let again = store.events.poll("p", 10).await.unwrap();
    assert_eq!(first, again);
}

#[tokio::test]
async fn a_commit_never_moves_the_checkpoint_back() {
    let (_dir, store) = open();
    store.events.append(single(&stream(), 4)).await.unwrap();
    store.events.commit("p", 3).await.unwrap();
    store.events.commit("p", 1).await.unwrap();
    assert_eq!(
        positions(&store.events.poll("p", 10).await.unwrap()),
        vec![4]
    );
}

#[tokio::test]
async fn consumers_have_their_own_checkpoints() {
    let (_dir, store) = open();
    store.events.append(single(&stream(), 2)).await.unwrap();
    store.events.commit("inbox", 2).await.unwrap();
    assert!(store.events.poll("inbox", 10).await.unwrap().is_empty());
    assert_eq!(
        positions(&store.events.poll("replay", 10).await.unwrap()),
        vec![1, 2]
    );
}

#[tokio::test]
async fn given_a_restart_then_uncommitted_records_are_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Embedded::open(dir.path()).unwrap();
        store.events.append(single(&stream(), 3)).await.unwrap();
        let records = store.events.poll("p", 10).await.unwrap();
        assert_eq!(records.len(), 3);
        // Crash after handling the first record and committing only it.
        store.events.commit("p", 1).await.unwrap();
    }
    let store = Embedded::open(dir.path()).unwrap();
    assert_eq!(
        positions(&store.events.poll("p", 10).await.unwrap()),
        vec![2, 3]
    );
}

#[tokio::test]
async fn a_waiting_consumer_is_woken_by_an_append() {
    let (_dir, store) = open();
    let appended = store.events.appended();
    let waiter = tokio::spawn(async move { appended.notified().await });
    tokio::task::yield_now().await;

    store.events.append(single(&stream(), 1)).await.unwrap();

    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .unwrap();
}

#[tokio::test]
async fn a_consumer_that_starts_waiting_just_after_an_append_still_wakes() {
    let (_dir, store) = open();
    store.events.append(single(&stream(), 1)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), store.events.appended().notified())
        .await
        .expect("a permit was left for the late waiter");
}

#[tokio::test]
async fn a_poll_of_some_types_reads_past_the_others_and_says_how_far_it_read() {
    let (_dir, store) = open();
    let send = |n: u32| {
        let sender = messaging_events::UserId::new_random();
        messaging_events::AppendRequest::single(
            messaging_events::StreamId::outbox(sender),
            0,
            vec![messaging_events::NewEvent::new(
                messaging_events::Event::DirectMessageSent {
                    message_id: messaging_events::MessageId::new_random(),
                    sender,
                    receiver: messaging_events::UserId::new_random(),
                    text: format!("send {n}"),
                    sent_at: messaging_events::Timestamp(1),
                    blocks_version: 0,
                },
            )],
        )
    };
    store.events.append(single(&stream(), 3)).await.unwrap();
    store.events.append(send(1)).await.unwrap();
    store.events.append(single(&stream(), 2)).await.unwrap();
    store.events.append(send(2)).await.unwrap();
    let sends = ["DirectMessageSent"];

    let page = store.events.poll_types("d", &sends, 10).await.unwrap();
    assert_eq!(positions(&page.records), vec![4, 7]);
    assert_eq!(page.read_to, Some(7));

    // A full page ends at its last record.
    let page = store.events.poll_types("d", &sends, 1).await.unwrap();
    assert_eq!(positions(&page.records), vec![4]);
    assert_eq!(page.read_to, Some(4));
    store.events.commit("d", 4).await.unwrap();
    let page = store.events.poll_types("d", &sends, 10).await.unwrap();
    assert_eq!(positions(&page.records), vec![7]);
    store.events.commit("d", 7).await.unwrap();
    assert_eq!(
        store
            .events
            .poll_types("d", &sends, 10)
            .await
            .unwrap()
            .read_to,
        None
    );

    // Only other types after the checkpoint: nothing to handle, but read past them.
    store.events.append(single(&stream(), 2)).await.unwrap();
    let page = store.events.poll_types("d", &sends, 10).await.unwrap();
    assert!(page.records.is_empty());
    assert_eq!(page.read_to, Some(9));
}
