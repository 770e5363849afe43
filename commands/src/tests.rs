//! Handler and processor tests over the in-memory ports: given events (through commands),
//! when a command or a (re)delivery happens, then these events exist.

use crate::memory_store::{MemoryQueue, MemoryStore};
use crate::*;
use async_trait::async_trait;
use messaging_events::{
    AppendRequest, Claim, Event, EventStore, GroupId, Limits, MessageId, NewEvent, RejectionReason,
    StreamId, SystemClock, Timestamp, UserId, WorkItem,
};
use messaging_projections::{
    HistoryEntry, InboxEntry, PendingWork, ReadModelChange, ReadStore, ReadStoreError,
};
use std::sync::Arc;

/// The handlers under test never reach the read side in these tests.
struct NoReads;

#[async_trait]
impl ReadStore for NoReads {
    async fn apply(&self, _: &[ReadModelChange]) -> Result<(), ReadStoreError> {
        Ok(())
    }
    async fn inbox_after(
        &self,
        _: UserId,
        _: u64,
        _: usize,
    ) -> Result<Vec<InboxEntry>, ReadStoreError> {
        Ok(Vec::new())
    }
    async fn history_after(
        &self,
        _: UserId,
        _: Option<&str>,
        _: usize,
    ) -> Result<Vec<HistoryEntry>, ReadStoreError> {
        Ok(Vec::new())
    }
    async fn read_marker(&self, _: UserId) -> Result<u64, ReadStoreError> {
        Ok(0)
    }
    async fn group_members(&self, _: GroupId) -> Result<Option<Vec<UserId>>, ReadStoreError> {
        Ok(None)
    }
    async fn blocked_by(&self, _: UserId) -> Result<Vec<UserId>, ReadStoreError> {
        Ok(Vec::new())
    }
    async fn pending_before(
        &self,
        _: Timestamp,
        _: usize,
    ) -> Result<Vec<PendingWork>, ReadStoreError> {
        Ok(Vec::new())
    }
}

struct Harness {
    store: Arc<MemoryStore>,
    direct: Arc<MemoryQueue>,
    group: Arc<MemoryQueue>,
    handlers: CommandHandlers,
    processor: Processor,
}

fn harness() -> Harness {
    harness_over(MemoryStore::default())
}

fn harness_over(store: MemoryStore) -> Harness {
    let store = Arc::new(store);
    let direct = Arc::new(MemoryQueue::default());
    let group = Arc::new(MemoryQueue::default());
    let handlers = handlers_over(&store, &direct, &group);
    let processor = Processor::new(store.clone());
    Harness {
        store,
        direct,
        group,
        handlers,
        processor,
    }
}

/// Handlers as a process builds them (another process's, when called again).
fn handlers_over(
    store: &Arc<MemoryStore>,
    direct: &Arc<MemoryQueue>,
    group: &Arc<MemoryQueue>,
) -> CommandHandlers {
    CommandHandlers::new(Dependencies {
        store: store.clone(),
        read: Arc::new(NoReads),
        direct_queue: direct.clone(),
        group_queue: group.clone(),
        clock: Arc::new(SystemClock),
        limits: Limits::default(),
        dispatch: Dispatch::Enqueue,
    })
}

impl Harness {
    async fn user(&self) -> UserId {
        let registered = self
            .handlers
            .register(Register::default(), None)
            .await
            .expect("registers");
        let user = self
            .handlers
            .authenticate(&registered.token)
            .await
            .expect("token works");
        assert_eq!(user.to_string(), registered.user_id);
        user
    }

    async fn send(&self, from: UserId, to: UserId, text: &str) -> String {
        let body = SendMessage {
            sender_id: from.to_string(),
            receiver_id: to.to_string(),
            message: text.into(),
        };
        self.handlers
            .send_message(from, body, None)
            .await
            .expect("accepted")
            .message_id
    }

    async fn block(&self, blocker: UserId, blocked: UserId) {
        let body = BlockUser {
            user_id: blocker.to_string(),
            blocked_user_id: blocked.to_string(),
        };
        self.handlers
            .block_user(blocker, body, None)
            .await
            .expect("blocked");
    }

