//! The projector's unit tests: each event's changes, and the same read models whatever the
//! duplicates and the order of delivery.

use crate::memory::{MemoryReadStore, Tables};
use crate::{project, Projector, Queries, ReadStore};
use messaging_events::{
    Event, GroupId, MessageId, RecordedEvent, RejectionReason, StreamId, Timestamp, UserId,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// Builds recorded events with per-stream versions, as a store would.
#[derive(Default)]
struct Log {
    versions: BTreeMap<StreamId, u64>,
    events: Vec<RecordedEvent>,
}

impl Log {
    fn add(&mut self, stream: StreamId, event: Event) -> &mut Self {
        let version = self.versions.entry(stream.clone()).or_insert(0);
        *version += 1;
        self.events.push(RecordedEvent {
            stream,
            version: *version,
            event_id: Uuid::new_v4(),
            recorded_at: Timestamp(self.events.len() as i64),
            event,
        });
        self
    }
}

struct World {
    alice: UserId,
    bob: UserId,
    carol: UserId,
    group: GroupId,
    log: Log,
}

/// A bit of everything: registrations, a group with churn, blocks and unblocks, direct and
/// group messages, deliveries, a rejection and read markers.
fn world() -> World {
    let (alice, bob, carol) = (
        UserId::new_random(),
        UserId::new_random(),
        UserId::new_random(),
    );
    let group = GroupId::new_random();
    let mut log = Log::default();
    for user in [alice, bob, carol] {
        log.add(
            StreamId::user(user),
            Event::UserRegistered {
                user_id: user,
                display_name: None,
            },
        );
    }
    log.add(
        StreamId::group(group),
        Event::GroupCreated {
            group_id: group,
            name: "g".into(),
            admin: alice,
            members: vec![alice, bob],
        },
    )
    .add(
        StreamId::group(group),
        Event::MemberAdded {
            group_id: group,
            user_id: carol,
            by: alice,
        },
    )
    .add(
        StreamId::group(group),
        Event::MemberRemoved {
            group_id: group,
            user_id: bob,
            by: alice,
        },
    )
    .add(
        StreamId::blocks_of(bob),
        Event::UserBlocked {
            blocker: alice,
            blocked: bob,
        },
    )
    .add(
        StreamId::blocks_of(bob),
        Event::UserUnblocked {
            blocker: alice,
            blocked: bob,
        },
    )
    .add(
        StreamId::blocks_of(carol),
        Event::UserBlocked {
            blocker: bob,
            blocked: carol,
        },
    );
    for (i, (sender, receiver)) in [(alice, bob), (bob, alice), (carol, bob)]
        .iter()
        .enumerate()
    {
        let message_id = MessageId::new_random();
        let sent_at = Timestamp(1_000 + i as i64);
        log.add(
            StreamId::outbox(*sender),
            Event::DirectMessageSent {
                message_id,
                sender: *sender,
                receiver: *receiver,
                text: format!("m{i}"),
                sent_at,
                blocks_version: 0,
            },
        );
        if *sender == carol {
            log.add(
                StreamId::message(message_id),
                Event::MessageRejected {
                    message_id,
                    reason: RejectionReason::Blocked,
                },
            );
            continue;
        }
        log.add(
            StreamId::inbox(*receiver),
            Event::MessageDelivered {
                message_id,
                recipient: *receiver,
                sender: *sender,
                receiver: Some(*receiver),
                group_id: None,
                text: format!("m{i}"),
                sent_at,
            },
        )
        .add(
            StreamId::message(message_id),
            Event::MessageDispatched {
                message_id,
                delivered: 1,
                withheld: 0,
            },
        );
    }
    let group_message = MessageId::new_random();
    log.add(
        StreamId::outbox(alice),
        Event::GroupMessageSent {
            message_id: group_message,
            sender: alice,
            group_id: group,
            text: "hello group".into(),
            sent_at: Timestamp(2_000),
            group_version: 3,
            blocks_version: 0,
        },
    )
    .add(
        StreamId::inbox(carol),
        Event::MessageDelivered {
            message_id: group_message,
            recipient: carol,
            sender: alice,
            receiver: None,
            group_id: Some(group),
            text: "hello group".into(),
            sent_at: Timestamp(2_000),
        },
    )
    .add(
        StreamId::message(group_message),
        Event::MessageDispatched {
            message_id: group_message,
            delivered: 1,
            withheld: 0,
        },
    )
    .add(
        StreamId::reads(bob),
        Event::MessagesRead {
            user_id: bob,
            up_to: 1,
        },
    )
    .add(
        StreamId::reads(bob),
        Event::MessagesRead {
            user_id: bob,
            up_to: 2,
        },
    );
    World {
        alice,
        bob,
        carol,
        group,
        log,
    }
}

async fn projected(events: &[RecordedEvent]) -> (Arc<MemoryReadStore>, Tables) {
    let store = Arc::new(MemoryReadStore::default());
    let projector = Projector::new(store.clone());
    // One event per batch: the worst case for ordering.
    for event in events {
        projector
            .handle(std::slice::from_ref(event))
            .await
            .expect("applies");
    }
    let tables = store.snapshot();
    (store, tables)
}

/// Like [`projected`], `size` events per batch.
async fn projected_in_batches(events: &[RecordedEvent], size: usize) -> Tables {
    let store = Arc::new(MemoryReadStore::default());
    let projector = Projector::new(store.clone());
    for batch in events.chunks(size) {
        projector.handle(batch).await.expect("applies");
    }
    store.snapshot()
}

/// A deterministic shuffle (no randomness crate needed): a linear congruential generator.
fn shuffled(events: &[RecordedEvent], seed: u64) -> Vec<RecordedEvent> {
    let mut out = events.to_vec();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in (1..out.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (state >> 33) as usize % (i + 1);
        out.swap(i, j);
    }
    out
}

#[tokio::test]
async fn given_the_log_when_projected_then_each_read_model_holds_what_happened() {
    let w = world();
    let (store, t) = projected(&w.log.events).await;
    assert_eq!(t.users.len(), 3);
    let mut members = store
        .group_members(w.group)
        .await
        .expect("ok")
        .expect("exists");
    members.sort();
    let mut expected = vec![w.alice, w.carol];
    expected.sort();
    assert_eq!(members, expected, "bob was removed, carol added");
    assert!(
        store.blocked_by(w.alice).await.expect("ok").is_empty(),
        "alice unblocked bob"
    );
    assert_eq!(store.blocked_by(w.bob).await.expect("ok"), vec![w.carol]);
    assert_eq!(t.markers.get(&w.bob), Some(&2));
    // bob received from alice; carol's message was rejected and only in carol's history.
    assert_eq!(t.inbox.keys().filter(|(u, _)| *u == w.bob).count(), 1);
    assert_eq!(t.history.keys().filter(|(u, _)| *u == w.carol).count(), 2);
    // Everything sent has an outcome, so nothing is pending.
    assert!(store
        .pending_before(Timestamp(i64::MAX), 10)
        .await
        .expect("ok")
        .is_empty());
}

#[tokio::test]
async fn given_duplicated_and_reordered_events_then_the_read_models_are_the_same() {
    let w = world();
    let (_, expected) = projected(&w.log.events).await;
    for seed in 0..50 {
        let mut noisy = w.log.events.clone();
        noisy.extend(shuffled(&w.log.events, seed + 1000).into_iter().take(10));
        let (_, got) = projected(&shuffled(&noisy, seed)).await;
        assert_eq!(got, expected, "seed {seed}");
    }
}

#[tokio::test]
async fn given_batches_of_any_size_then_the_read_models_are_those_of_one_event_at_a_time() {
    let w = world();
    for seed in 0..20 {
        let mut noisy = w.log.events.clone();
        noisy.extend(shuffled(&w.log.events, seed + 1000).into_iter().take(10));
        let noisy = shuffled(&noisy, seed);
        let (_, one_at_a_time) = projected(&noisy).await;
        for size in [2, 3, 5, noisy.len()] {
            let got = projected_in_batches(&noisy, size).await;
            assert_eq!(got, one_at_a_time, "seed {seed}, batches of {size}");
        }
    }
}

#[tokio::test]
async fn given_a_removal_projected_before_the_add_then_the_newer_version_wins() {
    let w = world();
    let membership: Vec<RecordedEvent> = w
        .log
        .events
        .iter()
        .filter(|e| e.stream == StreamId::group(w.group))
        .cloned()
        .rev()
        .collect();
    let (store, _) = projected(&membership).await;
    let members = store
        .group_members(w.group)
        .await
        .expect("ok")
        .expect("exists");
    assert!(!members.contains(&w.bob));
    assert!(members.contains(&w.carol));
}

#[tokio::test]
async fn given_an_outcome_before_its_send_then_the_message_is_not_pending() {
    let w = world();
    let sends_and_outcomes: Vec<RecordedEvent> = w
        .log
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::DirectMessageSent { .. }
                    | Event::MessageDispatched { .. }
                    | Event::MessageRejected { .. }
            )
        })
        .cloned()
        .rev()
        .collect();
    let (store, _) = projected(&sends_and_outcomes).await;
    assert!(store
        .pending_before(Timestamp(i64::MAX), 10)
        .await
        .expect("ok")
        .is_empty());
}

