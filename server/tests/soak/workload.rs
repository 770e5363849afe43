//! The soak workload: concurrent clients registering, sending direct and group messages,
//! blocking and unblocking, changing memberships and polling for new messages through the real
//! command handlers, retrying transient failures with the same `Idempotency-Key` as a real client
//! would, and recording what they were told and when.

use messaging_commands::{
    BlockUser, CommandError, CommandHandlers, CreateGroup, GetNewMessages, GroupMember, Register,
    SendGroupMessage, SendMessage,
};
use messaging_events::{GroupId, MessageId, UserId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A small deterministic RNG (SplitMix64) for the clients' choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// What a block or membership change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// `blocker` blocks `blocked` (true) or not.
    Block { blocker: UserId, blocked: UserId },
    /// `user` is a member of `group` (true) or not.
    Member { group: GroupId, user: UserId },
}

/// One acknowledged-or-not change of a [`Key`]: asked at `start`, acknowledged at `end`
/// (`None`: never acknowledged, so it may or may not have happened).
#[derive(Debug, Clone)]
pub struct Change {
    pub key: Key,
    pub value: bool,
    pub start: Instant,
    pub end: Option<Instant>,
}

/// Where a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Direct(UserId),
    Group(GroupId),
}

/// A send that got its 202, with when it was asked and answered.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub message_id: MessageId,
    pub sender: UserId,
    pub target: Target,
    pub text: String,
    pub start: Instant,
    pub end: Instant,
}

/// One user's view of get-new-messages: the cursor of the last answer, whether the last call
/// failed (the next one then repeats from that cursor with `since`), and every message
/// returned, in order.
#[derive(Debug, Default)]
pub struct Poller {
    pub cursor: Option<String>,
    pub repeat: bool,
    pub returned: Vec<MessageId>,
    pub calls: usize,
    pub since_calls: usize,
}

/// Everything the clients did and were told.
#[derive(Default)]
pub struct Record {
    pub users: Mutex<Vec<UserId>>,
    /// Groups and their admins.
    pub groups: Mutex<Vec<(GroupId, UserId)>>,
    /// Acknowledged membership at group creation.
    pub initial_members: Mutex<HashMap<GroupId, BTreeSet<UserId>>>,
    pub changes: Mutex<Vec<Change>>,
    pub accepted: Mutex<Vec<Accepted>>,
    pub pollers: Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<Poller>>>>,
    /// Answers by kind: "send 202", "send 403", "block 503 then 200", ...
    pub answers: Mutex<BTreeMap<String, u64>>,
    /// 500s: an injected store fault must be a 503, never an internal error.
    pub internal_errors: Mutex<Vec<String>>,
}

impl Record {
    fn answer(&self, what: String) {
        *self.answers.lock().unwrap().entry(what).or_default() += 1;
    }

    fn add_user(&self, user: UserId) {
        self.users.lock().unwrap().push(user);
        self.pollers.lock().unwrap().insert(user, Arc::default());
    }

    pub fn users(&self) -> Vec<UserId> {
        self.users.lock().unwrap().clone()
    }

    pub fn poller(&self, user: UserId) -> Arc<tokio::sync::Mutex<Poller>> {
        self.pollers.lock().unwrap()[&user].clone()
    }
}

/// How many attempts a client makes before giving up on a request.
const ATTEMPTS: u32 = 12;

/// Calls `f` until it succeeds or fails for a reason other than a transient one (503), like a
/// client retrying with the same idempotency key. Returns the final answer and how many
/// transient failures came before it.
pub async fn retry<T, F, Fut>(
    record: &Record,
    what: &str,
    mut f: F,
) -> (Result<T, CommandError>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CommandError>>,
{
    let mut failures = 0;
    loop {
        match f().await {
            Err(error @ (CommandError::Unavailable(_) | CommandError::Internal(_)))
                if failures + 1 < ATTEMPTS =>
            {
                if let CommandError::Internal(text) = &error {
                    record
                        .internal_errors
                        .lock()
                        .unwrap()
                        .push(format!("{what}: {text}"));
                }
                failures += 1;
                tokio::time::sleep(Duration::from_millis(5 * u64::from(failures))).await;
            }
            result => {
                let status = match &result {
                    Ok(_) => "ok".to_string(),
                    Err(e) => e.status().to_string(),
                };
                let retried = if failures > 0 { " after 503s" } else { "" };
                record.answer(format!("{what} {status}{retried}"));
                return (result, failures);
            }
        }
    }
}

/// The workload's size.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub initial_users: usize,
    pub max_users: usize,
    pub groups: usize,
    pub members_per_group: usize,
    pub clients: usize,
    pub ops_per_client: usize,
}

