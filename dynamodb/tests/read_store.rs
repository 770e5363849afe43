//! The DynamoDB read store on moto: idempotent changes, version guards, bounded queries, and
//! the projector giving the same read models whatever the delivery order.

use aws_sdk_dynamodb::types::{BillingMode, TableStatus};
use messaging_dynamodb::testing::{moto_clients, unique_names};
use messaging_dynamodb::{create_read_tables, read_table_names, DynamoReadStore};
use messaging_events::{Event, GroupId, MessageId, RecordedEvent, StreamId, Timestamp, UserId};
use messaging_projections::{
    HistoryEntry, InboxEntry, MessageView, PendingWork, Projector, ReadModelChange, ReadStore,
    ReadStoreError,
};
use std::sync::Arc;

/// A store on fresh tables of its own.
async fn open() -> DynamoReadStore {
    let clients = moto_clients().await;
    let names = unique_names();
    create_read_tables(&clients, &names).await.unwrap();
    DynamoReadStore::new(&clients, &names)
}

fn sent(message_id: MessageId, sent_at: Timestamp) -> RecordedEvent {
    let sender = UserId::new_random();
    RecordedEvent {
        stream: StreamId::outbox(sender),
        version: 1,
        event_id: uuid::Uuid::new_v4(),
        recorded_at: sent_at,
        event: Event::DirectMessageSent {
            message_id,
            sender,
            receiver: UserId::new_random(),
            text: "hello".into(),
            sent_at,
            blocks_version: 0,
        },
    }
}

fn view(sent_at: i64, text: &str) -> MessageView {
    MessageView {
        message_id: MessageId::new_random(),
        sender_id: UserId::new_random(),
        receiver_id: Some(UserId::new_random()),
        group_id: None,
        message: text.into(),
        sent_at: Timestamp(sent_at),
    }
}

fn inbox(user: UserId, position: u64) -> ReadModelChange {
    ReadModelChange::InboxEntry {
        user,
        entry: InboxEntry {
            position,
            message: view(position as i64, &format!("m{position}")),
        },
    }
}

fn history(user: UserId, sent_at: i64) -> ReadModelChange {
    let message = view(sent_at, "h");
    ReadModelChange::HistoryEntry {
        user,
        entry: HistoryEntry {
            sort_key: message.history_key(),
            message,
        },
    }
}

fn work(message_id: MessageId, accepted_at: i64) -> PendingWork {
    PendingWork {
        message_id,
        accepted_at: Timestamp(accepted_at),
        sent: sent(message_id, Timestamp(accepted_at)),
    }
}

fn pending(message_id: MessageId, accepted_at: i64) -> ReadModelChange {
    ReadModelChange::Pending {
        work: work(message_id, accepted_at),
    }
}

fn membership(group: GroupId, user: UserId, member: bool, version: u64) -> ReadModelChange {
    ReadModelChange::Membership {
        group,
        user,
        member,
        version,
    }
}

fn block(blocker: UserId, blocked: UserId, active: bool, version: u64) -> ReadModelChange {
    ReadModelChange::Block {
        blocker,
        blocked,
        active,
        version,
    }
}

fn group(group: GroupId) -> ReadModelChange {
    ReadModelChange::Group {
        group,
        name: "team".into(),
        admin: UserId::new_random(),
    }
}

