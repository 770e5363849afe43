//! The event store port: appends, conditions, claims, limits, reads and durability.

mod common;

use common::{open, read_events, single, stream, versions};
use messaging_embedded::Embedded;
use messaging_events::{
    AppendError, AppendRequest, Claim, Event, EventStore, StoreError, StreamAppend, StreamId,
    UserId, VersionCheck, MAX_ITEMS_PER_APPEND,
};
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn given_an_empty_stream_when_appending_then_versions_start_at_one() {
    let (_dir, store) = open();
    let s = stream();
    let request = single(&s, 2);
    let expected: Vec<_> = request.appends[0].events.clone();

    let recorded = store.events.append(request).await.expect("appends");

    assert_eq!(versions(&recorded), vec![1, 2]);
    for (got, new) in recorded.iter().zip(&expected) {
        assert_eq!(got.stream, s);
        assert_eq!(got.event_id, new.event_id);
        assert_eq!(got.event, new.event);
        assert!(got.recorded_at.micros() > 0);
    }
    assert_eq!(
        store.events.read_stream(&s, 0, None).await.unwrap(),
        recorded
    );
}

#[tokio::test]
async fn given_appends_to_two_streams_then_events_come_back_in_request_order() {
    let (_dir, store) = open();
    let (a, b) = (stream(), stream());
    store.events.append(single(&a, 1)).await.unwrap();
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
    let recorded = store.events.append(request).await.unwrap();
    let got: Vec<_> = recorded
        .iter()
        .map(|e| (e.stream.clone(), e.version))
        .collect();
    assert_eq!(got, vec![(b.clone(), 1), (b, 2), (a, 2)]);
}

