//! Replay on DynamoDB (moto): the event table read as a log in parallel segments and pages,
//! the read-model generations and their pointer, and a verify/rebuild cycle end to end.

use aws_sdk_dynamodb::types::AttributeValue;
use messaging_dynamodb::testing::{moto_clients, unique_names};
use messaging_dynamodb::{
    create_event_tables, create_generations_table, create_read_tables, generation_names,
    read_table_names, AwsClients, DynamoCatalog, DynamoEventLog, DynamoEventStore, EventItem,
    ResourceNames,
};
use messaging_events::{
    AppendRequest, Event, EventLog, EventStore, GroupId, MessageId, NewEvent, RecordedEvent,
    StoreError, StreamId, Timestamp, UserId,
};
use messaging_projections::replay::{all_projections, diff, Progress, Replay, ReplayOptions};
use messaging_projections::{
    project_batch, GenerationCatalog, GenerationMap, GenerationalReadStore, Projection, Projector,
    ReadStore,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Fresh event, read and pointer tables under a prefix of their own.
async fn setup() -> (AwsClients, ResourceNames) {
    let clients = moto_clients().await;
    let names = unique_names();
    create_event_tables(&clients, &names)
        .await
        .expect("creates the event tables");
    create_read_tables(&clients, &names)
        .await
        .expect("creates the read tables");
    create_generations_table(&clients, &names)
        .await
        .expect("creates the pointer table");
    (clients, names)
}

/// A small but complete workload: every projection gets rows, and some rows are overwritten
/// (blocks toggled, a member added then removed, a message settled, a marker moved).
fn conversation() -> Vec<(StreamId, Vec<Event>)> {
    let (a, b, c) = (
        UserId::new_random(),
        UserId::new_random(),
        UserId::new_random(),
    );
    let g = GroupId::new_random();
    let (m1, m2) = (MessageId::new_random(), MessageId::new_random());
    let t0 = Timestamp(1_700_000_000_000_000);
    vec![
        (
            StreamId::user(a),
            vec![Event::UserRegistered {
                user_id: a,
                display_name: Some("Ada".into()),
            }],
        ),
        (
            StreamId::user(b),
            vec![Event::UserRegistered {
                user_id: b,
                display_name: None,
            }],
        ),
        (
            StreamId::user(c),
            vec![Event::UserRegistered {
                user_id: c,
                display_name: Some("Cy".into()),
            }],
        ),
        (
            StreamId::blocks_of(c),
            vec![
                Event::UserBlocked {
                    blocker: b,
                    blocked: c,
                },
                Event::UserUnblocked {
                    blocker: b,
                    blocked: c,
                },
                Event::UserBlocked {
                    blocker: b,
                    blocked: c,
                },
            ],
        ),
        (
            StreamId::group(g),
            vec![
                Event::GroupCreated {
                    group_id: g,
                    name: "team".into(),
                    admin: a,
                    members: vec![a, b],
                },
                Event::MemberAdded {
                    group_id: g,
                    user_id: c,
                    by: a,
                },
                Event::MemberRemoved {
                    group_id: g,
                    user_id: c,
                    by: a,
                },
            ],
        ),
        (
            StreamId::outbox(a),
            vec![
                Event::DirectMessageSent {
                    message_id: m1,
                    sender: a,
                    receiver: b,
                    text: "hi".into(),
                    sent_at: t0,
                    blocks_version: 0,
                },
                Event::GroupMessageSent {
                    message_id: m2,
                    sender: a,
                    group_id: g,
                    text: "all".into(),
                    sent_at: t0.next(),
                    group_version: 1,
                    blocks_version: 0,
                },
            ],
        ),
        (
            StreamId::inbox(b),
            vec![
                Event::MessageDelivered {
                    message_id: m1,
                    recipient: b,
                    sender: a,
                    receiver: Some(b),
                    group_id: None,
                    text: "hi".into(),
                    sent_at: t0,
                },
                Event::MessageDelivered {
                    message_id: m2,
                    recipient: b,
                    sender: a,
                    receiver: None,
                    group_id: Some(g),
                    text: "all".into(),
                    sent_at: t0.next(),
                },
            ],
        ),
        (
            StreamId::message(m1),
            vec![Event::MessageDispatched {
                message_id: m1,
                delivered: 1,
                withheld: 0,
            }],
        ),
        (
            StreamId::reads(b),
            vec![
                Event::MessagesRead {
                    user_id: b,
                    up_to: 1,
                },
                Event::MessagesRead {
                    user_id: b,
                    up_to: 2,
                },
            ],
        ),
    ]
}

/// The conversation's events as recorded, without a store.
fn recorded(conversation: &[(StreamId, Vec<Event>)]) -> Vec<RecordedEvent> {
    conversation
        .iter()
        .flat_map(|(stream, events)| {
            events.iter().enumerate().map(|(at, event)| RecordedEvent {
                stream: stream.clone(),
                version: at as u64 + 1,
                event_id: uuid::Uuid::new_v4(),
                recorded_at: Timestamp(1_700_000_000_000_000 + at as i64),
                event: event.clone(),
            })
        })
        .collect()
}

/// Appends each stream of `conversation` in one request and projects what was recorded into
/// `live`, as the projector function would from the table's stream.
async fn append_and_project(
    store: &DynamoEventStore,
    live: Arc<dyn ReadStore>,
    conversation: Vec<(StreamId, Vec<Event>)>,
) -> usize {
    let projector = Projector::new(live);
    let mut count = 0;
    for (stream, events) in conversation {
        let events = events.into_iter().map(NewEvent::new).collect();
        let recorded = store
            .append(AppendRequest::single(stream, 0, events))
            .await
            .expect("appends");
        projector.handle(&recorded).await.expect("projects");
        count += recorded.len();
    }
    count
}

/// Every event of every segment, reading `limit` at a time.
async fn read_everything(log: &DynamoEventLog, limit: usize) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    for segment in 0..log.segments() {
        let mut after: Option<String> = None;
        loop {
            let page = log
                .read_page(segment, after.as_deref(), limit)
                .await
                .expect("a page");
            assert!(page.events.len() <= limit);
            events.extend(page.events);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    events
}

/// Puts an item into the events table as an older build would have written it.
async fn put_raw(
    clients: &AwsClients,
    names: &ResourceNames,
    stream: &StreamId,
    event_type: &str,
    schema_version: u32,
    data: &str,
) {
    let item = EventItem {
        stream: stream.0.clone(),
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

async fn table_exists(clients: &AwsClients, table: &str) -> bool {
    match clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
    {
        Ok(_) => true,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(error) => panic!("DescribeTable {table}: {error:?}"),
    }
}

fn quiet() -> Arc<dyn Fn(&Progress) + Send + Sync> {
    Arc::new(|_: &Progress| {})
}

#[tokio::test]
async fn the_log_returns_every_event_once_across_segments_and_pages() {
    let (clients, names) = setup().await;
    let store = DynamoEventStore::new(&clients, &names);
    let mut appended = HashSet::new();
    for stream in 0..100u64 {
        let user = UserId::new_random();
        let events = (1..=3)
            .map(|up_to| {
                NewEvent::new(Event::MessagesRead {
                    user_id: user,
                    up_to: stream * 10 + up_to,
                })
            })
            .collect();
        let recorded = store
            .append(AppendRequest::single(StreamId::reads(user), 0, events))
            .await
            .expect("appends");
        appended.extend(recorded.into_iter().map(|event| event.event_id));
    }
    assert_eq!(appended.len(), 300);

    let log = DynamoEventLog::new(&clients, &names, 4);
    assert_eq!(log.segments(), 4);
    let mut nonempty_segments = 0;
    for segment in 0..4 {
        if !log
            .read_page(segment, None, 1)
            .await
            .expect("a page")
            .events
            .is_empty()
        {
            nonempty_segments += 1;
        }
    }
    assert!(nonempty_segments > 1, "the segments split the table");

    let read = read_everything(&log, 7).await;
    let ids: Vec<_> = read.iter().map(|event| event.event_id).collect();
    let unique: HashSet<_> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 300, "no event twice");
    assert_eq!(unique, appended, "every event");

    let count = log.estimated_count().await.expect("a count");
    assert!(count.is_some_and(|count| count > 0), "{count:?}");
}

#[tokio::test]
async fn a_segment_resumes_after_the_position_of_its_last_page() {
    let (clients, names) = setup().await;
    let store = DynamoEventStore::new(&clients, &names);
    for _ in 0..20 {
        let user = UserId::new_random();
        let events = (1..=2)
            .map(|up_to| {
                NewEvent::new(Event::MessagesRead {
                    user_id: user,
                    up_to,
                })
            })
            .collect();
        store
            .append(AppendRequest::single(StreamId::reads(user), 0, events))
            .await
            .expect("appends");
    }
    let log = DynamoEventLog::new(&clients, &names, 1);

    let whole = log.read_page(0, None, 1000).await.expect("the whole log");
    assert_eq!(whole.events.len(), 40);
    assert_eq!(whole.next, None);

    let first = log.read_page(0, None, 15).await.expect("a page");
    assert_eq!(first.events.len(), 15);
    let position = first.next.clone().expect("more to come");
    // A position is a plain string: it survives a checkpoint in the pointer and a restart.
    let restarted = DynamoEventLog::new(&clients, &names, 1);
    let rest = restarted
        .read_page(0, Some(&position), 1000)
        .await
        .expect("the rest");
    assert_eq!(rest.next, None);
    let resumed: Vec<_> = first.events.into_iter().chain(rest.events).collect();
    assert_eq!(resumed, whole.events);

    assert!(matches!(
        log.read_page(0, Some("nonsense"), 5).await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn the_log_upcasts_old_items_and_names_the_key_of_an_unreadable_one() {
    let (clients, names) = setup().await;
    let user = UserId::new_random();
    let data = json!({"user_id": user, "name": "Grace"}).to_string();
    put_raw(
        &clients,
        &names,
        &StreamId::user(user),
        "UserRegistered",
        1,
        &data,
    )
    .await;
    let log = DynamoEventLog::new(&clients, &names, 2);

    let events = read_everything(&log, 10).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].event,
        Event::UserRegistered {
            user_id: user,
            display_name: Some("Grace".into())
        }
    );

    let broken = StreamId::reads(UserId::new_random());
    put_raw(&clients, &names, &broken, "MessagesRead", 2, "not json").await;
    let mut errors = Vec::new();
    for segment in 0..log.segments() {
        if let Err(error) = log.read_page(segment, None, 10).await {
            errors.push(error);
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    match &errors[0] {
        StoreError::Corrupt(message) => {
            assert!(message.contains(&format!("{}/1", broken.0)), "{message}")
        }
        other => panic!("expected corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn the_pointer_starts_empty_and_is_saved_by_compare_and_set() {
    let (clients, names) = setup().await;
    let catalog = DynamoCatalog::new(&clients, &names);
    assert_eq!(
        catalog.load().await.expect("loads"),
        GenerationMap::default()
    );

    let mut map = GenerationMap::default();
    assert!(
        !catalog.save(&map, 3).await.expect("saves"),
        "no pointer is version 0, not 3"
    );
    map.current.insert(Projection::Inbox, 2);
    map.highest = 2;
    assert!(catalog.save(&map, 0).await.expect("saves"));
    let loaded = catalog.load().await.expect("loads");
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.current_of(Projection::Inbox), 2);
    assert_eq!(loaded.highest, 2);

    assert!(
        !catalog.save(&map, 0).await.expect("answers"),
        "a stale writer loses"
    );
    assert!(catalog.save(&loaded, 1).await.expect("saves"));
    assert_eq!(catalog.load().await.expect("loads").version, 2);
    assert!(!catalog.save(&loaded, 1).await.expect("answers"));

    create_generations_table(&clients, &names)
        .await
        .expect("creating it again is harmless");
    assert_eq!(catalog.load().await.expect("loads").version, 2);
}

#[tokio::test]
async fn opening_a_generation_creates_its_tables_and_existing_lists_it() {
    let (clients, names) = setup().await;
    let catalog = DynamoCatalog::new(&clients, &names);
    assert_eq!(catalog.existing().await.expect("lists"), vec![0]);

    let gen2 = generation_names(&names, 2);
    assert!(!table_exists(&clients, &gen2.name("inbox")).await);
    catalog.open(2).await.expect("opens");
    for table in read_table_names(&gen2) {
        assert!(table_exists(&clients, &table).await, "{table}");
    }
    assert_eq!(catalog.existing().await.expect("lists"), vec![0, 2]);
    let (first, second) = (
        catalog.store(2).await.expect("opens"),
        catalog.store(2).await.expect("opens"),
    );
    assert!(Arc::ptr_eq(&first, &second), "one store per generation");

    // The functions' catalog trusts the pointer and creates nothing.
    let serving = DynamoCatalog::serving(&clients, &names);
    serving.open(5).await.expect("opens without a call");
    assert!(!table_exists(&clients, &generation_names(&names, 5).name("inbox")).await);
    assert_eq!(catalog.existing().await.expect("lists"), vec![0, 2]);
}

#[tokio::test]
async fn dumps_of_generations_fed_the_same_changes_are_equal_until_an_item_differs() {
    let (clients, names) = setup().await;
    let catalog = DynamoCatalog::new(&clients, &names);
    let changes = project_batch(&recorded(&conversation()));
    let (one, two) = (
        catalog.open(1).await.expect("opens"),
        catalog.open(2).await.expect("opens"),
    );
    one.apply(&changes).await.expect("applies");
    // The same changes in the opposite order leave the same items.
    for change in changes.iter().rev() {
        two.apply(std::slice::from_ref(change))
            .await
            .expect("applies");
    }

    let mut items = 0;
    for projection in Projection::ALL {
        let (left, right) = (
            catalog.dump(1, projection).await.expect("dumps"),
            catalog.dump(2, projection).await.expect("dumps"),
        );
        assert!(!left.is_empty(), "{projection} has rows");
        assert_eq!(left, right, "{projection}");
        items += left.len();
    }
    assert_eq!(items, 3 + 1 + (1 + 3) + 2 + 4 + 1 + 2);

    let inbox = catalog.dump(2, Projection::Inbox).await.expect("dumps");
    let altered_key = inbox.keys().next().expect("an inbox row").clone();
    let mut parts = altered_key.split('/').skip(1);
    let (user, position) = (
        parts.next().expect("a user").to_string(),
        parts.next().expect("a position").to_string(),
    );
    clients
        .dynamodb
        .update_item()
        .table_name(generation_names(&names, 2).name("inbox"))
        .key("user", AttributeValue::S(user))
        .key("position", AttributeValue::N(position))
        .update_expression("SET message = :m")
        .expression_attribute_values(":m", AttributeValue::S("{}".into()))
        .send()
        .await
        .expect("altered");

    let differences = diff(
        Projection::Inbox,
        &catalog.dump(1, Projection::Inbox).await.expect("dumps"),
        &catalog.dump(2, Projection::Inbox).await.expect("dumps"),
    );
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!(differences[0].key, altered_key);
    assert_eq!(
        catalog.dump(1, Projection::History).await.expect("dumps"),
        catalog.dump(2, Projection::History).await.expect("dumps"),
    );
}

#[tokio::test]
async fn dropping_a_generation_deletes_its_tables() {
    let (clients, names) = setup().await;
    let catalog = DynamoCatalog::new(&clients, &names);
    catalog.open(3).await.expect("opens");
    assert_eq!(catalog.existing().await.expect("lists"), vec![0, 3]);

    catalog.drop_generation(3).await.expect("drops");
    for table in read_table_names(&generation_names(&names, 3)) {
        assert!(!table_exists(&clients, &table).await, "{table}");
    }
    assert_eq!(catalog.existing().await.expect("lists"), vec![0]);
    catalog
        .drop_generation(3)
        .await
        .expect("dropping a missing generation is harmless");

    // The same number can be opened again, empty.
    let reopened = catalog.open(3).await.expect("opens again");
    reopened
        .apply(&project_batch(&recorded(&conversation())))
        .await
        .expect("applies");
    assert_eq!(
        catalog
            .dump(3, Projection::Users)
            .await
            .expect("dumps")
            .len(),
        3
    );
}

#[tokio::test]
async fn verify_is_clean_then_finds_a_deleted_inbox_item_and_rebuild_repairs_it() {
    let (clients, names) = setup().await;
    let store = DynamoEventStore::new(&clients, &names);
    let catalog = Arc::new(DynamoCatalog::new(&clients, &names));
    let live: Arc<dyn ReadStore> = catalog.store(0).await.expect("opens");
    let events = append_and_project(&store, live, conversation()).await;
    assert_eq!(events, 16);

    let log = Arc::new(DynamoEventLog::new(&clients, &names, 3));
    let options = ReplayOptions {
        page_size: 4,
        settle: Duration::from_millis(50),
        checkpoint_every: Duration::ZERO,
    };
    let replay = Replay::new(log, catalog.clone(), options, quiet());

    let report = replay.verify(all_projections()).await.expect("verifies");
    assert_eq!(report.events, 16);
    assert_eq!(report.items, 17);
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert_eq!(
        catalog.existing().await.expect("lists"),
        vec![0],
        "the scratch generation is dropped"
    );

    let inbox = catalog.dump(0, Projection::Inbox).await.expect("dumps");
    let deleted_key = inbox.keys().next().expect("an inbox row").clone();
    let mut parts = deleted_key.split('/').skip(1);
    let (user, position) = (
        parts.next().expect("a user").to_string(),
        parts.next().expect("a position").to_string(),
    );
    clients
        .dynamodb
        .delete_item()
        .table_name(names.name("inbox"))
        .key("user", AttributeValue::S(user.clone()))
        .key("position", AttributeValue::N(position))
        .send()
        .await
        .expect("deleted");

    let report = replay.verify(all_projections()).await.expect("verifies");
    assert_eq!(report.differences.len(), 1, "{:?}", report.differences);
    let difference = &report.differences[0];
    assert_eq!(difference.projection, Projection::Inbox);
    assert_eq!(difference.key, deleted_key);
    assert_eq!(difference.live, None);
    assert_eq!(difference.rebuilt.as_ref(), inbox.get(&deleted_key));

    let rebuilt = replay.rebuild(all_projections()).await.expect("rebuilds");
    assert_eq!(rebuilt.generation, 3, "1 and 2 were the verifications'");
    assert_eq!(rebuilt.events, 16);
    let map = catalog.load().await.expect("loads");
    assert!(Projection::ALL
        .iter()
        .all(|projection| map.current_of(*projection) == 3));
    assert_eq!(map.building, None);
    assert!(replay
        .verify(all_projections())
        .await
        .expect("verifies")
        .differences
        .is_empty());

    // A store that follows the pointer serves the repaired inbox.
    let serving = GenerationalReadStore::open(
        Arc::new(DynamoCatalog::serving(&clients, &names)),
        Duration::from_secs(5),
    )
    .await
    .expect("opens");
    let user = UserId::parse(&user).expect("a user id");
    assert_eq!(
        serving.inbox_after(user, 0, 10).await.expect("reads").len(),
        2
    );

    assert_eq!(replay.drop_unused().await.expect("drops"), vec![0]);
    assert_eq!(catalog.existing().await.expect("lists"), vec![3]);
}