#[tokio::test]
async fn a_sent_message_without_outcome_is_pending_with_its_work() {
    let w = world();
    let sent = w
        .log
        .events
        .iter()
        .find(|e| matches!(e.event, Event::GroupMessageSent { .. }))
        .cloned()
        .expect("a group send");
    let (store, _) = projected(std::slice::from_ref(&sent)).await;
    let pending = store
        .pending_before(Timestamp(i64::MAX), 10)
        .await
        .expect("ok");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].sent, sent);
    assert!(store
        .pending_before(Timestamp(2_000), 10)
        .await
        .expect("ok")
        .is_empty());
}

#[tokio::test]
async fn history_is_oldest_first_and_pages_with_a_cursor() {
    let w = world();
    let (store, _) = projected(&w.log.events).await;
    let queries = Queries::new(store);
    // alice: sent m0, received m1, sent the group message.
    let first = queries.history(w.alice, None, 2).await.expect("ok");
    let texts: Vec<&str> = first.messages.iter().map(|m| m.message.as_str()).collect();
    assert_eq!(texts, vec!["m0", "m1"]);
    let cursor = first.next_cursor.expect("more");
    let second = queries
        .history(w.alice, Some(&cursor), 2)
        .await
        .expect("ok");
    assert_eq!(second.messages.len(), 1);
    assert_eq!(second.messages[0].message, "hello group");
    assert_eq!(second.next_cursor, None);
}