/// Registers the initial users and creates the groups (with faults on, retrying).
pub async fn set_up(handlers: &CommandHandlers, record: &Record, size: Size, rng: &mut Rng) {
    for _ in 0..size.initial_users {
        register(handlers, record).await;
    }
    let users = record.users();
    for g in 0..size.groups {
        let admin = users[g % users.len()];
        let mut members = BTreeSet::new();
        while members.len() < size.members_per_group {
            let user = rng.pick(&users);
            if user != admin {
                members.insert(user);
            }
        }
        let body = CreateGroup {
            group_name: format!("group {g}"),
            creator_id: admin.to_string(),
            members: members.iter().map(|m| m.to_string()).collect(),
        };
        let key = uuid::Uuid::new_v4().to_string();
        let (created, _) = retry(record, "create-group", || {
            handlers.create_group(admin, body.clone(), Some(&key))
        })
        .await;
        let created = created.expect("a group is created");
        let group = GroupId::parse(&created.group_id).expect("a group id");
        members.insert(admin);
        record.groups.lock().unwrap().push((group, admin));
        record
            .initial_members
            .lock()
            .unwrap()
            .insert(group, members);
    }
}

async fn register(handlers: &CommandHandlers, record: &Record) -> Option<UserId> {
    let key = uuid::Uuid::new_v4().to_string();
    let (registered, _) = retry(record, "register", || {
        handlers.register(Register::default(), Some(&key))
    })
    .await;
    let registered = registered.ok()?;
    let user = UserId::parse(&registered.user_id).expect("a user id");
    record.add_user(user);
    Some(user)
}

/// One client: `size.ops_per_client` random operations.
pub async fn client(handlers: CommandHandlers, record: Arc<Record>, size: Size, seed: u64) {
    let mut rng = Rng::new(seed);
    for step in 0..size.ops_per_client {
        // Spread the work over the visibility timeouts and sweeps of the fault phase.
        tokio::time::sleep(Duration::from_millis(rng.below(20) as u64)).await;
        let users = record.users();
        let groups = record.groups.lock().unwrap().clone();
        let roll = rng.below(100);
        let text = format!("c{seed:x}-{step}");
        match roll {
            0..=34 => {
                let sender = rng.pick(&users);
                let receiver = rng.pick(&users);
                if sender != receiver {
                    send_direct(&handlers, &record, sender, receiver, text).await;
                }
            }
            35..=56 => {
                let (group, _) = rng.pick(&groups);
                send_group(&handlers, &record, &mut rng, group, text).await;
            }
            57..=66 => {
                let blocker = rng.pick(&users);
                let blocked = rng.pick(&users);
                if blocker != blocked {
                    let block = rng.below(2) == 0;
                    change_block(&handlers, &record, blocker, blocked, block).await;
                }
            }
            67..=76 => {
                let (group, admin) = rng.pick(&groups);
                let user = rng.pick(&users);
                if user != admin {
                    let add = rng.below(2) == 0;
                    // The admin adds and removes; a member may also leave by itself.
                    let actor = if !add && rng.below(2) == 0 {
                        user
                    } else {
                        admin
                    };
                    change_membership(&handlers, &record, actor, group, user, add).await;
                }
            }
            77..=96 => {
                let user = rng.pick(&users);
                let limit = (rng.below(3) == 0).then(|| (1 + rng.below(5)).to_string());
                poll(&handlers, &record, user, limit).await;
            }
            _ => {
                if users.len() < size.max_users {
                    register(&handlers, &record).await;
                }
            }
        }
    }
}

async fn send_direct(
    handlers: &CommandHandlers,
    record: &Record,
    sender: UserId,
    receiver: UserId,
    text: String,
) {
    let body = SendMessage {
        sender_id: sender.to_string(),
        receiver_id: receiver.to_string(),
        message: text.clone(),
    };
    let key = uuid::Uuid::new_v4().to_string();
    let start = Instant::now();
    let (result, _) = retry(record, "send-message", || {
        handlers.send_message(sender, body.clone(), Some(&key))
    })
    .await;
    if let Ok(accepted) = result {
        record.accepted.lock().unwrap().push(Accepted {
            message_id: MessageId::parse(&accepted.message_id).expect("a message id"),
            sender,
            target: Target::Direct(receiver),
            text,
            start,
            end: Instant::now(),
        });
    }
}

async fn send_group(
    handlers: &CommandHandlers,
    record: &Record,
    rng: &mut Rng,
    group: GroupId,
    text: String,
) {
    // Mostly a member as far as the acknowledged changes tell, sometimes anybody (a 403).
    let users = record.users();
    let sender = if rng.below(5) == 0 {
        rng.pick(&users)
    } else {
        let members = likely_members(record, group);
        rng.pick(&members.into_iter().collect::<Vec<_>>())
    };
    let body = SendGroupMessage {
        sender_id: sender.to_string(),
        group_id: group.to_string(),
        message: text.clone(),
    };
    let key = uuid::Uuid::new_v4().to_string();
    let start = Instant::now();
    let (result, _) = retry(record, "send-group-message", || {
        handlers.send_group_message(sender, body.clone(), Some(&key))
    })
    .await;
    if let Ok(accepted) = result {
        record.accepted.lock().unwrap().push(Accepted {
            message_id: MessageId::parse(&accepted.message_id).expect("a message id"),
            sender,
            target: Target::Group(group),
            text,
            start,
            end: Instant::now(),
        });
    }
}