#[tokio::test]
async fn given_a_moved_stream_when_appending_then_conflict_and_no_stream_is_written() {
    let (_dir, store) = open();
    let (a, b) = (stream(), stream());
    store.events.append(single(&a, 1)).await.unwrap();

    let request = AppendRequest {
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
    let error = store.events.append(request).await.unwrap_err();

    assert!(matches!(error, AppendError::Conflict { stream } if stream == a));
    assert!(store
        .events
        .read_stream(&b, 0, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        versions(&store.events.read_stream(&a, 0, None).await.unwrap()),
        vec![1]
    );
}

#[tokio::test]
async fn given_an_expected_version_ahead_of_the_stream_then_conflict() {
    let (_dir, store) = open();
    let s = stream();
    let error = store
        .events
        .append(AppendRequest::single(s.clone(), 3, read_events(1)))
        .await
        .unwrap_err();
    assert!(matches!(error, AppendError::Conflict { .. }));
    assert!(store.events.last_event(&s).await.unwrap().is_none());
}

#[tokio::test]
async fn version_checks_pass_when_unmoved_and_refuse_the_append_when_moved() {
    let (_dir, store) = open();
    let (checked, target) = (stream(), stream());
    store.events.append(single(&checked, 2)).await.unwrap();
    let with_check = |version| AppendRequest {
        checks: vec![VersionCheck {
            stream: checked.clone(),
            version,
        }],
        ..single(&target, 1)
    };

    let error = store.events.append(with_check(1)).await.unwrap_err();
    assert!(matches!(error, AppendError::Conflict { stream } if stream == checked));
    assert!(store
        .events
        .read_stream(&target, 0, None)
        .await
        .unwrap()
        .is_empty());

    let recorded = store
        .events
        .append(with_check(2))
        .await
        .expect("check passes");
    assert_eq!(versions(&recorded), vec![1]);
}

#[tokio::test]
async fn a_check_on_an_empty_stream_passes_at_version_zero() {
    let (_dir, store) = open();
    let request = AppendRequest {
        checks: vec![VersionCheck {
            stream: stream(),
            version: 0,
        }],
        ..AppendRequest::default()
    };
    assert_eq!(store.events.append(request).await.unwrap(), vec![]);
}

#[tokio::test]
async fn given_a_taken_claim_then_the_existing_value_is_returned_and_nothing_is_written() {
    let (_dir, store) = open();
    let (first, second) = (stream(), stream());
    let claimed = |s: &StreamId, value| AppendRequest {
        claims: vec![Claim {
            key: "idem#key-1".into(),
            value,
        }],
        ..single(s, 1)
    };
    store
        .events
        .append(claimed(&first, json!({"status": 201})))
        .await
        .expect("first claim");

    let error = store
        .events
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
    assert!(store
        .events
        .read_stream(&second, 0, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.events.get_claim("idem#key-1").await.unwrap(),
        Some(json!({"status": 201}))
    );
    assert_eq!(store.events.get_claim("other").await.unwrap(), None);
}

#[tokio::test]
async fn a_claim_in_a_conflicting_request_is_not_taken() {
    let (_dir, store) = open();
    let s = stream();
    store.events.append(single(&s, 1)).await.unwrap();
    let request = AppendRequest {
        claims: vec![Claim {
            key: "k".into(),
            value: json!(1),
        }],
        ..single(&s, 1)
    };
    assert!(store.events.append(request).await.is_err());
    assert_eq!(store.events.get_claim("k").await.unwrap(), None);
}

#[tokio::test]
async fn requests_over_the_dynamodb_limits_are_refused_and_write_nothing() {
    let (_dir, store) = open();
    let s = stream();
    let too_many = single(&s, MAX_ITEMS_PER_APPEND as u64 + 1);
    assert!(matches!(
        store.events.append(too_many).await,
        Err(AppendError::Invalid(_))
    ));
    assert!(matches!(
        store.events.append(AppendRequest::default()).await,
        Err(AppendError::Invalid(_))
    ));
    assert!(store.events.last_event(&s).await.unwrap().is_none());

    let at_limit = single(&s, MAX_ITEMS_PER_APPEND as u64);
    assert_eq!(store.events.append(at_limit).await.unwrap().len(), 100);
}

#[tokio::test]
async fn read_stream_returns_the_requested_range_oldest_first() {
    let (_dir, store) = open();
    let s = stream();
    store.events.append(single(&s, 5)).await.unwrap();
    store.events.append(single(&stream(), 3)).await.unwrap();
    let read = |after, to| {
        let events = Arc::clone(&store.events);
        let s = s.clone();
        async move { versions(&events.read_stream(&s, after, to).await.unwrap()) }
    };
    assert_eq!(read(0, None).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(read(2, None).await, vec![3, 4, 5]);
    assert_eq!(read(1, Some(3)).await, vec![2, 3]);
    assert_eq!(read(0, Some(0)).await, Vec::<u64>::new());
    assert_eq!(read(5, None).await, Vec::<u64>::new());
    assert_eq!(read(4, Some(100)).await, vec![5]);
}

#[tokio::test]
async fn last_event_is_the_highest_version() {
    let (_dir, store) = open();
    let s = stream();
    assert!(store.events.last_event(&s).await.unwrap().is_none());
    store.events.append(single(&s, 3)).await.unwrap();
    let last = store
        .events
        .last_event(&s)
        .await
        .unwrap()
        .expect("an event");
    assert_eq!(last.version, 3);
    assert_eq!(last.stream, s);
}

#[tokio::test]
async fn events_and_claims_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = stream();
    let written = {
        let store = Embedded::open(dir.path()).unwrap();
        let request = AppendRequest {
            claims: vec![Claim {
                key: "token#abc".into(),
                value: json!("user"),
            }],
            ..single(&s, 2)
        };
        store.events.append(request).await.unwrap()
    };

    let store = Embedded::open(dir.path()).expect("reopens");
    assert_eq!(
        store.events.read_stream(&s, 0, None).await.unwrap(),
        written
    );
    assert_eq!(
        store.events.get_claim("token#abc").await.unwrap(),
        Some(json!("user"))
    );
    let next = store
        .events
        .append(AppendRequest::single(s.clone(), 2, read_events(1)))
        .await
        .unwrap();
    assert_eq!(versions(&next), vec![3]);
}

#[tokio::test]
async fn concurrent_appends_commit_independently() {
    let (_dir, store) = open();
    let contested = stream();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let events = Arc::clone(&store.events);
        let contested = contested.clone();
        tasks.push(tokio::spawn(async move {
            // Half race for one stream (exactly one may win), half write their own.
            let target = if i % 2 == 0 { contested } else { stream() };
            events.append(single(&target, 1)).await
        }));
    }
    let mut won = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(AppendError::Conflict { .. }) => conflicts += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((won, conflicts), (33, 31));
    assert_eq!(
        versions(&store.events.read_stream(&contested, 0, None).await.unwrap()),
        vec![1]
    );
}

#[tokio::test]
async fn an_event_written_with_schema_version_1_is_upcast_when_read() {
    let (dir, store) = open();
    let user = UserId::new_random();
    let s = StreamId::user(user);
    insert_raw(
        dir.path(),
        &s,
        "UserRegistered",
        1,
        &json!({"user_id": user, "name": "Grace"}).to_string(),
    );
    let events = store.events.read_stream(&s, 0, None).await.unwrap();
    assert_eq!(
        events[0].event,
        Event::UserRegistered {
            user_id: user,
            display_name: Some("Grace".into())
        }
    );
}

#[tokio::test]
async fn an_unreadable_event_is_reported_as_corrupt() {
    let (dir, store) = open();
    let s = stream();
    insert_raw(dir.path(), &s, "MessagesRead", 2, "not json");
    assert!(matches!(
        store.events.last_event(&s).await,
        Err(StoreError::Corrupt(_))
    ));
}

fn insert_raw(dir: &std::path::Path, s: &StreamId, event_type: &str, schema: u32, data: &str) {
    let conn = rusqlite::Connection::open(dir.join("events.sqlite3")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.execute(
        "INSERT INTO events (stream, version, event_id, recorded_at, type, schema_version, data)
         VALUES (?1, 1, ?2, 1, ?3, ?4, ?5)",
        rusqlite::params![
            s.as_str(),
            uuid::Uuid::new_v4().to_string(),
            event_type,
            schema,
            data
        ],
    )
    .unwrap();
}