fn positions(entries: &[InboxEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.position).collect()
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

#[tokio::test]
async fn creating_the_tables_again_is_harmless() {
    let clients = moto_clients().await;
    let names = unique_names();
    create_read_tables(&clients, &names).await.unwrap();
    create_read_tables(&clients, &names).await.unwrap();

    for table in read_table_names(&names) {
        let described = clients
            .dynamodb
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .unwrap();
        let status = described.table().and_then(|t| t.table_status().cloned());
        assert_eq!(status, Some(TableStatus::Active), "{table}");
        let billing = described
            .table()
            .and_then(|t| t.billing_mode_summary())
            .and_then(|b| b.billing_mode().cloned());
        assert_eq!(billing, Some(BillingMode::PayPerRequest), "{table}");
    }
    let pending = clients
        .dynamodb
        .describe_table()
        .table_name(names.name("pending"))
        .send()
        .await
        .unwrap();
    let indexes: Vec<_> = pending
        .table()
        .unwrap()
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert_eq!(indexes, vec!["unsettled"]);
}

#[tokio::test]
async fn without_tables_the_store_is_unavailable() {
    let store = DynamoReadStore::new(&moto_clients().await, &unique_names());
    let user = UserId::new_random();
    assert!(matches!(
        store.inbox_after(user, 0, 10).await,
        Err(ReadStoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.apply(&[inbox(user, 1)]).await,
        Err(ReadStoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn applying_the_same_changes_twice_gives_one_row_each() {
    let store = open().await;
    let user = UserId::new_random();
    let g = GroupId::new_random();
    let changes = vec![
        inbox(user, 1),
        history(user, 5),
        group(g),
        membership(g, user, true, 1),
        ReadModelChange::User {
            user,
            display_name: Some("Ada".into()),
        },
    ];

    store.apply(&changes).await.unwrap();
    store.apply(&changes).await.unwrap();

    assert_eq!(store.inbox_after(user, 0, 10).await.unwrap().len(), 1);
    assert_eq!(store.history_after(user, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.group_members(g).await.unwrap(), Some(vec![user]));
}

#[tokio::test]
async fn the_first_inbox_entry_at_a_position_wins() {
    let store = open().await;
    let user = UserId::new_random();
    let first = inbox(user, 1);
    // In one call (written in order, as they touch one item) and in a later one.
    store.apply(&[first.clone(), inbox(user, 1)]).await.unwrap();
    store.apply(&[inbox(user, 1)]).await.unwrap();
    let ReadModelChange::InboxEntry { entry, .. } = first else {
        unreachable!()
    };
    assert_eq!(store.inbox_after(user, 0, 10).await.unwrap(), vec![entry]);
}

#[tokio::test]
async fn inbox_after_returns_positions_after_the_cursor_up_to_the_limit() {
    let store = open().await;
    let (user, other) = (UserId::new_random(), UserId::new_random());
    // Out of order, as deliveries may reach the projector.
    let changes: Vec<_> = [5, 1, 3, 2, 4]
        .into_iter()
        .map(|p| inbox(user, p))
        .collect();
    store.apply(&changes).await.unwrap();
    store.apply(&[inbox(other, 1)]).await.unwrap();

    assert_eq!(
        positions(&store.inbox_after(user, 0, 10).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        positions(&store.inbox_after(user, 2, 2).await.unwrap()),
        vec![3, 4]
    );
    assert!(store.inbox_after(user, 5, 10).await.unwrap().is_empty());
    assert!(store.inbox_after(user, 0, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_query_costs_one_request_whatever_the_history() {
    let store = open().await;
    let user = UserId::new_random();
    let changes: Vec<_> = (1..=50).map(|p| inbox(user, p)).collect();
    store.apply(&changes).await.unwrap();
    assert_eq!(store.requests(), 50, "one write per change");

    let before = store.requests();
    let page = store.inbox_after(user, 10, 5).await.unwrap();
    assert_eq!(positions(&page), vec![11, 12, 13, 14, 15]);
    assert_eq!(store.requests() - before, 1);

    let before = store.requests();
    store.read_marker(user).await.unwrap();
    assert_eq!(store.requests() - before, 1);

    let before = store.requests();
    store.inbox_after(user, 0, 0).await.unwrap();
    assert_eq!(store.requests() - before, 0, "a zero limit sends nothing");
}

#[tokio::test]
async fn history_after_pages_by_sort_key() {
    let store = open().await;
    let user = UserId::new_random();
    let changes: Vec<_> = [30, 10, 20, 40]
        .into_iter()
        .map(|t| history(user, t))
        .collect();
    store.apply(&changes).await.unwrap();
    store
        .apply(&[history(UserId::new_random(), 15)])
        .await
        .unwrap();

    let first = store.history_after(user, None, 2).await.unwrap();
    let times: Vec<_> = first.iter().map(|e| e.message.sent_at.micros()).collect();
    assert_eq!(times, vec![10, 20]);

    let next = store
        .history_after(user, Some(&first[1].sort_key), 10)
        .await
        .unwrap();
    let times: Vec<_> = next.iter().map(|e| e.message.sent_at.micros()).collect();
    assert_eq!(times, vec![30, 40]);
    assert!(store
        .history_after(user, Some(&next[1].sort_key), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.history_after(user, None, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_read_marker_only_moves_forward() {
    let store = open().await;
    let user = UserId::new_random();
    assert_eq!(store.read_marker(user).await.unwrap(), 0);
    let marker = |up_to| ReadModelChange::ReadMarker { user, up_to };
    store.apply(&[marker(5), marker(3)]).await.unwrap();
    assert_eq!(store.read_marker(user).await.unwrap(), 5);
    store.apply(&[marker(3)]).await.unwrap();
    assert_eq!(store.read_marker(user).await.unwrap(), 5);
    store.apply(&[marker(7)]).await.unwrap();
    assert_eq!(store.read_marker(user).await.unwrap(), 7);
}

#[tokio::test]
async fn an_older_membership_applied_after_a_newer_one_is_ignored() {
    let store = open().await;
    let g = GroupId::new_random();
    let (stays, leaves) = (UserId::new_random(), UserId::new_random());
    assert_eq!(store.group_members(g).await.unwrap(), None);

    store
        .apply(&[
            group(g),
            membership(g, stays, true, 1),
            membership(g, leaves, false, 3),
            membership(g, leaves, true, 2),
        ])
        .await
        .unwrap();
    assert_eq!(store.group_members(g).await.unwrap(), Some(vec![stays]));

    // A stale change in a later call is ignored too.
    store
        .apply(&[membership(g, leaves, true, 3)])
        .await
        .unwrap();
    assert_eq!(store.group_members(g).await.unwrap(), Some(vec![stays]));

    store
        .apply(&[membership(g, leaves, true, 4)])
        .await
        .unwrap();
    let members = store.group_members(g).await.unwrap().unwrap();
    assert_eq!(sorted(members), sorted(vec![stays, leaves]));
}

#[tokio::test]
async fn a_group_without_members_exists_with_an_empty_list() {
    let store = open().await;
    let g = GroupId::new_random();
    store.apply(&[group(g)]).await.unwrap();
    assert_eq!(store.group_members(g).await.unwrap(), Some(vec![]));
}

#[tokio::test]
async fn memberships_of_a_group_not_yet_projected_are_kept_for_it() {
    let store = open().await;
    let g = GroupId::new_random();
    let user = UserId::new_random();
    store.apply(&[membership(g, user, true, 1)]).await.unwrap();
    assert_eq!(store.group_members(g).await.unwrap(), None);
    store.apply(&[group(g)]).await.unwrap();
    assert_eq!(store.group_members(g).await.unwrap(), Some(vec![user]));
}

#[tokio::test]
async fn a_large_group_is_read_across_pages() {
    let store = open().await;
    let g = GroupId::new_random();
    let users: Vec<_> = (0..120).map(|_| UserId::new_random()).collect();
    let mut changes = vec![group(g)];
    changes.extend(users.iter().map(|u| membership(g, *u, true, 1)));
    store.apply(&changes).await.unwrap();
    let members = store.group_members(g).await.unwrap().unwrap();
    assert_eq!(sorted(members), sorted(users));
}

#[tokio::test]
async fn an_older_block_applied_after_a_newer_one_is_ignored() {
    let store = open().await;
    let blocker = UserId::new_random();
    let (unblocked, blocked) = (UserId::new_random(), UserId::new_random());

    store
        .apply(&[
            block(blocker, unblocked, false, 2),
            block(blocker, unblocked, true, 1),
            block(blocker, blocked, true, 1),
            block(UserId::new_random(), blocked, true, 1),
        ])
        .await
        .unwrap();

    assert_eq!(store.blocked_by(blocker).await.unwrap(), vec![blocked]);
    store
        .apply(&[block(blocker, blocked, false, 2)])
        .await
        .unwrap();
    assert!(store.blocked_by(blocker).await.unwrap().is_empty());
    store
        .apply(&[block(blocker, blocked, true, 1)])
        .await
        .unwrap();
    assert!(store.blocked_by(blocker).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_settled_message_stays_settled_when_its_pending_arrives_later() {
    let store = open().await;
    let id = MessageId::new_random();
    store
        .apply(&[ReadModelChange::Settled { message_id: id }, pending(id, 10)])
        .await
        .unwrap();
    assert!(store
        .pending_before(Timestamp(100), 10)
        .await
        .unwrap()
        .is_empty());
    // And in separate calls.
    let other = MessageId::new_random();
    store
        .apply(&[ReadModelChange::Settled { message_id: other }])
        .await
        .unwrap();
    store.apply(&[pending(other, 10)]).await.unwrap();
    assert!(store
        .pending_before(Timestamp(100), 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn settling_pending_work_removes_it_from_the_sweep() {
    let store = open().await;
    let (settled, open_work) = (MessageId::new_random(), MessageId::new_random());
    store
        .apply(&[pending(settled, 10), pending(open_work, 20)])
        .await
        .unwrap();
    store
        .apply(&[ReadModelChange::Settled {
            message_id: settled,
        }])
        .await
        .unwrap();
    // A redelivered Pending does not bring it back.
    store.apply(&[pending(settled, 10)]).await.unwrap();
    let ids: Vec<_> = store
        .pending_before(Timestamp(100), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.message_id)
        .collect();
    assert_eq!(ids, vec![open_work]);
}

#[tokio::test]
async fn pending_before_is_oldest_first_bounded_by_time_and_limit() {
    let store = open().await;
    let works: Vec<_> = [10, 20, 30, 40]
        .into_iter()
        .map(|at| work(MessageId::new_random(), at))
        .collect();
    let change = |i: usize| ReadModelChange::Pending {
        work: works[i].clone(),
    };
    store
        .apply(&[change(3), change(2), change(0), change(1), change(2)])
        .await
        .unwrap();

    assert_eq!(
        store.pending_before(Timestamp(40), 10).await.unwrap(),
        works[..3].to_vec()
    );
    let before = store.requests();
    assert_eq!(
        store.pending_before(Timestamp(40), 2).await.unwrap(),
        works[..2].to_vec()
    );
    assert_eq!(store.requests() - before, 1);
    assert!(store
        .pending_before(Timestamp(10), 10)
        .await
        .unwrap()
        .is_empty());
}

/// A small history: three users, a group with joins and a leave, blocks and an unblock, a
/// dispatched direct message, an undecided one, a group message and a read marker.
fn scenario() -> (Vec<RecordedEvent>, [UserId; 3], GroupId) {
    let (a, b, c) = (
        UserId::new_random(),
        UserId::new_random(),
        UserId::new_random(),
    );
    let g = GroupId::new_random();
    let record = |stream: StreamId, version: u64, at: i64, event: Event| RecordedEvent {
        stream,
        version,
        event_id: uuid::Uuid::new_v4(),
        recorded_at: Timestamp(at),
        event,
    };
    let (m1, m2, m3) = (
        MessageId::new_random(),
        MessageId::new_random(),
        MessageId::new_random(),
    );
    let events = vec![
        record(
            StreamId::user(a),
            1,
            1,
            Event::UserRegistered {
                user_id: a,
                display_name: Some("A".into()),
            },
        ),
        record(
            StreamId::user(b),
            1,
            2,
            Event::UserRegistered {
                user_id: b,
                display_name: None,
            },
        ),
        record(
            StreamId::user(c),
            1,
            3,
            Event::UserRegistered {
                user_id: c,
                display_name: None,
            },
        ),
        record(
            StreamId::group(g),
            1,
            4,
            Event::GroupCreated {
                group_id: g,
                name: "g".into(),
                admin: a,
                members: vec![a, b],
            },
        ),
        record(
            StreamId::group(g),
            2,
            5,
            Event::MemberAdded {
                group_id: g,
                user_id: c,
                by: a,
            },
        ),
        record(
            StreamId::group(g),
            3,
            6,
            Event::MemberRemoved {
                group_id: g,
                user_id: b,
                by: b,
            },
        ),
        record(
            StreamId::blocks_of(c),
            1,
            7,
            Event::UserBlocked {
                blocker: a,
                blocked: c,
            },
        ),
        record(
            StreamId::blocks_of(c),
            2,
            8,
            Event::UserUnblocked {
                blocker: a,
                blocked: c,
            },
        ),
        record(
            StreamId::blocks_of(c),
            3,
            9,
            Event::UserBlocked {
                blocker: b,
                blocked: c,
            },
        ),
        record(
            StreamId::outbox(a),
            1,
            10,
            Event::DirectMessageSent {
                message_id: m1,
                sender: a,
                receiver: b,
                text: "hi b".into(),
                sent_at: Timestamp(10),
                blocks_version: 0,
            },
        ),
        record(
            StreamId::inbox(b),
            1,
            11,
            Event::MessageDelivered {
                message_id: m1,
                recipient: b,
                sender: a,
                receiver: Some(b),
                group_id: None,
                text: "hi b".into(),
                sent_at: Timestamp(10),
            },
        ),
        record(
            StreamId::message(m1),
            1,
            12,
            Event::MessageDispatched {
                message_id: m1,
                delivered: 1,
                withheld: 0,
            },
        ),
        record(
            StreamId::outbox(c),
            1,
            13,
            Event::DirectMessageSent {
                message_id: m2,
                sender: c,
                receiver: a,
                text: "hi a".into(),
                sent_at: Timestamp(13),
                blocks_version: 3,
            },
        ),
        record(
            StreamId::outbox(a),
            2,
            14,
            Event::GroupMessageSent {
                message_id: m3,
                sender: a,
                group_id: g,
                text: "hi all".into(),
                sent_at: Timestamp(14),
                group_version: 3,
                blocks_version: 0,
            },
        ),
        record(
            StreamId::inbox(c),
            1,
            15,
            Event::MessageDelivered {
                message_id: m3,
                recipient: c,
                sender: a,
                receiver: None,
                group_id: Some(g),
                text: "hi all".into(),
                sent_at: Timestamp(14),
            },
        ),
        record(
            StreamId::message(m3),
            1,
            16,
            Event::MessageDispatched {
                message_id: m3,
                delivered: 1,
                withheld: 0,
            },
        ),
        record(
            StreamId::reads(b),
            1,
            17,
            Event::MessagesRead {
                user_id: b,
                up_to: 1,
            },
        ),
    ];
    (events, [a, b, c], g)
}

/// Everything the queries can see of `users` and `group`.
#[derive(Debug, PartialEq)]
struct Seen {
    inboxes: Vec<Vec<InboxEntry>>,
    histories: Vec<Vec<HistoryEntry>>,
    markers: Vec<u64>,
    blocks: Vec<Vec<UserId>>,
    members: Option<Vec<UserId>>,
    pending: Vec<PendingWork>,
}

async fn seen(store: &DynamoReadStore, users: &[UserId], group: GroupId) -> Seen {
    let mut seen = Seen {
        inboxes: Vec::new(),
        histories: Vec::new(),
        markers: Vec::new(),
        blocks: Vec::new(),
        members: store.group_members(group).await.unwrap().map(sorted),
        pending: store
            .pending_before(Timestamp(i64::MAX), 100)
            .await
            .unwrap(),
    };
    for user in users {
        seen.inboxes
            .push(store.inbox_after(*user, 0, 100).await.unwrap());
        seen.histories
            .push(store.history_after(*user, None, 100).await.unwrap());
        seen.markers.push(store.read_marker(*user).await.unwrap());
        seen.blocks
            .push(sorted(store.blocked_by(*user).await.unwrap()));
    }
    seen
}

#[tokio::test]
async fn the_projector_gives_the_same_read_models_for_duplicated_and_shuffled_events() {
    let (events, users, g) = scenario();
    let [a, _, c] = users;

    let in_order = Arc::new(open().await);
    Projector::new(in_order.clone())
        .handle(&events)
        .await
        .unwrap();

    // Reversed, every event twice, in small batches: what redelivery across shards can do.
    let mut shuffled: Vec<RecordedEvent> = events.iter().rev().cloned().collect();
    shuffled.extend(events.iter().step_by(2).cloned());
    shuffled.extend(events.iter().skip(1).step_by(2).rev().cloned());
    let reordered = Arc::new(open().await);
    let projector = Projector::new(reordered.clone());
    for batch in shuffled.chunks(3) {
        projector.handle(batch).await.unwrap();
    }

    let expected = seen(&in_order, &users, g).await;
    assert_eq!(seen(&reordered, &users, g).await, expected);

    // And the read models are the ones the events describe.
    assert_eq!(expected.members, Some(sorted(vec![a, c])));
    assert_eq!(expected.blocks, vec![vec![], vec![c], vec![]]);
    assert_eq!(expected.markers, vec![0, 1, 0]);
    assert_eq!(positions(&expected.inboxes[1]), vec![1]);
    assert_eq!(expected.inboxes[1][0].message.message, "hi b");
    assert_eq!(expected.inboxes[2][0].message.message, "hi all");
    assert!(expected.inboxes[0].is_empty(), "c's message is undecided");
    let texts = |entries: &[HistoryEntry]| -> Vec<String> {
        entries.iter().map(|e| e.message.message.clone()).collect()
    };
    assert_eq!(texts(&expected.histories[0]), vec!["hi b", "hi all"]);
    assert_eq!(texts(&expected.histories[2]), vec!["hi a", "hi all"]);
    let pending: Vec<_> = expected.pending.iter().map(|w| w.sent.clone()).collect();
    assert_eq!(pending, vec![events[12].clone()]);
}