/// Members after the acknowledged changes, in the order they were acknowledged.
fn likely_members(record: &Record, group: GroupId) -> BTreeSet<UserId> {
    let mut members = record.initial_members.lock().unwrap()[&group].clone();
    let mut changes: Vec<Change> = record.changes.lock().unwrap().clone();
    changes.sort_by_key(|c| c.end);
    for change in changes {
        if let (Key::Member { group: g, user }, Some(_)) = (change.key, change.end) {
            if g == group {
                if change.value {
                    members.insert(user);
                } else {
                    members.remove(&user);
                }
            }
        }
    }
    members
}

async fn change_block(
    handlers: &CommandHandlers,
    record: &Record,
    blocker: UserId,
    blocked: UserId,
    block: bool,
) {
    let body = BlockUser {
        user_id: blocker.to_string(),
        blocked_user_id: blocked.to_string(),
    };
    let key = uuid::Uuid::new_v4().to_string();
    let start = Instant::now();
    let what = if block { "block-user" } else { "unblock-user" };
    let (result, _) = retry(record, what, || {
        let body = body.clone();
        let key = &key;
        async move {
            if block {
                handlers.block_user(blocker, body, Some(key)).await
            } else {
                handlers.unblock_user(blocker, body, Some(key)).await
            }
        }
    })
    .await;
    let end = match result {
        Ok(_) => Some(Instant::now()),
        Err(CommandError::Unavailable(_) | CommandError::Internal(_)) => None,
        // Refused: nothing was written.
        Err(_) => return,
    };
    record.changes.lock().unwrap().push(Change {
        key: Key::Block { blocker, blocked },
        value: block,
        start,
        end,
    });
}

async fn change_membership(
    handlers: &CommandHandlers,
    record: &Record,
    actor: UserId,
    group: GroupId,
    user: UserId,
    add: bool,
) {
    let body = GroupMember {
        group_id: group.to_string(),
        user_id: user.to_string(),
    };
    let key = uuid::Uuid::new_v4().to_string();
    let start = Instant::now();
    let what = if add {
        "add-user-to-group"
    } else {
        "remove-user-from-group"
    };
    let (result, _) = retry(record, what, || {
        let body = body.clone();
        let key = &key;
        async move {
            if add {
                handlers.add_user_to_group(actor, body, Some(key)).await
            } else {
                handlers
                    .remove_user_from_group(actor, body, Some(key))
                    .await
            }
        }
    })
    .await;
    let end = match result {
        Ok(_) => Some(Instant::now()),
        Err(CommandError::Unavailable(_) | CommandError::Internal(_)) => None,
        Err(_) => return,
    };
    record.changes.lock().unwrap().push(Change {
        key: Key::Member { group, user },
        value: add,
        start,
        end,
    });
}

/// One get-new-messages call of `user`, repeating the previous cursor with `since` when the
/// previous call failed (its answer may have been lost after the marker moved).
pub async fn poll(
    handlers: &CommandHandlers,
    record: &Record,
    user: UserId,
    limit: Option<String>,
) -> usize {
    let poller = record.poller(user);
    let mut poller = poller.lock().await;
    let since = if poller.repeat {
        poller.cursor.clone()
    } else {
        None
    };
    let query = GetNewMessages {
        user_id: user.to_string(),
        since: since.clone(),
        limit,
    };
    poller.calls += 1;
    if since.is_some() {
        poller.since_calls += 1;
    }
    // One attempt: a failure is remembered and the next call repeats with `since`.
    match handlers.get_new_messages(user, query).await {
        Ok(answer) => {
            record.answer(format!(
                "get-new-messages{} ok",
                if since.is_some() { " since" } else { "" }
            ));
            let n = answer.messages.len();
            // A client recovering a lost answer pages on with `since` until it has caught up
            // (an empty page): a shorter page than the lost one leaves messages between its
            // cursor and the marker that only `since` returns (seed 156040512 found this
            // when the recovery switched back to plain calls too early).
            poller.repeat = since.is_some() && n > 0;
            poller.cursor = Some(answer.cursor);
            poller
                .returned
                .extend(answer.messages.into_iter().map(|m| m.message_id));
            n
        }
        Err(error) => {
            record.answer(format!("get-new-messages {}", error.status()));
            if let CommandError::Internal(text) = &error {
                record
                    .internal_errors
                    .lock()
                    .unwrap()
                    .push(format!("get-new-messages: {text}"));
            }
            // A first call has no cursor to repeat from: the marker it may have moved is lost
            // to it only if it had returned something, which a fresh user (marker 0) repeats
            // with `since` = the start.
            if poller.cursor.is_none() {
                poller.cursor = Some(messaging_projections::Cursor::Inbox(0).encode());
            }
            poller.repeat = true;
            0
        }
    }
}
