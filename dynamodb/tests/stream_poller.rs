//! The stream poller on moto: Lambda-shaped batches, checkpoints, redelivery of what was not
//! committed, and nothing lost across restarts.

use messaging_dynamodb::testing::{moto_clients, unique_names};
use messaging_dynamodb::{
    create_event_tables, AwsClients, DynamoEventStore, EventItem, ResourceNames, StreamBatch,
    StreamPoller,
};
use messaging_events::{
    AppendError, AppendRequest, Event, EventStore, NewEvent, RecordedEvent, StreamAppend, StreamId,
    UserId,
};
use std::time::Duration;

const CONSUMER: &str = "projector";

async fn open() -> (AwsClients, ResourceNames, DynamoEventStore) {
    let clients = moto_clients().await;
    let names = unique_names();
    create_event_tables(&clients, &names)
        .await
        .expect("creates tables");
    let store = DynamoEventStore::new(&clients, &names);
    (clients, names, store)
}

async fn poller(clients: &AwsClients, names: &ResourceNames, consumer: &str) -> StreamPoller {
    StreamPoller::new(clients, names, consumer)
        .await
        .expect("finds the stream")
}

fn stream() -> StreamId {
    StreamId::reads(UserId::new_random())
}

fn read_events(n: u64) -> Vec<NewEvent> {
    (1..=n)
        .map(|up_to| {
            NewEvent::new(Event::MessagesRead {
                user_id: UserId::new_random(),
                up_to,
            })
        })
        .collect()
}

/// Appends `n` events to `s` at `expected`, one append per event (one stream record each).
async fn append(
    store: &DynamoEventStore,
    s: &StreamId,
    expected: u64,
    n: u64,
) -> Vec<RecordedEvent> {
    let mut recorded = Vec::new();
    for (i, event) in (0..).zip(read_events(n)) {
        let request = AppendRequest::single(s.clone(), expected + i, vec![event]);
        recorded.extend(store.append(request).await.expect("appends"));
    }
    recorded
}

/// The events a batch carries, decoded from the records' `NewImage`s as the projector does.
fn decode(batch: &StreamBatch) -> Vec<RecordedEvent> {
    batch
        .event
        .records
        .iter()
        .map(|record| {
            EventItem::from_item(record.change.new_image.clone())
                .expect("an event item")
                .into_recorded()
                .expect("a readable event")
        })
        .collect()
}

/// Polls until a poll returns nothing, committing every batch when `commit` is set;
/// returns every event delivered, in delivery order.
async fn drain(poller: &mut StreamPoller, max_records: usize, commit: bool) -> Vec<RecordedEvent> {
    let mut delivered = Vec::new();
    for _ in 0..100 {
        let batches = poller.poll(max_records).await.expect("polls");
        if batches.is_empty() {
            return delivered;
        }
        for batch in batches {
            assert!(batch.event.records.len() <= max_records);
            delivered.extend(decode(&batch));
            if commit {
                commit_all(poller, &batch).await;
            }
        }
        if !commit {
            return delivered;
        }
    }
    panic!("the stream never ran dry");
}

async fn commit_all(poller: &mut StreamPoller, batch: &StreamBatch) {
    let last = batch
        .event
        .records
        .last()
        .and_then(|r| r.change.sequence_number.clone())
        .expect("a sequence number");
    poller
        .commit(&batch.shard_id, &last)
        .await
        .expect("commits");
}

#[tokio::test]
async fn appended_events_arrive_as_insert_records_in_order_in_the_lambda_shape() {
    let (clients, names, store) = open().await;
    let (a, b) = (stream(), stream());
    let mut appended = append(&store, &a, 0, 3).await;
    appended.extend(append(&store, &b, 0, 2).await);
    let request = AppendRequest::single(a.clone(), 3, read_events(2));
    appended.extend(store.append(request).await.expect("a transaction"));

    let mut poller = poller(&clients, &names, CONSUMER).await;
    let batches = poller.poll(100).await.expect("polls");

    assert_eq!(batches.len(), 1, "moto streams have one shard");
    let batch = &batches[0];
    assert!(!batch.shard_id.is_empty());
    for record in &batch.event.records {
        assert_eq!(record.event_name, "INSERT");
        assert_eq!(record.event_source.as_deref(), Some("aws:dynamodb"));
        assert_eq!(
            record.event_source_arn.as_deref(),
            Some(poller.stream_arn())
        );
        assert_eq!(record.aws_region, "us-east-1");
        assert!(record.change.sequence_number.is_some());
        assert!(record.change.keys.contains_key("stream"));
        assert!(record.change.keys.contains_key("version"));
    }
    assert_eq!(decode(batch), appended);

    // The batch serialises as the JSON Lambda sends and reads back the same.
    let json = serde_json::to_value(&batch.event).expect("serialises");
    assert_eq!(json["Records"][0]["eventName"], "INSERT");
    assert!(json["Records"][0]["dynamodb"]["NewImage"]["stream"]["S"].is_string());
    let back: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json).expect("deserialises");
    assert_eq!(back, batch.event);
}

