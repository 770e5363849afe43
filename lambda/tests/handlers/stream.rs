//! The projector's DynamoDB stream handler, over the embedded read store.

use crate::helpers::*;
use messaging_events::Timestamp;
use messaging_lambda::handle_stream_batch;
use messaging_projections::{Projector, ReadModelChange, ReadStore};
use std::sync::atomic::Ordering;

#[tokio::test]
async fn inserts_are_projected_into_the_read_models() {
    let store = Store::new();
    let projector = Projector::new(store.read());

    let response =
        handle_stream_batch(&projector, stream_event("dynamodb-stream-inserts.json")).await;

    assert_eq!(stream_failures(&response), Vec::<Option<String>>::new());
    let read = &store.embedded.read;
    assert_eq!(store.projected_inbox(BOB).await, vec![(1, message(1))]);
    assert_eq!(store.projected_history(ADA).await, vec![message(1)]);
    assert_eq!(store.projected_history(BOB).await, vec![message(1)]);
    assert_eq!(read.read_marker(user(BOB)).await.expect("marker"), 1);
    let mut members = read
        .group_members(group(GROUP))
        .await
        .expect("members")
        .expect("the group exists");
    members.sort();
    let mut expected = vec![user(ADA), user(BOB)];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(
        read.blocked_by(user(BOB)).await.expect("blocks"),
        vec![user(CY)]
    );
    assert!(
        read.pending_before(Timestamp(i64::MAX), 10)
            .await
            .expect("pending")
            .is_empty(),
        "message 1 is settled"
    );
}

#[tokio::test]
async fn an_undecodable_record_is_reported_and_nothing_after_it_is_applied() {
    let store = Store::new();
    let projector = Projector::new(store.read());
    // Ada registers, sends message 1; its delivery was written by a newer build (schema 3);
    // then Bob reads and a group is created.
    let event = stream_event("dynamodb-stream-with-undecodable-record.json");
    let sequence = sequence_numbers(&event);

    let response = handle_stream_batch(&projector, event).await;

    assert_eq!(stream_failures(&response), vec![Some(sequence[2].clone())]);
    assert_eq!(
        store.projected_history(ADA).await,
        vec![message(1)],
        "the records before it are applied"
    );
    let read = &store.embedded.read;
    assert_eq!(store.projected_inbox(BOB).await, vec![]);
    assert_eq!(read.read_marker(user(BOB)).await.expect("marker"), 0);
    assert_eq!(
        read.group_members(group(GROUP)).await.expect("members"),
        None
    );
}

#[tokio::test]
async fn a_failed_projection_is_attributed_to_its_record_and_the_retry_resumes_there() {
    let store = Store::new();
    let failing = FailingWrites::new(store.read(), |change| {
        matches!(change, ReadModelChange::ReadMarker { .. })
    });
    let projector = Projector::new(failing.clone());
    let event = stream_event("dynamodb-stream-inserts.json");
    let sequence = sequence_numbers(&event);
    let read_record = 6; // Bob's MessagesRead, after a MODIFY record that is skipped

    let response = handle_stream_batch(&projector, event.clone()).await;

    assert_eq!(
        stream_failures(&response),
        vec![Some(sequence[read_record].clone())]
    );
    let read = &store.embedded.read;
    assert_eq!(
        store.projected_inbox(BOB).await,
        vec![(1, message(1))],
        "the records before the failure are applied"
    );
    assert_eq!(read.read_marker(user(BOB)).await.expect("marker"), 0);
    assert_eq!(
        read.group_members(group(GROUP)).await.expect("members"),
        None,
        "nothing after the failure is applied"
    );
    assert_eq!(read.blocked_by(user(BOB)).await.expect("blocks"), vec![]);

    // Lambda retries the shard from the reported record.
    failing.failing.store(false, Ordering::SeqCst);
    let mut retry = event;
    retry.records.drain(..read_record);
    let response = handle_stream_batch(&projector, retry).await;

    assert_eq!(stream_failures(&response), Vec::<Option<String>>::new());
    let unfailed = Store::new();
    handle_stream_batch(
        &Projector::new(unfailed.read()),
        stream_event("dynamodb-stream-inserts.json"),
    )
    .await;
    assert_eq!(
        read_model_snapshot(&store).await,
        read_model_snapshot(&unfailed).await,
        "the retried batch ends where an unfailed one does"
    );
}

#[tokio::test]
async fn a_redelivered_stream_batch_changes_nothing() {
    let store = Store::new();
    let projector = Projector::new(store.read());
    let event = stream_event("dynamodb-stream-inserts.json");

    let first = handle_stream_batch(&projector, event.clone()).await;
    let after_first = read_model_snapshot(&store).await;
    let second = handle_stream_batch(&projector, event).await;

    assert_eq!(stream_failures(&first), Vec::<Option<String>>::new());
    assert_eq!(stream_failures(&second), Vec::<Option<String>>::new());
    assert_eq!(read_model_snapshot(&store).await, after_first);
    assert_eq!(store.projected_inbox(BOB).await.len(), 1);
    assert_eq!(store.projected_history(BOB).await.len(), 1);
}

#[tokio::test]
async fn modify_and_remove_records_are_skipped() {
    let store = Store::new();
    let projector = Projector::new(store.read());
    let mut event = stream_event("dynamodb-stream-inserts.json");
    // Bob's MessagesRead, once as a MODIFY and once as a REMOVE (which has no new image).
    let read = event.records[6].clone();
    let mut modify = read.clone();
    modify.event_name = "MODIFY".into();
    let mut remove = read;
    remove.event_name = "REMOVE".into();
    remove.change.old_image = std::mem::take(&mut remove.change.new_image);
    event.records = vec![modify, remove];

    let response = handle_stream_batch(&projector, event).await;

    assert_eq!(stream_failures(&response), Vec::<Option<String>>::new());
    assert_eq!(
        store
            .embedded
            .read
            .read_marker(user(BOB))
            .await
            .expect("marker"),
        0
    );
}