    async fn process_all(&self) {
        for item in self.direct.drain().into_iter().chain(self.group.drain()) {
            self.processor.handle(&item).await.expect("processed");
        }
    }

    /// Texts delivered to `user`, in inbox order.
    fn inbox(&self, user: UserId) -> Vec<String> {
        self.store
            .log()
            .into_iter()
            .filter(|e| e.stream == StreamId::inbox(user))
            .filter_map(|e| match e.event {
                Event::MessageDelivered { text, .. } => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Appends `item`'s delivery to `recipient` with its de-duplication claim and no outcome:
    /// what a processing cut off after that delivery, or an older build, leaves behind.
    async fn deliver_by_hand(&self, item: &WorkItem, recipient: UserId) {
        let (message_id, sender, receiver, group_id, text, sent_at) = match item.sent.event.clone()
        {
            Event::DirectMessageSent {
                message_id,
                sender,
                receiver,
                text,
                sent_at,
                ..
            } => (message_id, sender, Some(receiver), None, text, sent_at),
            Event::GroupMessageSent {
                message_id,
                sender,
                group_id,
                text,
                sent_at,
                ..
            } => (message_id, sender, None, Some(group_id), text, sent_at),
            other => panic!("not a message: {other:?}"),
        };
        let delivered = Event::MessageDelivered {
            message_id,
            recipient,
            sender,
            receiver,
            group_id,
            text,
            sent_at,
        };
        let inbox = StreamId::inbox(recipient);
        let position = self.store.stream_version(&inbox).await.expect("readable");
        let mut request = AppendRequest::single(inbox, position, vec![NewEvent::new(delivered)]);
        request.claims.push(Claim {
            key: format!("delivery:{message_id}:{recipient}"),
            value: serde_json::json!({ "position": position + 1 }),
        });
        self.store.append(request).await.expect("delivered by hand");
    }

    fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.store.log().iter().filter(|e| pred(&e.event)).count()
    }
}

#[tokio::test]
async fn given_a_block_when_the_blocked_user_sends_then_the_message_is_accepted_but_rejected() {
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    h.block(a, b).await;
    h.send(b, a, "hello?").await;
    h.process_all().await;
    assert!(h.inbox(a).is_empty());
    assert_eq!(
        h.count(|e| matches!(
            e,
            Event::MessageRejected {
                reason: RejectionReason::Blocked,
                ..
            }
        )),
        1
    );
    // Directional: a still reaches b.
    h.send(a, b, "hi b").await;
    h.process_all().await;
    assert_eq!(h.inbox(b), vec!["hi b"]);
}

#[tokio::test]
async fn given_a_message_accepted_before_the_block_then_it_is_still_delivered() {
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    h.send(b, a, "before").await;
    h.block(a, b).await;
    h.send(b, a, "after").await;
    h.process_all().await;
    assert_eq!(h.inbox(a), vec!["before"]);
}

#[tokio::test]
async fn given_an_unblock_then_later_messages_are_delivered() {
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    h.block(a, b).await;
    h.send(b, a, "blocked").await;
    let body = BlockUser {
        user_id: a.to_string(),
        blocked_user_id: b.to_string(),
    };
    h.handlers
        .unblock_user(a, body, None)
        .await
        .expect("unblocked");
    h.send(b, a, "welcome back").await;
    h.process_all().await;
    assert_eq!(h.inbox(a), vec!["welcome back"]);
}

#[tokio::test]
async fn given_a_redelivered_or_duplicated_item_then_it_is_delivered_once() {
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    h.send(a, b, "once").await;
    let items = h.direct.drain();
    assert_eq!(items.len(), 1);
    // Sequential redelivery, then two concurrent duplicates.
    h.processor.handle(&items[0]).await.expect("first");
    h.processor.handle(&items[0]).await.expect("redelivery");
    let (x, y) = tokio::join!(h.processor.handle(&items[0]), h.processor.handle(&items[0]));
    x.expect("duplicate");
    y.expect("duplicate");
    assert_eq!(h.inbox(b), vec!["once"]);
    assert_eq!(h.count(|e| matches!(e, Event::MessageDispatched { .. })), 1);
}

#[tokio::test]
async fn given_concurrent_duplicates_of_a_group_message_then_each_member_gets_it_once() {
    let h = harness();
    let (admin, m1, m2) = (h.user().await, h.user().await, h.user().await);
    let group = create_group(&h, admin, &[m1, m2]).await;
    send_group(&h, admin, group, "hey").await.expect("accepted");
    let item = h.group.drain().remove(0);
    let (x, y, z) = tokio::join!(
        h.processor.handle(&item),
        h.processor.handle(&item),
        h.processor.handle(&item)
    );
    x.and(y).and(z).expect("processed");
    assert_eq!(h.inbox(m1), vec!["hey"]);
    assert_eq!(h.inbox(m2), vec!["hey"]);
    assert!(
        h.inbox(admin).is_empty(),
        "the sender does not receive their own message"
    );
}

#[tokio::test]
async fn given_two_group_messages_processed_at_once_then_their_deliveries_take_turns_per_inbox() {
    let h = harness();
    let (alice, bob) = (h.user().await, h.user().await);
    let mut members = vec![bob];
    for _ in 0..4 {
        members.push(h.user().await);
    }
    let group = create_group(&h, alice, &members).await;
    send_group(&h, alice, group, "from alice")
        .await
        .expect("accepted");
    send_group(&h, bob, group, "from bob")
        .await
        .expect("accepted");
    let items = h.group.drain();

    let (first, second) =
        tokio::join!(h.processor.handle(&items[0]), h.processor.handle(&items[1]));
    first.and(second).expect("processed");

    for member in &members[1..] {
        let mut inbox = h.inbox(*member);
        inbox.sort();
        assert_eq!(inbox, vec!["from alice", "from bob"]);
        assert_eq!(
            h.store.conflicts_on(&StreamId::inbox(*member)),
            0,
            "two deliveries to one inbox raced for its next position"
        );
    }
}

async fn create_group(h: &Harness, admin: UserId, members: &[UserId]) -> GroupId {
    let body = CreateGroup {
        group_name: "friends".into(),
        creator_id: admin.to_string(),
        members: members.iter().map(ToString::to_string).collect(),
    };
    let created = h
        .handlers
        .create_group(admin, body, None)
        .await
        .expect("created");
    GroupId::parse(&created.group_id).expect("an id")
}

async fn send_group(
    h: &Harness,
    from: UserId,
    group: GroupId,
    text: &str,
) -> Result<Accepted, CommandError> {
    send_group_through(&h.handlers, from, group, text).await
}

async fn send_group_through(
    handlers: &CommandHandlers,
    from: UserId,
    group: GroupId,
    text: &str,
) -> Result<Accepted, CommandError> {
    let body = SendGroupMessage {
        sender_id: from.to_string(),
        group_id: group.to_string(),
        message: text.into(),
    };
    handlers.send_group_message(from, body, None).await
}

async fn membership(
    h: &Harness,
    actor: UserId,
    group: GroupId,
    user: UserId,
    add: bool,
) -> Result<Done, CommandError> {
    let body = GroupMember {
        group_id: group.to_string(),
        user_id: user.to_string(),
    };
    if add {
        h.handlers.add_user_to_group(actor, body, None).await
    } else {
        h.handlers.remove_user_from_group(actor, body, None).await
    }
}

#[tokio::test]
async fn group_messages_follow_membership_as_of_acceptance() {
    let h = harness();
    let (admin, early, late) = (h.user().await, h.user().await, h.user().await);
    let group = create_group(&h, admin, &[early]).await;
    send_group(&h, admin, group, "one").await.expect("accepted");
    // Added after "one" was accepted, even though "one" is processed later.
    membership(&h, admin, group, late, true)
        .await
        .expect("added");
    send_group(&h, admin, group, "two").await.expect("accepted");
    membership(&h, admin, group, early, false)
        .await
        .expect("removed");
    send_group(&h, admin, group, "three")
        .await
        .expect("accepted");
    h.process_all().await;
    assert_eq!(h.inbox(early), vec!["one", "two"]);
    assert_eq!(h.inbox(late), vec!["two", "three"]);
    // The removed member may no longer send.
    assert!(matches!(
        send_group(&h, early, group, "let me in").await,
        Err(CommandError::Forbidden(_))
    ));
}

#[tokio::test]
async fn a_group_message_skips_members_who_block_the_sender() {
    let h = harness();
    let (admin, blocker, other) = (h.user().await, h.user().await, h.user().await);
    let group = create_group(&h, admin, &[blocker, other]).await;
    h.block(blocker, admin).await;
    send_group(&h, admin, group, "hello all")
        .await
        .expect("accepted");
    send_group(&h, blocker, group, "from the blocker")
        .await
        .expect("accepted");
    h.process_all().await;
    assert!(h.inbox(blocker).is_empty());
    assert_eq!(h.inbox(other), vec!["hello all", "from the blocker"]);
    assert_eq!(h.inbox(admin), vec!["from the blocker"]);
}

#[tokio::test]
async fn membership_commands_check_roles() {
    let h = harness();
    let (admin, member, outsider) = (h.user().await, h.user().await, h.user().await);
    let group = create_group(&h, admin, &[member]).await;
    assert!(matches!(
        membership(&h, member, group, outsider, true).await,
        Err(CommandError::Forbidden(_))
    ));
    assert!(matches!(
        membership(&h, member, group, admin, false).await,
        Err(CommandError::Forbidden(_))
    ));
    assert!(matches!(
        membership(&h, admin, group, admin, false).await,
        Err(CommandError::Conflict(_))
    ));
    assert!(matches!(
        send_group(&h, outsider, group, "x").await,
        Err(CommandError::Forbidden(_))
    ));
    assert!(matches!(
        membership(&h, admin, GroupId::new_random(), member, true).await,
        Err(CommandError::NotFound(_))
    ));
    membership(&h, member, group, member, false)
        .await
        .expect("a member may leave");
}

#[tokio::test]
async fn creating_a_group_with_an_unknown_member_writes_nothing() {
    let h = harness();
    let admin = h.user().await;
    let before = h.store.log().len();
    let body = CreateGroup {
        group_name: "g".into(),
        creator_id: admin.to_string(),
        members: vec![UserId::new_random().to_string()],
    };
    assert!(matches!(
        h.handlers.create_group(admin, body, None).await,
        Err(CommandError::NotFound(_))
    ));
    assert_eq!(h.store.log().len(), before);
}

#[tokio::test]
async fn refused_sends_write_nothing() {
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    let before = h.store.log().len();
    let send = |sender: UserId, receiver: String, message: String| SendMessage {
        sender_id: sender.to_string(),
        receiver_id: receiver,
        message,
    };
    let cases = vec![
        (b, send(a, b.to_string(), "impersonation".into())),
        (
            a,
            send(a, UserId::new_random().to_string(), "unknown".into()),
        ),
        (a, send(a, "not-an-id".into(), "malformed".into())),
        (a, send(a, b.to_string(), String::new())),
        (a, send(a, b.to_string(), "x".repeat(4097))),
    ];
    let mut codes = Vec::new();
    for (actor, body) in cases {
        codes.push(
            h.handlers
                .send_message(actor, body, None)
                .await
                .expect_err("refused")
                .status(),
        );
    }
    assert_eq!(codes, vec![403, 404, 400, 400, 413]);
    assert_eq!(h.store.log().len(), before);
    assert!(h.direct.drain().is_empty());
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_same_response_and_writes_nothing() {
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    let body = || SendMessage {
        sender_id: a.to_string(),
        receiver_id: b.to_string(),
        message: "once".into(),
    };
    let first = h
        .handlers
        .send_message(a, body(), Some("key-1"))
        .await
        .expect("accepted");
    let events = h.store.log().len();
    let again = h
        .handlers
        .send_message(a, body(), Some("key-1"))
        .await
        .expect("replayed");
    assert_eq!(first, again);
    assert_eq!(h.store.log().len(), events);
    let mut other = body();
    other.message = "different".into();
    assert!(matches!(
        h.handlers.send_message(a, other, Some("key-1")).await,
        Err(CommandError::Conflict(_))
    ));
}

#[tokio::test]
async fn an_idempotent_registration_returns_the_same_working_token() {
    let h = harness();
    let first = h
        .handlers
        .register(Register::default(), Some("reg-1"))
        .await
        .expect("registered");
    let again = h
        .handlers
        .register(Register::default(), Some("reg-1"))
        .await
        .expect("replayed");
    assert_eq!(first, again);
    assert_eq!(h.count(|e| matches!(e, Event::UserRegistered { .. })), 1);
    let user = h
        .handlers
        .authenticate(&again.token)
        .await
        .expect("token works");
    assert_eq!(user.to_string(), first.user_id);
}

#[tokio::test]
async fn unknown_and_malformed_tokens_are_unauthenticated() {
    let h = harness();
    h.user().await;
    for token in [
        "",
        "nope",
        &crate::auth::encode_token(&crate::auth::new_token()),
    ] {
        assert_eq!(
            h.handlers.authenticate(token).await,
            Err(CommandError::Unauthenticated)
        );
    }
}

#[tokio::test]
async fn identify_names_the_tokens_id_as_its_events_do_until_it_is_revoked() {
    let h = harness();
    let registered = h
        .handlers
        .register(Register::default(), None)
        .await
        .expect("registered");
    let identity = h
        .handlers
        .identify(&registered.token)
        .await
        .expect("valid token");
    assert_eq!(identity.user.to_string(), registered.user_id);
    let issued: Vec<_> = h
        .store
        .log()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::TokenIssued { token_id, .. } => Some(token_id),
            _ => None,
        })
        .collect();
    assert_eq!(issued, vec![identity.token_id]);

    h.handlers
        .revoke_token(&registered.token, crate::RevokeToken::default(), None)
        .await
        .expect("revoked");
    assert_eq!(
        h.handlers.identify(&registered.token).await,
        Err(CommandError::Unauthenticated)
    );
    assert_eq!(
        h.count(
            |e| matches!(e, Event::TokenRevoked { token_id, .. } if *token_id == identity.token_id)
        ),
        1
    );
}

#[tokio::test]
async fn one_senders_messages_get_increasing_send_times() {
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    for i in 0..20 {
        h.send(a, b, &i.to_string()).await;
    }
    let times: Vec<Timestamp> = h
        .store
        .log()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::DirectMessageSent { sent_at, .. } => Some(sent_at),
            _ => None,
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn the_sweep_item_is_processed_like_the_original() {
    // A work item re-enqueued by the sweep is the same recorded event; processing it after
    // the original changes nothing.
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    h.send(a, b, "x").await;
    let item: WorkItem = h.direct.drain().remove(0);
    h.processor.handle(&item).await.expect("processed");
    let copy = WorkItem {
        sent: item.sent.clone(),
    };
    h.processor.handle(&copy).await.expect("processed again");
    assert_eq!(h.inbox(b).len(), 1);
}

#[tokio::test]
async fn given_a_delivery_recorded_without_its_outcome_then_only_the_outcome_is_added() {
    // What a build that appended a direct message's delivery and outcome apart could leave.
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    h.send(a, b, "half done").await;
    let item = h.direct.drain().remove(0);
    h.deliver_by_hand(&item, b).await;

    h.processor.handle(&item).await.expect("finished");

    assert_eq!(h.inbox(b), vec!["half done"]);
    assert_eq!(h.count(|e| matches!(e, Event::MessageDispatched { .. })), 1);
}

#[tokio::test]
async fn given_later_messages_processed_first_then_the_earlier_ones_are_delivered_before_them() {
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    for text in ["1", "2", "3"] {
        h.send(a, b, text).await;
    }
    let mut items = h.direct.drain();
    let last = items.pop().expect("three items");
    h.processor.handle(&last).await.expect("processed");
    assert_eq!(h.inbox(b), vec!["1", "2", "3"]);
    for earlier in items {
        h.processor
            .handle(&earlier)
            .await
            .expect("redone as a no-op");
    }
    assert_eq!(h.inbox(b), vec!["1", "2", "3"]);
}

#[tokio::test]
async fn given_a_senders_message_settled_here_then_the_next_one_skips_the_walk_back() {
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    h.send(a, b, "1").await;
    h.send(a, b, "2").await;
    let items = h.direct.drain();
    let outbox = StreamId::outbox(a);
    let reads_before = h.store.reads_of(&outbox);

    h.processor.handle(&items[0]).await.expect("first");
    h.processor.handle(&items[1]).await.expect("second");

    // No read of the outbox: the first message has no predecessor and the second's is known
    // settled. A processor that did not settle it (another Lambda instance) reads it once.
    assert_eq!(h.store.reads_of(&outbox), reads_before);
    assert_eq!(h.inbox(b), vec!["1", "2"]);
    h.send(a, b, "3").await;
    let reads_before = h.store.reads_of(&outbox);
    let third = h.direct.drain().remove(0);
    Processor::new(h.store.clone())
        .handle(&third)
        .await
        .expect("third");
    assert_eq!(h.store.reads_of(&outbox), reads_before + 1);
    assert_eq!(h.inbox(b), vec!["1", "2", "3"]);
}

#[tokio::test]
async fn given_a_sender_nobody_blocks_then_delivery_reads_no_blocks() {
    let h = harness();
    let (a, b, c) = (h.user().await, h.user().await, h.user().await);
    let blocks = StreamId::blocks_of(a);
    h.send(a, b, "never blocked").await;
    let reads_before = h.store.reads_of(&blocks);
    h.process_all().await;
    assert_eq!(h.store.reads_of(&blocks), reads_before);

    // Once blocked (by somebody else), the pinned blocks are read and honoured.
    h.block(c, a).await;
    h.send(a, b, "still delivered").await;
    let reads_before = h.store.reads_of(&blocks);
    h.process_all().await;
    assert_eq!(h.store.reads_of(&blocks), reads_before + 1);
    assert_eq!(h.inbox(b), vec!["never blocked", "still delivered"]);
}

#[tokio::test]
async fn given_a_settled_direct_message_when_redelivered_then_one_read_settles_it() {
    let h = harness();
    let (a, b) = (h.user().await, h.user().await);
    let message_id = h.send(a, b, "hi").await;
    let outcome = StreamId::message(MessageId::parse(&message_id).expect("an id"));
    let item = h.direct.drain().remove(0);
    h.processor.handle(&item).await.expect("processed");
    let inbox = StreamId::inbox(b);
    let counts = |h: &Harness| {
        (
            h.store.reads_of(&outcome),
            h.store.claim_reads(),
            h.store.reads_of(&inbox),
            h.store.conflicts_on(&outcome),
        )
    };
    let (outcome_reads, claim_reads, inbox_reads, conflicts) = counts(&h);

    h.processor.handle(&item).await.expect("redelivered");

    // The sweep re-enqueues settled messages by the thousand while the projector lags; each
    // must cost one read, not a claim read, an inbox read and a refused write.
    assert_eq!(
        counts(&h),
        (outcome_reads + 1, claim_reads, inbox_reads, conflicts)
    );
    assert_eq!(h.inbox(b), vec!["hi"]);
}

#[tokio::test]
async fn given_a_group_message_then_its_deliveries_read_no_claims_and_skip_members_already_served()
{
    let h = harness();
    let (admin, m1, m2, m3) = (
        h.user().await,
        h.user().await,
        h.user().await,
        h.user().await,
    );
    let group = create_group(&h, admin, &[m1, m2, m3]).await;
    send_group(&h, admin, group, "hey").await.expect("accepted");
    let item = h.group.drain().remove(0);
    // What a processing cut off after its first delivery leaves: m1 served, no outcome.
    h.deliver_by_hand(&item, m1).await;
    let claim_reads = h.store.claim_reads();

    h.processor.handle(&item).await.expect("processed");
    h.processor.handle(&item).await.expect("redelivered");

    assert_eq!(
        h.store.claim_reads(),
        claim_reads,
        "a delivery read a claim"
    );
    for member in [m1, m2, m3] {
        assert_eq!(h.inbox(member), vec!["hey"]);
    }
    assert_eq!(h.count(|e| matches!(e, Event::MessageDispatched { .. })), 1);
}

#[tokio::test]
async fn given_a_processor_remembering_inbox_ends_then_it_reads_an_end_only_when_it_does_not_know_it(
) {
    let h = harness();
    let remembering = Processor::new(h.store.clone()).remembering_inbox_ends();
    let (a, b, c) = (h.user().await, h.user().await, h.user().await);
    let inbox = StreamId::inbox(b);
    h.send(a, b, "1").await;
    h.send(a, b, "2").await;
    let reads_before = h.store.reads_of(&inbox);
    for item in h.direct.drain() {
        remembering.handle(&item).await.expect("processed");
    }
    assert_eq!(
        h.store.reads_of(&inbox),
        reads_before + 1,
        "the second delivery read the end"
    );

    // Another process delivers to the same inbox: the remembered end is stale.
    h.send(c, b, "3").await;
    h.process_all().await;
    h.send(a, b, "4").await;
    let (reads_before, conflicts_before) = (h.store.reads_of(&inbox), h.store.conflicts_on(&inbox));
    for item in h.direct.drain() {
        remembering.handle(&item).await.expect("processed");
    }
    assert_eq!(h.store.conflicts_on(&inbox), conflicts_before + 1);
    assert_eq!(h.store.reads_of(&inbox), reads_before + 1);
    assert_eq!(h.inbox(b), vec!["1", "2", "3", "4"]);
}

#[tokio::test]
async fn given_a_processor_remembering_inbox_ends_then_concurrent_duplicates_still_deliver_once() {
    let h = harness();
    let remembering = Processor::new(h.store.clone()).remembering_inbox_ends();
    let (admin, m1, m2) = (h.user().await, h.user().await, h.user().await);
    let group = create_group(&h, admin, &[m1, m2]).await;
    h.send(admin, m1, "direct").await;
    send_group(&h, admin, group, "group")
        .await
        .expect("accepted");
    let items: Vec<WorkItem> = h
        .direct
        .drain()
        .into_iter()
        .chain(h.group.drain())
        .collect();
    for _ in 0..2 {
        let (x, y) = tokio::join!(
            async {
                for item in &items {
                    remembering.handle(item).await?;
                }
                Ok::<(), ProcessError>(())
            },
            async {
                for item in items.iter().rev() {
                    remembering.handle(item).await?;
                }
                Ok(())
            }
        );
        x.and(y).expect("processed");
    }
    assert_eq!(h.inbox(m1), vec!["direct", "group"]);
    assert_eq!(h.inbox(m2), vec!["group"]);
    assert_eq!(h.count(|e| matches!(e, Event::MessageDispatched { .. })), 2);
}

#[tokio::test]
async fn a_group_message_is_delivered_to_as_many_members_at_once_as_the_processor_allows() {
    for (chosen, expected) in [(None, 16), (Some(20), 20), (Some(5), 5)] {
        let h = harness();
        let admin = h.user().await;
        let mut members = Vec::new();
        for _ in 0..24 {
            members.push(h.user().await);
        }
        let group = create_group(&h, admin, &members).await;
        send_group(&h, admin, group, "all").await.expect("accepted");
        let item = h.group.drain().remove(0);
        let processor = match chosen {
            None => Processor::new(h.store.clone()),
            Some(at_once) => Processor::new(h.store.clone()).delivering_at_once(at_once),
        };
        let before = h.store.most_concurrent_appends();
        assert_eq!(before, 1, "the setup appends one at a time");

        processor.handle(&item).await.expect("processed");

        assert_eq!(h.store.most_concurrent_appends(), expected);
        for member in &members {
            assert_eq!(h.inbox(*member), vec!["all"]);
        }
    }
}

/// Adds and removes `user` in turn, `changes` times (starting with an add).
async fn churn(h: &Harness, admin: UserId, group: GroupId, user: UserId, changes: usize) {
    for change in 0..changes {
        membership(h, admin, group, user, change % 2 == 0)
            .await
            .expect("membership changed");
    }
}

#[tokio::test]
async fn given_a_group_with_a_long_membership_history_then_a_group_message_reads_only_its_tail() {
    let h = harness();
    let (admin, stayer, comer) = (h.user().await, h.user().await, h.user().await);
    let group = create_group(&h, admin, &[stayer]).await;
    // Version 251: the snapshot at 200, then 51 changes; `comer` was removed last.
    churn(&h, admin, group, comer, 250).await;
    let stream = StreamId::group(group);
    let before = h.store.events_read_of(&stream);

    send_group(&h, admin, group, "hello")
        .await
        .expect("accepted");
    h.process_all().await;

    // The handler and the processor each read the 51 events after the snapshot, not 251.
    assert_eq!(h.store.events_read_of(&stream) - before, 2 * 51);
    assert_eq!(h.inbox(stayer), vec!["hello"]);
    assert!(h.inbox(comer).is_empty());

    // Another process, which has never seen the group, first asks where its stream ends.
    let other = handlers_over(&h.store, &h.direct, &h.group);
    let before = h.store.events_read_of(&stream);
    send_group_through(&other, admin, group, "from elsewhere")
        .await
        .expect("accepted");
    assert!(h.store.events_read_of(&stream) - before <= 1 + 51);
}

#[tokio::test]
async fn given_a_message_accepted_before_a_snapshot_then_it_is_delivered_as_of_its_acceptance() {
    let h = harness();
    let (admin, stayer, comer) = (h.user().await, h.user().await, h.user().await);
    let group = create_group(&h, admin, &[stayer]).await;
    churn(&h, admin, group, comer, 198).await; // version 199, `comer` out
    send_group(&h, admin, group, "before")
        .await
        .expect("accepted");
    // Version 200 (snapshotted) removes `stayer`, 201 brings `comer` back.
    membership(&h, admin, group, stayer, false)
        .await
        .expect("removed");
    membership(&h, admin, group, comer, true)
        .await
        .expect("added");
    send_group(&h, admin, group, "after")
        .await
        .expect("accepted");

    h.process_all().await;

    assert_eq!(h.inbox(stayer), vec!["before"]);
    assert_eq!(h.inbox(comer), vec!["after"]);
    assert!(matches!(
        send_group(&h, stayer, group, "still here?").await,
        Err(CommandError::Forbidden(_))
    ));
}

#[tokio::test]
async fn given_a_group_history_written_without_snapshots_then_it_is_folded_from_its_start() {
    let h = harness();
    let (admin, stayer, comer) = (h.user().await, h.user().await, h.user().await);
    let group = create_group(&h, admin, &[stayer]).await;
    // 150 changes appended as an older build did: no snapshot claim at 100.
    let stream = StreamId::group(group);
    for version in 1..151u64 {
        let event = if version % 2 == 1 {
            Event::MemberAdded {
                group_id: group,
                user_id: comer,
                by: admin,
            }
        } else {
            Event::MemberRemoved {
                group_id: group,
                user_id: comer,
                by: admin,
            }
        };
        let request = AppendRequest::single(stream.clone(), version, vec![NewEvent::new(event)]);
        h.store.append(request).await.expect("appended");
    }
    // Version 151: `comer` is out. Twice, so that the second send knows the version.
    send_group(&h, admin, group, "one").await.expect("accepted");
    send_group(&h, admin, group, "two").await.expect("accepted");
    h.process_all().await;

    assert_eq!(h.inbox(stayer), vec!["one", "two"]);
    assert!(h.inbox(comer).is_empty());
}

#[tokio::test]
async fn given_two_changes_racing_for_a_snapshot_version_then_both_apply() {
    // The loser's append breaks the stream's version and the snapshot's claim: either may be
    // the error it gets.
    for store in [
        MemoryStore::default(),
        MemoryStore::reporting_claims_first(),
    ] {
        two_changes_race_for_a_snapshot_version(harness_over(store)).await;
    }
}

async fn two_changes_race_for_a_snapshot_version(h: Harness) {
    let (admin, comer, first, second) = (
        h.user().await,
        h.user().await,
        h.user().await,
        h.user().await,
    );
    let group = create_group(&h, admin, &[]).await;
    churn(&h, admin, group, comer, 98).await; // version 99: the next change is snapshotted

    let (a, b) = tokio::join!(
        membership(&h, admin, group, first, true),
        membership(&h, admin, group, second, true)
    );
    a.expect("first added");
    b.expect("second added");
    send_group(&h, admin, group, "both")
        .await
        .expect("accepted");
    h.process_all().await;

    assert_eq!(h.inbox(first), vec!["both"]);
    assert_eq!(h.inbox(second), vec!["both"]);
    // They did race: one append was refused.
    assert!(h.store.conflicts_on(&StreamId::group(group)) + h.store.claims_refused() >= 1);
}