#[tokio::test]
async fn batches_hold_at_most_max_records_and_continue_where_the_last_one_ended() {
    let (clients, names, store) = open().await;
    let s = stream();
    let appended = append(&store, &s, 0, 7).await;
    let mut poller = poller(&clients, &names, CONSUMER).await;

    let delivered = drain(&mut poller, 3, true).await;

    assert_eq!(delivered, appended);
}

#[tokio::test]
async fn an_uncommitted_batch_is_delivered_again_by_a_new_poller() {
    let (clients, names, store) = open().await;
    let appended = append(&store, &stream(), 0, 4).await;

    let mut first = poller(&clients, &names, CONSUMER).await;
    assert_eq!(drain(&mut first, 100, false).await, appended);
    drop(first); // a crash before the batch was handled

    let mut second = poller(&clients, &names, CONSUMER).await;
    assert_eq!(drain(&mut second, 100, true).await, appended);
}

#[tokio::test]
async fn a_committed_batch_is_not_delivered_again_after_a_restart() {
    let (clients, names, store) = open().await;
    let s = stream();
    let first_events = append(&store, &s, 0, 3).await;
    let mut first = poller(&clients, &names, CONSUMER).await;
    assert_eq!(drain(&mut first, 100, true).await, first_events);
    drop(first);

    let later = append(&store, &s, 3, 2).await;
    let mut second = poller(&clients, &names, CONSUMER).await;
    assert_eq!(drain(&mut second, 100, true).await, later);
    assert!(second.poll(100).await.expect("polls").is_empty());
}

#[tokio::test]
async fn a_partly_committed_batch_is_delivered_again_from_the_first_uncommitted_record() {
    let (clients, names, store) = open().await;
    let appended = append(&store, &stream(), 0, 5).await;
    let mut poller = poller(&clients, &names, CONSUMER).await;

    let batches = poller.poll(100).await.expect("polls");
    assert_eq!(decode(&batches[0]), appended);
    // The handler reported record 3 as failed: records 1 and 2 are done.
    let second = batches[0].event.records[1]
        .change
        .sequence_number
        .clone()
        .expect("a sequence number");
    poller
        .commit(&batches[0].shard_id, &second)
        .await
        .expect("commits");

    let again = poller.poll(100).await.expect("polls");
    assert_eq!(decode(&again[0]), appended[2..].to_vec());
    commit_all(&mut poller, &again[0]).await;
    assert!(poller.poll(100).await.expect("polls").is_empty());
}

#[tokio::test]
async fn a_failed_batch_without_any_commit_is_delivered_again_by_the_same_poller() {
    let (clients, names, store) = open().await;
    let appended = append(&store, &stream(), 0, 3).await;
    let mut poller = poller(&clients, &names, CONSUMER).await;

    assert_eq!(drain(&mut poller, 100, false).await, appended);
    assert_eq!(drain(&mut poller, 100, false).await, appended);
    assert_eq!(drain(&mut poller, 100, true).await, appended);
    assert!(poller.poll(100).await.expect("polls").is_empty());
}

#[tokio::test]
async fn a_checkpoint_never_moves_back() {
    let (clients, names, store) = open().await;
    append(&store, &stream(), 0, 3).await;
    let mut poller = poller(&clients, &names, CONSUMER).await;
    let batch = poller.poll(100).await.expect("polls").remove(0);
    let sequence = |i: usize| {
        batch.event.records[i]
            .change
            .sequence_number
            .clone()
            .expect("a sequence number")
    };
    poller.commit(&batch.shard_id, &sequence(2)).await.unwrap();
    poller.commit(&batch.shard_id, &sequence(0)).await.unwrap();

    let mut restarted = StreamPoller::new(&clients, &names, CONSUMER).await.unwrap();
    assert!(restarted.poll(100).await.unwrap().is_empty());
}

