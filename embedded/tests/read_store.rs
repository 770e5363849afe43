//! The read store: idempotent changes, version guards and bounded queries.

mod common;

use common::{open, sent};
use messaging_embedded::Embedded;
use messaging_events::{GroupId, MessageId, Timestamp, UserId};
use messaging_projections::{
    HistoryEntry, InboxEntry, MessageView, PendingWork, ReadModelChange, ReadStore,
};

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

#[tokio::test]
async fn applying_the_same_changes_twice_gives_one_row_each() {
    let (_dir, store) = open();
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

    store.read.apply(&changes).await.unwrap();
    store.read.apply(&changes).await.unwrap();

    assert_eq!(store.read.inbox_after(user, 0, 10).await.unwrap().len(), 1);
    assert_eq!(
        store
            .read
            .history_after(user, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.read.group_members(g).await.unwrap(), Some(vec![user]));
}

#[tokio::test]
async fn the_first_inbox_entry_at_a_position_wins() {
    let (_dir, store) = open();
    let user = UserId::new_random();
    let first = inbox(user, 1);
    store
        .read
        .apply(&[first.clone(), inbox(user, 1)])
        .await
        .unwrap();
    let ReadModelChange::InboxEntry { entry, .. } = first else {
        unreachable!()
    };
    assert_eq!(
        store.read.inbox_after(user, 0, 10).await.unwrap(),
        vec![entry]
    );
}

#[tokio::test]
async fn inbox_after_returns_positions_after_the_cursor_up_to_the_limit() {
    let (_dir, store) = open();
    let (user, other) = (UserId::new_random(), UserId::new_random());
    // Out of order, as deliveries may reach the projector.
    let changes: Vec<_> = [5, 1, 3, 2, 4]
        .into_iter()
        .map(|p| inbox(user, p))
        .collect();
    store.read.apply(&changes).await.unwrap();
    store.read.apply(&[inbox(other, 1)]).await.unwrap();

    assert_eq!(
        positions(&store.read.inbox_after(user, 0, 10).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        positions(&store.read.inbox_after(user, 2, 2).await.unwrap()),
        vec![3, 4]
    );
    assert!(store
        .read
        .inbox_after(user, 5, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.read.inbox_after(user, 0, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn history_after_pages_by_sort_key() {
    let (_dir, store) = open();
    let user = UserId::new_random();
    let changes: Vec<_> = [30, 10, 20, 40]
        .into_iter()
        .map(|t| history(user, t))
        .collect();
    store.read.apply(&changes).await.unwrap();
    store
        .read
        .apply(&[history(UserId::new_random(), 15)])
        .await
        .unwrap();

    let first = store.read.history_after(user, None, 2).await.unwrap();
    let times: Vec<_> = first.iter().map(|e| e.message.sent_at.micros()).collect();
    assert_eq!(times, vec![10, 20]);

    let next = store
        .read
        .history_after(user, Some(&first[1].sort_key), 10)
        .await
        .unwrap();
    let times: Vec<_> = next.iter().map(|e| e.message.sent_at.micros()).collect();
    assert_eq!(times, vec![30, 40]);
    assert!(store
        .read
        .history_after(user, Some(&next[1].sort_key), 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_read_marker_only_moves_forward() {
    let (_dir, store) = open();
    let user = UserId::new_random();
    assert_eq!(store.read.read_marker(user).await.unwrap(), 0);
    let marker = |up_to| ReadModelChange::ReadMarker { user, up_to };
    store.read.apply(&[marker(5), marker(3)]).await.unwrap();
    assert_eq!(store.read.read_marker(user).await.unwrap(), 5);
    store.read.apply(&[marker(7)]).await.unwrap();
    assert_eq!(store.read.read_marker(user).await.unwrap(), 7);
}

#[tokio::test]
async fn an_older_membership_applied_after_a_newer_one_is_ignored() {
    let (_dir, store) = open();
    let g = GroupId::new_random();
    let (stays, leaves) = (UserId::new_random(), UserId::new_random());
    assert_eq!(store.read.group_members(g).await.unwrap(), None);

    store
        .read
        .apply(&[
            group(g),
            membership(g, stays, true, 1),
            membership(g, leaves, false, 3),
            membership(g, leaves, true, 2),
        ])
        .await
        .unwrap();

    assert_eq!(
        store.read.group_members(g).await.unwrap(),
        Some(vec![stays])
    );
    store
        .read
        .apply(&[membership(g, leaves, true, 4)])
        .await
        .unwrap();
    let mut members = store.read.group_members(g).await.unwrap().unwrap();
    members.sort();
    let mut expected = vec![stays, leaves];
    expected.sort();
    assert_eq!(members, expected);
}

#[tokio::test]
async fn a_group_without_members_exists_with_an_empty_list() {
    let (_dir, store) = open();
    let g = GroupId::new_random();
    store.read.apply(&[group(g)]).await.unwrap();
    assert_eq!(store.read.group_members(g).await.unwrap(), Some(vec![]));
}

#[tokio::test]
async fn an_older_block_applied_after_a_newer_one_is_ignored() {
    let (_dir, store) = open();
    let blocker = UserId::new_random();
    let (unblocked, blocked) = (UserId::new_random(), UserId::new_random());

    store
        .read
        .apply(&[
            block(blocker, unblocked, false, 2),
            block(blocker, unblocked, true, 1),
            block(blocker, blocked, true, 1),
            block(UserId::new_random(), blocked, true, 1),
        ])
        .await
        .unwrap();

    assert_eq!(store.read.blocked_by(blocker).await.unwrap(), vec![blocked]);
    store
        .read
        .apply(&[block(blocker, blocked, false, 2)])
        .await
        .unwrap();
    assert!(store.read.blocked_by(blocker).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_settled_message_stays_settled_when_its_pending_arrives_later() {
    let (_dir, store) = open();
    let id = MessageId::new_random();
    store
        .read
        .apply(&[ReadModelChange::Settled { message_id: id }, pending(id, 10)])
        .await
        .unwrap();
    assert!(store
        .read
        .pending_before(Timestamp(100), 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn settling_pending_work_removes_it_from_the_sweep() {
    let (_dir, store) = open();
    let (settled, open_work) = (MessageId::new_random(), MessageId::new_random());
    store
        .read
        .apply(&[pending(settled, 10), pending(open_work, 20)])
        .await
        .unwrap();
    store
        .read
        .apply(&[ReadModelChange::Settled {
            message_id: settled,
        }])
        .await
        .unwrap();
    let ids: Vec<_> = store
        .read
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
    let (_dir, store) = open();
    let works: Vec<_> = [10, 20, 30, 40]
        .into_iter()
        .map(|at| work(MessageId::new_random(), at))
        .collect();
    let change = |i: usize| ReadModelChange::Pending {
        work: works[i].clone(),
    };
    store
        .read
        .apply(&[change(3), change(2), change(0), change(1), change(2)])
        .await
        .unwrap();

    assert_eq!(
        store.read.pending_before(Timestamp(40), 10).await.unwrap(),
        works[..3].to_vec()
    );
    assert_eq!(
        store.read.pending_before(Timestamp(40), 2).await.unwrap(),
        works[..2].to_vec()
    );
}

#[tokio::test]
async fn rows_read_counts_only_the_rows_a_query_returned() {
    let (_dir, store) = open();
    let user = UserId::new_random();
    let changes: Vec<_> = (1..=50).map(|p| inbox(user, p)).collect();
    store.read.apply(&changes).await.unwrap();
    assert_eq!(store.read.rows_read(), 0);

    store.read.inbox_after(user, 10, 5).await.unwrap();
    assert_eq!(store.read.rows_read(), 5);

    store.read.inbox_after(user, 48, 5).await.unwrap();
    assert_eq!(store.read.rows_read(), 7);

    store.read.read_marker(user).await.unwrap();
    assert_eq!(store.read.rows_read(), 7, "no marker row");
}

#[tokio::test]
async fn read_models_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserId::new_random();
    {
        let store = Embedded::open(dir.path()).unwrap();
        store
            .read
            .apply(&[
                inbox(user, 1),
                ReadModelChange::ReadMarker { user, up_to: 1 },
            ])
            .await
            .unwrap();
    }
    let store = Embedded::open(dir.path()).unwrap();
    assert_eq!(
        positions(&store.read.inbox_after(user, 0, 10).await.unwrap()),
        vec![1]
    );
    assert_eq!(store.read.read_marker(user).await.unwrap(), 1);
}
