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