#[test]
fn token_events_change_no_read_model() {
    let user = UserId::new_random();
    let mut log = Log::default();
    log.add(
        StreamId::user(user),
        Event::TokenIssued {
            user_id: user,
            token_id: Uuid::new_v4(),
            token_hash: "h".into(),
        },
    );
    assert!(project(&log.events[0]).is_empty());
}

/// Every interleaving of the streams, with each event delivered one to three times (as a
/// DynamoDB stream shard, SQS or a replay running beside the live projector may deliver
/// them), gives the same read models as projecting the log once in order.
mod any_interleaving {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// The log's events grouped by stream, each repeated `1 + copies[i]` times in place.
    fn per_stream(events: &[RecordedEvent], copies: &[usize]) -> Vec<VecDeque<RecordedEvent>> {
        let mut streams: BTreeMap<StreamId, VecDeque<RecordedEvent>> = BTreeMap::new();
        for (i, event) in events.iter().enumerate() {
            let queue = streams.entry(event.stream.clone()).or_default();
            for _ in 0..=copies.get(i).copied().unwrap_or(0) {
                queue.push_back(event.clone());
            }
        }
        streams.into_values().collect()
    }

    /// Merges the streams, taking the next event from the stream `choices` pick in turn.
    fn interleave(
        mut streams: Vec<VecDeque<RecordedEvent>>,
        choices: &[usize],
    ) -> Vec<RecordedEvent> {
        let mut out = Vec::new();
        let mut choice = choices.iter().cycle();
        loop {
            streams.retain(|queue| !queue.is_empty());
            if streams.is_empty() {
                return out;
            }
            let pick = choice.next().copied().unwrap_or(0) % streams.len();
            if let Some(event) = streams[pick].pop_front() {
                out.push(event);
            }
        }
    }

    fn project_all(events: &[RecordedEvent]) -> Tables {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async { projected(events).await.1 })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn projection_is_the_same_for_any_interleaving_of_duplicates(
            copies in proptest::collection::vec(0usize..3, 40),
            choices in proptest::collection::vec(0usize..64, 1..80),
            batch in 1usize..8,
        ) {
            let w = world();
            let expected = project_all(&w.log.events);
            let delivered = interleave(per_stream(&w.log.events, &copies), &choices);
            prop_assert!(delivered.len() >= w.log.events.len());
            // Batches, as a stream shard or a replay page delivers them.
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
            let got = runtime.block_on(async {
                let store = Arc::new(MemoryReadStore::default());
                let projector = Projector::new(store.clone());
                for chunk in delivered.chunks(batch) {
                    projector.handle(chunk).await.expect("applies");
                }
                store.snapshot()
            });
            prop_assert_eq!(got, expected);
        }
    }
}
