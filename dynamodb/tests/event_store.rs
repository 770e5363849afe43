//! The event store port on DynamoDB (moto): appends, conditions, claims, limits, paged reads,
//! races and upcasting — the same behaviour the embedded store's tests pin down.

use aws_sdk_dynamodb::types::AttributeValue;
use messaging_dynamodb::testing::{moto_clients, moto_clients_counted, unique_names};
use messaging_dynamodb::{
    create_event_tables, AwsClients, DynamoEventStore, EventItem, RequestCounter, ResourceNames,
};
use messaging_events::{
    AppendError, AppendRequest, Claim, Event, EventStore, MessageId, NewEvent, RecordedEvent,
    StoreError, StreamAppend, StreamId, Timestamp, UserId, VersionCheck, MAX_ITEMS_PER_APPEND,
};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// A store on fresh tables of its own.
async fn open() -> (AwsClients, ResourceNames, Arc<DynamoEventStore>) {
    let clients = moto_clients().await;
    let names = unique_names();
    create_event_tables(&clients, &names)
        .await
        .expect("creates tables");
    let store = Arc::new(DynamoEventStore::new(&clients, &names));
    (clients, names, store)
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

/// Appends `n` events to an empty `stream`.
fn single(stream: &StreamId, n: u64) -> AppendRequest {
    AppendRequest::single(stream.clone(), 0, read_events(n))
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

/// Requests of one operation counted so far.
fn requests(counter: &RequestCounter, operation: &str) -> u64 {
    counter
        .snapshot()
        .iter()
        .filter(|(key, _)| key.ends_with(&format!(".{operation}")))
        .map(|(_, n)| n)
        .sum()
}

async fn all(store: &DynamoEventStore, s: &StreamId) -> Vec<RecordedEvent> {
    store.read_stream(s, 0, None).await.expect("reads")
}

/// Puts an item into the events table as an older build would have written it.
async fn put_raw(
    clients: &AwsClients,
    names: &ResourceNames,
    s: &StreamId,
    event_type: &str,
    schema_version: u32,
    data: &str,
) {
    let item = EventItem {
        stream: s.0.clone(),
        version: 1,
        event_id: uuid::Uuid::new_v4().to_string(),
        recorded_at: 1,
        event_type: event_type.into(),
        schema_version,
        data: data.into(),
    }
    .to_item()
    .expect("encodes");
    clients
        .dynamodb
        .put_item()
        .table_name(names.events_table())
        .set_item(Some(HashMap::<String, AttributeValue>::from(item)))
        .send()
        .await
        .expect("raw put");
}

#[tokio::test]
async fn creating_the_tables_twice_is_fine() {
    let (clients, names, _store) = open().await;
    create_event_tables(&clients, &names)
        .await
        .expect("idempotent");
}

#[tokio::test]
async fn given_an_empty_stream_when_appending_then_versions_start_at_one() {
    let (_, _, store) = open().await;
    let s = stream();
    let request = single(&s, 2);
    let expected = request.appends[0].events.clone();

    let recorded = store.append(request).await.expect("appends");

    assert_eq!(versions(&recorded), vec![1, 2]);
    for (got, new) in recorded.iter().zip(&expected) {
        assert_eq!(got.stream, s);
        assert_eq!(got.event_id, new.event_id);
        assert_eq!(got.event, new.event);
        assert!(got.recorded_at.micros() > 0);
    }
    assert_eq!(all(&store, &s).await, recorded);
}

#[tokio::test]
async fn a_single_event_appends_and_then_conflicts_on_the_same_version() {
    let (_, _, store) = open().await;
    let s = stream();
    let first = store.append(single(&s, 1)).await.expect("appends");
    assert_eq!(versions(&first), vec![1]);

    let error = store.append(single(&s, 1)).await.unwrap_err();
    assert!(matches!(error, AppendError::Conflict { stream } if stream == s));
    assert_eq!(all(&store, &s).await, first);

    let next = store
        .append(AppendRequest::single(s.clone(), 1, read_events(1)))
        .await
        .expect("appends at the current version");
    assert_eq!(versions(&next), vec![2]);
}

#[tokio::test]
async fn given_appends_to_two_streams_then_events_come_back_in_request_order() {
    let (_, _, store) = open().await;
    let (a, b) = (stream(), stream());
    store.append(single(&a, 1)).await.unwrap();
    let request = AppendRequest {
        appends: vec![
            StreamAppend {
                stream: b.clone(),
                expected_version: 0,
                events: read_events(2),
            },
            StreamAppend {
                stream: a.clone(),
                expected_version: 1,
                events: read_events(1),
            },
        ],
        ..AppendRequest::default()
    };
    let recorded = store.append(request).await.unwrap();
    let got: Vec<_> = recorded
        .iter()
        .map(|e| (e.stream.clone(), e.version))
        .collect();
    assert_eq!(got, vec![(b.clone(), 1), (b.clone(), 2), (a.clone(), 2)]);
    assert_eq!(versions(&all(&store, &a).await), vec![1, 2]);
    assert_eq!(versions(&all(&store, &b).await), vec![1, 2]);
}

#[tokio::test]
async fn given_a_moved_stream_when_appending_then_conflict_and_no_stream_is_written() {
    let (_, _, store) = open().await;
    let (a, b) = (stream(), stream());
    store.append(single(&a, 1)).await.unwrap();

    let request = AppendRequest {
        appends: vec![
            StreamAppend {
                stream: b.clone(),
                expected_version: 0,
                events: read_events(2),
            },
            StreamAppend {
                stream: a.clone(),
                expected_version: 0,
                events: read_events(2),
            },
        ],
        ..AppendRequest::default()
    };
    let error = store.append(request).await.unwrap_err();

    assert!(matches!(error, AppendError::Conflict { stream } if stream == a));
    assert!(all(&store, &b).await.is_empty());
    assert_eq!(versions(&all(&store, &a).await), vec![1]);
}

#[tokio::test]
async fn two_appends_of_the_same_version_in_one_request_conflict() {
    let (_, _, store) = open().await;
    let s = stream();
    let twice = |expected| StreamAppend {
        stream: s.clone(),
        expected_version: expected,
        events: read_events(1),
    };
    let request = AppendRequest {
        appends: vec![twice(0), twice(0)],
        ..AppendRequest::default()
    };
    assert!(matches!(
        store.append(request).await,
        Err(AppendError::Conflict { .. })
    ));
    assert!(all(&store, &s).await.is_empty());

    // Chained appends to one stream are fine, as in the embedded store.
    let chained = AppendRequest {
        appends: vec![twice(0), twice(1)],
        ..AppendRequest::default()
    };
    assert_eq!(versions(&store.append(chained).await.unwrap()), vec![1, 2]);
}

#[tokio::test]
async fn version_checks_pass_when_unmoved_and_refuse_the_append_when_moved() {
    let (_, _, store) = open().await;
    let (checked, target) = (stream(), stream());
    store.append(single(&checked, 2)).await.unwrap();
    let with_check = |version| AppendRequest {
        checks: vec![VersionCheck {
            stream: checked.clone(),
            version,
        }],
        ..single(&target, 1)
    };

    let error = store.append(with_check(1)).await.unwrap_err();
    assert!(matches!(error, AppendError::Conflict { stream } if stream == checked));
    assert!(all(&store, &target).await.is_empty());

    let recorded = store.append(with_check(2)).await.expect("check passes");
    assert_eq!(versions(&recorded), vec![1]);
    assert_eq!(versions(&all(&store, &checked).await), vec![1, 2]);
}

#[tokio::test]
async fn a_check_on_a_stream_the_request_appends_to_is_implied_by_the_append() {
    let (_, _, store) = open().await;
    let s = stream();
    let request = AppendRequest {
        checks: vec![VersionCheck {
            stream: s.clone(),
            version: 0,
        }],
        ..single(&s, 2)
    };
    assert_eq!(versions(&store.append(request).await.unwrap()), vec![1, 2]);
}

#[tokio::test]
async fn a_check_on_an_empty_stream_passes_at_version_zero() {
    let (_, _, store) = open().await;
    let request = AppendRequest {
        checks: vec![VersionCheck {
            stream: stream(),
            version: 0,
        }],
        ..AppendRequest::default()
    };
    assert_eq!(store.append(request).await.unwrap(), vec![]);
}

#[tokio::test]
async fn given_a_taken_claim_then_the_existing_value_is_returned_and_nothing_is_written() {
    let (_, _, store) = open().await;
    let (first, second) = (stream(), stream());
    let claimed = |s: &StreamId, value| AppendRequest {
        claims: vec![Claim {
            key: "idem#key-1".into(),
            value,
        }],
        ..single(s, 1)
    };
    store
        .append(claimed(&first, json!({"status": 201})))
        .await
        .expect("first claim");

    let error = store
        .append(claimed(&second, json!({"status": 999})))
        .await
        .unwrap_err();

    match error {
        AppendError::ClaimTaken { key, existing } => {
            assert_eq!(key, "idem#key-1");
            assert_eq!(existing, json!({"status": 201}));
        }
        other => panic!("expected ClaimTaken, got {other:?}"),
    }
    assert!(all(&store, &second).await.is_empty());
    assert_eq!(
        store.get_claim("idem#key-1").await.unwrap(),
        Some(json!({"status": 201}))
    );
    assert_eq!(store.get_claim("other").await.unwrap(), None);
}

#[tokio::test]
async fn a_claim_alone_is_taken_once() {
    let (_, _, store) = open().await;
    let claim = |value| AppendRequest {
        claims: vec![Claim {
            key: "token#abc".into(),
            value,
        }],
        ..AppendRequest::default()
    };
    assert_eq!(store.append(claim(json!("first"))).await.unwrap(), vec![]);
    assert!(matches!(
        store.append(claim(json!("second"))).await,
        Err(AppendError::ClaimTaken { existing, .. }) if existing == json!("first")
    ));
}

#[tokio::test]
async fn a_claim_in_a_conflicting_request_is_not_taken() {
    let (_, _, store) = open().await;
    let s = stream();
    store.append(single(&s, 1)).await.unwrap();
    let request = AppendRequest {
        claims: vec![Claim {
            key: "k".into(),
            value: json!(1),
        }],
        ..single(&s, 1)
    };
    assert!(matches!(
        store.append(request).await,
        Err(AppendError::Conflict { .. })
    ));
    assert_eq!(store.get_claim("k").await.unwrap(), None);
}

#[tokio::test]
async fn requests_over_the_dynamodb_limits_are_refused_and_write_nothing() {
    let (_, _, store) = open().await;
    let s = stream();
    let too_many = single(&s, MAX_ITEMS_PER_APPEND as u64 + 1);
    assert!(matches!(
        store.append(too_many).await,
        Err(AppendError::Invalid(_))
    ));
    let mixed = AppendRequest {
        claims: vec![Claim {
            key: "one-too-many".into(),
            value: json!(1),
        }],
        ..single(&s, MAX_ITEMS_PER_APPEND as u64)
    };
    assert!(matches!(
        store.append(mixed).await,
        Err(AppendError::Invalid(_))
    ));
    assert!(matches!(
        store.append(AppendRequest::default()).await,
        Err(AppendError::Invalid(_))
    ));
    assert!(store.last_event(&s).await.unwrap().is_none());
    assert_eq!(store.get_claim("one-too-many").await.unwrap(), None);

    let at_limit = single(&s, MAX_ITEMS_PER_APPEND as u64);
    assert_eq!(store.append(at_limit).await.unwrap().len(), 100);
}

#[tokio::test]
async fn read_stream_returns_the_requested_range_oldest_first() {
    let (_, _, store) = open().await;
    let s = stream();
    store.append(single(&s, 5)).await.unwrap();
    store.append(single(&stream(), 3)).await.unwrap();
    let read = |after, to| {
        let store = Arc::clone(&store);
        let s = s.clone();
        async move { versions(&store.read_stream(&s, after, to).await.unwrap()) }
    };
    assert_eq!(read(0, None).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(read(2, None).await, vec![3, 4, 5]);
    assert_eq!(read(1, Some(3)).await, vec![2, 3]);
    assert_eq!(read(0, Some(0)).await, Vec::<u64>::new());
    assert_eq!(read(3, Some(2)).await, Vec::<u64>::new());
    assert_eq!(read(5, None).await, Vec::<u64>::new());
    assert_eq!(read(4, Some(100)).await, vec![5]);
}

#[tokio::test]
async fn read_stream_reads_every_page_of_a_stream_larger_than_one_query_page() {
    let (_, names, store) = open().await;
    let sender = UserId::new_random();
    let s = StreamId::outbox(sender);
    // 300 events of about 5 KB: 1.5 MB, more than one 1 MB query page.
    let text = "x".repeat(5 * 1024);
    for batch in 0..3u64 {
        let events = (0..100)
            .map(|_| {
                NewEvent::new(Event::DirectMessageSent {
                    message_id: MessageId::new_random(),
                    sender,
                    receiver: UserId::new_random(),
                    text: text.clone(),
                    sent_at: Timestamp(1),
                    blocks_version: 0,
                })
            })
            .collect();
        store
            .append(AppendRequest::single(s.clone(), batch * 100, events))
            .await
            .expect("appends a batch");
    }

    let counter = RequestCounter::new();
    let counted = DynamoEventStore::new(&moto_clients_counted(&counter).await, &names);
    let events = all(&counted, &s).await;
    assert_eq!(versions(&events), (1..=300).collect::<Vec<_>>());
    assert!(
        requests(&counter, "Query") >= 2,
        "the read must have paged: {:?}",
        counter.snapshot()
    );
    let tail = store.read_stream(&s, 10, Some(290)).await.unwrap();
    assert_eq!(versions(&tail), (11..=290).collect::<Vec<_>>());
    assert_eq!(
        store.last_event(&s).await.unwrap().map(|e| e.version),
        Some(300)
    );
}

#[tokio::test]
async fn last_event_is_the_highest_version() {
    let (_, _, store) = open().await;
    let s = stream();
    assert!(store.last_event(&s).await.unwrap().is_none());
    let written = store.append(single(&s, 3)).await.unwrap();
    let last = store.last_event(&s).await.unwrap().expect("an event");
    assert_eq!(Some(&last), written.last());
}

#[tokio::test]
async fn a_single_event_is_one_put_and_the_last_event_one_query_whatever_the_length() {
    let (_, names, store) = open().await;
    let s = stream();
    store.append(single(&s, 100)).await.unwrap();
    let counter = RequestCounter::new();
    let counted = DynamoEventStore::new(&moto_clients_counted(&counter).await, &names);

    let last = counted.last_event(&s).await.unwrap().expect("an event");
    counted
        .append(AppendRequest::single(
            s.clone(),
            last.version,
            read_events(1),
        ))
        .await
        .unwrap();

    let counts = counter.snapshot();
    assert_eq!(requests(&counter, "Query"), 1, "{counts:?}");
    assert_eq!(requests(&counter, "PutItem"), 1, "{counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 2, "{counts:?}");
}

#[tokio::test]
async fn of_concurrent_single_appends_at_one_version_exactly_one_wins() {
    let (_, _, store) = open().await;
    let contested = stream();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            let contested = contested.clone();
            tokio::spawn(async move { store.append(single(&contested, 1)).await })
        })
        .collect();
    let mut won = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(recorded) => won.extend(recorded),
            Err(AppendError::Conflict { .. }) => conflicts += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((won.len(), conflicts), (1, 9));
    assert_eq!(all(&store, &contested).await, won);
}

#[tokio::test]
async fn of_concurrent_transactions_at_one_version_at_most_one_wins() {
    let (_, _, store) = open().await;
    let contested = stream();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            let contested = contested.clone();
            tokio::spawn(async move { store.append(single(&contested, 2)).await })
        })
        .collect();
    let mut won = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(recorded) => won.push(recorded),
            // A transaction that collides with another one in flight is cancelled as a
            // TransactionConflict: retryable, nothing written.
            Err(AppendError::Conflict { .. }) | Err(AppendError::Store(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(won.len() <= 1, "{} transactions won", won.len());
    assert_eq!(all(&store, &contested).await, won.concat());
}

#[tokio::test]
async fn an_event_written_with_schema_version_1_is_upcast_when_read() {
    let (clients, names, store) = open().await;
    let user = UserId::new_random();
    let s = StreamId::user(user);
    let data = json!({"user_id": user, "name": "Grace"}).to_string();
    put_raw(&clients, &names, &s, "UserRegistered", 1, &data).await;

    let events = all(&store, &s).await;
    assert_eq!(
        events[0].event,
        Event::UserRegistered {
            user_id: user,
            display_name: Some("Grace".into())
        }
    );
    assert_eq!(
        store.last_event(&s).await.unwrap().map(|e| e.event),
        Some(events[0].event.clone())
    );
}

#[tokio::test]
async fn an_unreadable_event_is_reported_as_corrupt() {
    let (clients, names, store) = open().await;
    let s = stream();
    put_raw(&clients, &names, &s, "MessagesRead", 2, "not json").await;
    assert!(matches!(
        store.last_event(&s).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.read_stream(&s, 0, None).await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn a_missing_table_is_an_outage_not_a_panic() {
    let clients = moto_clients().await;
    let store = DynamoEventStore::new(&clients, &unique_names());
    assert!(matches!(
        store.append(single(&stream(), 1)).await,
        Err(AppendError::Store(StoreError::Unavailable(_)))
    ));
    assert!(matches!(
        store.last_event(&stream()).await,
        Err(StoreError::Unavailable(_))
    ));
}