#[tokio::test]
async fn each_consumer_has_its_own_checkpoint() {
    let (clients, names, store) = open().await;
    let appended = append(&store, &stream(), 0, 3).await;
    let mut projector = poller(&clients, &names, "projector").await;
    assert_eq!(drain(&mut projector, 100, true).await, appended);

    let mut other = poller(&clients, &names, "auditor").await;
    assert_eq!(drain(&mut other, 100, true).await, appended);
}

#[tokio::test]
async fn across_crashes_and_restarts_nothing_is_lost_and_each_stream_stays_in_order() {
    let (clients, names, store) = open().await;
    let streams = [stream(), stream(), stream()];
    let mut appended = Vec::new();
    let mut delivered = Vec::new();
    let mut poller = poller(&clients, &names, CONSUMER).await;
    for round in 0..6u64 {
        for s in &streams {
            appended.extend(append(&store, s, round * 2, 2).await);
        }
        let batches = poller.poll(4).await.expect("polls");
        for batch in &batches {
            delivered.extend(decode(batch));
        }
        if round % 2 == 1 {
            // Crash: this round's batches were handled but never committed.
            poller = StreamPoller::new(&clients, &names, CONSUMER)
                .await
                .expect("restarts");
        } else {
            for batch in &batches {
                commit_all(&mut poller, batch).await;
            }
        }
    }
    delivered.extend(drain(&mut poller, 5, true).await);

    for event in &appended {
        assert!(
            delivered.contains(event),
            "lost {}@{}",
            event.stream,
            event.version
        );
    }
    assert!(delivered.len() > appended.len(), "the crashes redelivered");
    // Within one stream, a redelivery may repeat a prefix, but never goes out of order
    // relative to what was delivered last before it: versions rise, or start over lower.
    for s in &streams {
        let seen: Vec<u64> = delivered
            .iter()
            .filter(|e| &e.stream == s)
            .map(|e| e.version)
            .collect();
        let mut highest = 0;
        for version in seen {
            assert!(
                version <= highest + 1,
                "{s} skipped to {version} after {highest}"
            );
            highest = highest.max(version);
        }
    }
}

#[tokio::test]
async fn a_cancelled_transaction_neither_stalls_the_poller_nor_shows_up_in_the_stream() {
    let (clients, names, store) = open().await;
    let (a, b) = (stream(), stream());
    let mut poller = poller(&clients, &names, CONSUMER).await;
    let first = append(&store, &a, 0, 1).await;
    assert_eq!(drain(&mut poller, 100, true).await, first);

    // b's put goes through, a's conflicts: the transaction is cancelled as a whole.
    let conflicting = AppendRequest {
        appends: vec![
            StreamAppend {
                stream: b.clone(),
                expected_version: 0,
                events: read_events(1),
            },
            StreamAppend {
                stream: a.clone(),
                expected_version: 0,
                events: read_events(1),
            },
        ],
        ..AppendRequest::default()
    };
    assert!(matches!(
        store.append(conflicting).await,
        Err(AppendError::Conflict { .. })
    ));
    let later = append(&store, &a, 1, 2).await;

    assert_eq!(drain(&mut poller, 100, true).await, later);
    assert!(store.read_stream(&b, 0, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_idle_stream_polls_empty_and_then_delivers_new_events() {
    let (clients, names, store) = open().await;
    let mut poller = poller(&clients, &names, CONSUMER).await;
    assert!(poller.poll(100).await.expect("polls").is_empty());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(poller.poll(100).await.expect("polls").is_empty());

    let appended = append(&store, &stream(), 0, 2).await;
    assert_eq!(drain(&mut poller, 100, true).await, appended);
}

#[tokio::test]
async fn a_table_without_a_stream_is_a_setup_error() {
    let clients = moto_clients().await;
    let names = unique_names();
    assert!(StreamPoller::new(&clients, &names, CONSUMER).await.is_err());
}
