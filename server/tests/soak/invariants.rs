//! The invariants of PRODUCT.md, checked after a soak against the event log (read through the
//! unfaulted store), the read models and what the clients were told.

use super::workload::{Accepted, Change, Key, Record, Target};
use messaging_commands::{BlockersState, CommandHandlers, GetAllMessages, GroupState};
use messaging_events::{Event, EventStore, GroupId, MessageId, StreamId, Timestamp, UserId};
use messaging_projections::{MessageView, ReadStore};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// An accepted message as the event log has it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub view: MessageView,
    pub outbox_version: u64,
    /// Who should get it, by the state pinned at acceptance.
    pub eligible: BTreeSet<UserId>,
}

/// What the event log says, for the users and groups of the run.
#[derive(Debug, Default)]
pub struct Log {
    pub sent: Vec<Sent>,
    pub outcomes: HashMap<MessageId, Vec<Event>>,
    /// Each inbox: (position, delivered message) by position.
    pub inboxes: HashMap<UserId, Vec<(u64, MessageView)>>,
}

fn view_of(event: &Event) -> Option<MessageView> {
    Some(match event {
        Event::DirectMessageSent {
            message_id,
            sender,
            receiver,
            text,
            sent_at,
            ..
        } => MessageView {
            message_id: *message_id,
            sender_id: *sender,
            receiver_id: Some(*receiver),
            group_id: None,
            message: text.clone(),
            sent_at: *sent_at,
        },
        Event::GroupMessageSent {
            message_id,
            sender,
            group_id,
            text,
            sent_at,
            ..
        } => MessageView {
            message_id: *message_id,
            sender_id: *sender,
            receiver_id: None,
            group_id: Some(*group_id),
            message: text.clone(),
            sent_at: *sent_at,
        },
        Event::MessageDelivered {
            message_id,
            sender,
            receiver,
            group_id,
            text,
            sent_at,
            ..
        } => MessageView {
            message_id: *message_id,
            sender_id: *sender,
            receiver_id: *receiver,
            group_id: *group_id,
            message: text.clone(),
            sent_at: *sent_at,
        },
        _ => return None,
    })
}

/// Reads the log of every user of the run.
pub async fn read_log(store: &Arc<dyn EventStore>, users: &[UserId]) -> Result<Log, String> {
    let e = |error: messaging_events::StoreError| error.to_string();
    let mut log = Log::default();
    for user in users {
        for recorded in store
            .read_stream(&StreamId::outbox(*user), 0, None)
            .await
            .map_err(e)?
        {
            let Some(view) = view_of(&recorded.event) else {
                return Err(format!("unexpected event in an outbox: {recorded:?}"));
            };
            let blocks_version = match &recorded.event {
                Event::DirectMessageSent { blocks_version, .. }
                | Event::GroupMessageSent { blocks_version, .. } => *blocks_version,
                _ => 0,
            };
            let blockers = store
                .read_stream(
                    &StreamId::blocks_of(view.sender_id),
                    0,
                    Some(blocks_version),
                )
                .await
                .map_err(e)?;
            let blockers = BlockersState::from_events(blockers.iter().map(|r| &r.event));
            let eligible: BTreeSet<UserId> = match &recorded.event {
                Event::GroupMessageSent {
                    group_id,
                    group_version,
                    sender,
                    ..
                } => {
                    let events = store
                        .read_stream(&StreamId::group(*group_id), 0, Some(*group_version))
                        .await
                        .map_err(e)?;
                    let group = GroupState::from_events(events.iter().map(|r| &r.event));
                    if group.is_member(*sender) {
                        group
                            .members
                            .iter()
                            .copied()
                            .filter(|m| m != sender && !blockers.is_blocked_by(*m))
                            .collect()
                    } else {
                        BTreeSet::new()
                    }
                }
                Event::DirectMessageSent { receiver, .. } => {
                    if blockers.is_blocked_by(*receiver) {
                        BTreeSet::new()
                    } else {
                        BTreeSet::from([*receiver])
                    }
                }
                _ => BTreeSet::new(),
            };
            let outcome = store
                .read_stream(&StreamId::message(view.message_id), 0, None)
                .await
                .map_err(e)?;
            log.outcomes.insert(
                view.message_id,
                outcome.into_iter().map(|r| r.event).collect(),
            );
            log.sent.push(Sent {
                view,
                outbox_version: recorded.version,
                eligible,
            });
        }
        let inbox = store
            .read_stream(&StreamId::inbox(*user), 0, None)
            .await
            .map_err(e)?;
        let mut entries = Vec::new();
        for recorded in inbox {
            match (&recorded.event, view_of(&recorded.event)) {
                (Event::MessageDelivered { recipient, .. }, Some(view)) if recipient == user => {
                    entries.push((recorded.version, view))
                }
                _ => return Err(format!("unexpected event in an inbox: {recorded:?}")),
            }
        }
        log.inboxes.insert(*user, entries);
    }
    Ok(log)
}

/// Every read of the read models, paged.
async fn inbox_model(
    read: &Arc<dyn ReadStore>,
    user: UserId,
) -> Result<Vec<(u64, MessageView)>, String> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = read
            .inbox_after(user, after, 100)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else {
            return Ok(all);
        };
        after = last.position;
        all.extend(page.into_iter().map(|e| (e.position, e.message)));
    }
}

/// The user's whole history through the query handler, every page.
async fn history(handlers: &CommandHandlers, user: UserId) -> Result<Vec<MessageView>, String> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let query = GetAllMessages {
            user_id: user.to_string(),
            cursor: cursor.clone(),
            limit: Some("100".into()),
        };
        let page = handlers
            .get_all_messages(user, query)
            .await
            .map_err(|e| e.to_string())?;
        all.extend(page.messages);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

/// What a user's history should hold: what they sent and what was delivered to them.
fn expected_history(log: &Log, user: UserId) -> BTreeMap<MessageId, MessageView> {
    let mut expected: BTreeMap<MessageId, MessageView> = log
        .sent
        .iter()
        .filter(|s| s.view.sender_id == user)
        .map(|s| (s.view.message_id, s.view.clone()))
        .collect();
    for (_, view) in log.inboxes.get(&user).into_iter().flatten() {
        expected.insert(view.message_id, view.clone());
    }
    expected
}

/// `None` once the system has settled: every accepted message has its outcome and the read
/// models show everything the log holds; otherwise what is still missing.
pub async fn unsettled(
    store: &Arc<dyn EventStore>,
    read: &Arc<dyn ReadStore>,
    handlers: &CommandHandlers,
    users: &[UserId],
) -> Option<String> {
    let log = match read_log(store, users).await {
        Ok(log) => log,
        Err(error) => return Some(format!("reading the log: {error}")),
    };
    let open = log
        .sent
        .iter()
        .filter(|s| log.outcomes[&s.view.message_id].is_empty())
        .count();
    if open > 0 {
        return Some(format!(
            "{open} of {} messages without an outcome",
            log.sent.len()
        ));
    }
    match read.pending_before(Timestamp(i64::MAX), 10).await {
        Ok(pending) if !pending.is_empty() => {
            return Some(format!("pending work in the read model: {}", pending.len()))
        }
        Err(error) => return Some(format!("reading pending work: {error}")),
        Ok(_) => {}
    }
    for user in users {
        let want = log.inboxes[user].len();
        match inbox_model(read, *user).await {
            Ok(got) if got.len() != want => {
                return Some(format!(
                    "inbox of {user}: {} of {want} projected",
                    got.len()
                ))
            }
            Err(error) => return Some(error),
            Ok(_) => {}
        }
        let want = expected_history(&log, *user).len();
        match history(handlers, *user).await {
            Ok(got) if got.len() < want => {
                return Some(format!(
                    "history of {user}: {} of {want} projected",
                    got.len()
                ))
            }
            Err(error) => return Some(error),
            Ok(_) => {}
        }
    }
    None
}

/// The state of `key` that a message asked at `start` and accepted at `end` must have been
/// decided against, if the acknowledged changes determine it: every change asked before the
/// message was accepted had been acknowledged before it was asked, and the last of them (or all
/// that might be last) agree.
fn determined(
    changes: &[Change],
    key: Key,
    initial: bool,
    start: Instant,
    end: Instant,
) -> Option<bool> {
    let before: Vec<&Change> = changes
        .iter()
        .filter(|c| c.key == key && c.start <= end)
        .collect();
    if before.iter().any(|c| c.end.is_none_or(|e| e >= start)) {
        return None;
    }
    let last: Vec<&&Change> = before
        .iter()
        .filter(|c| !before.iter().any(|o| o.start > c.end.unwrap()))
        .collect();
    match last.first() {
        None => Some(initial),
        Some(first) if last.iter().all(|c| c.value == first.value) => Some(first.value),
        Some(_) => None,
    }
}

/// Tallies of what was checked, for the report.
#[derive(Debug, Default)]
pub struct Checked {
    pub messages: usize,
    pub deliveries: usize,
    pub determined_deliveries: usize,
    pub determined_withheld: usize,
    pub polled: usize,
}

/// Checks every invariant; returns the violations (empty: all hold).
pub async fn check(
    store: &Arc<dyn EventStore>,
    read: &Arc<dyn ReadStore>,
    handlers: &CommandHandlers,
    record: &Record,
) -> (Vec<String>, Checked) {
    let mut bad = Vec::new();
    let mut checked = Checked::default();
    let users = record.users();
    let log = match read_log(store, &users).await {
        Ok(log) => log,
        Err(error) => return (vec![error], checked),
    };
    checked.messages = log.sent.len();

    // 2. A client retry never creates a second event: message ids are unique in the log.
    let mut by_id: HashMap<MessageId, &Sent> = HashMap::new();
    for sent in &log.sent {
        if by_id.insert(sent.view.message_id, sent).is_some() {
            bad.push(format!("message {} appended twice", sent.view.message_id));
        }
    }

    // 1. Every 202 is in the log, as sent.
    let accepted: Vec<Accepted> = record.accepted.lock().unwrap().clone();
    for a in &accepted {
        match by_id.get(&a.message_id) {
            None => bad.push(format!(
                "accepted message {} is not in the log",
                a.message_id
            )),
            Some(sent) => {
                let target = match (sent.view.receiver_id, sent.view.group_id) {
                    (Some(r), None) => Target::Direct(r),
                    (None, Some(g)) => Target::Group(g),
                    _ => Target::Direct(UserId(uuid::Uuid::nil())),
                };
                if sent.view.sender_id != a.sender
                    || target != a.target
                    || sent.view.message != a.text
                {
                    bad.push(format!("accepted {a:?} is logged as {:?}", sent.view));
                }
            }
        }
    }

    // Deliveries in the log, by message.
    let mut delivered: HashMap<MessageId, Vec<UserId>> = HashMap::new();
    for (user, inbox) in &log.inboxes {
        for (_, view) in inbox {
            delivered.entry(view.message_id).or_default().push(*user);
            checked.deliveries += 1;
        }
    }

    // 1 and 2. Exactly one outcome per accepted message; exactly one delivery to each eligible
    // recipient by the state pinned at acceptance, and to nobody else.
    for sent in &log.sent {
        let id = sent.view.message_id;
        let outcome = &log.outcomes[&id];
        let got = delivered.remove(&id).unwrap_or_default();
        let got_set: BTreeSet<UserId> = got.iter().copied().collect();
        if got_set.len() != got.len() {
            bad.push(format!(
                "message {id} delivered twice to one recipient: {got:?}"
            ));
        }
        if got_set != sent.eligible {
            bad.push(format!(
                "message {id}: delivered to {got_set:?}, eligible by the log {:?}",
                sent.eligible
            ));
        }
        match outcome.as_slice() {
            [Event::MessageDispatched { delivered, .. }] => {
                if *delivered as usize != sent.eligible.len() {
                    bad.push(format!(
                        "message {id}: dispatched to {delivered}, eligible {}",
                        sent.eligible.len()
                    ));
                }
            }
            [Event::MessageRejected { .. }] => {
                if !got.is_empty() {
                    bad.push(format!("message {id}: rejected but delivered to {got:?}"));
                }
            }
            other => bad.push(format!("message {id}: outcome {other:?}, want exactly one")),
        }
    }
    for (id, users) in delivered {
        bad.push(format!(
            "delivery of {id} to {users:?}, which was never accepted"
        ));
    }

    // 3. Blocks and memberships acknowledged before a message was accepted are honoured
    // (and so are those acknowledged as undone).
    let changes: Vec<Change> = record.changes.lock().unwrap().clone();
    let initial_members = record.initial_members.lock().unwrap().clone();
    for a in &accepted {
        let Some(sent) = by_id.get(&a.message_id) else {
            continue;
        };
        let candidates: Vec<UserId> = match a.target {
            Target::Direct(r) => vec![r],
            Target::Group(_) => users.iter().copied().filter(|u| *u != a.sender).collect(),
        };
        for user in candidates {
            let blocked = determined(
                &changes,
                Key::Block {
                    blocker: user,
                    blocked: a.sender,
                },
                false,
                a.start,
                a.end,
            );
            let member = match a.target {
                Target::Direct(_) => Some(true),
                Target::Group(group) => determined(
                    &changes,
                    Key::Member { group, user },
                    initial_members[&group].contains(&user),
                    a.start,
                    a.end,
                ),
            };
            let gets = sent.eligible.contains(&user);
            match (member, blocked) {
                (Some(true), Some(false)) => {
                    checked.determined_deliveries += 1;
                    if !gets {
                        bad.push(format!(
                            "message {} ({:?}) withheld from {user}, an acknowledged member that does not block the sender",
                            a.message_id, a.target
                        ));
                    }
                }
                (Some(false), _) | (_, Some(true)) => {
                    checked.determined_withheld += 1;
                    if gets {
                        bad.push(format!(
                            "message {} ({:?}) delivered to {user} although an acknowledged block or removal forbids it (member {member:?}, blocked {blocked:?})",
                            a.message_id, a.target
                        ));
                    }
                }
                _ => {}
            }
        }
    }

    // Order: one sender's messages to one recipient or group reach each inbox in acceptance
    // order.
    let versions: HashMap<MessageId, u64> = log
        .sent
        .iter()
        .map(|s| (s.view.message_id, s.outbox_version))
        .collect();
    for (user, inbox) in &log.inboxes {
        let mut last: HashMap<(UserId, Option<GroupId>), (u64, MessageId)> = HashMap::new();
        for (_, view) in inbox {
            let version = versions.get(&view.message_id).copied().unwrap_or(0);
            let key = (view.sender_id, view.group_id);
            if let Some((previous, previous_id)) = last.get(&key) {
                if *previous > version {
                    bad.push(format!(
                        "inbox of {user}: {} (outbox version {version}) after {previous_id} (version {previous})",
                        view.message_id
                    ));
                }
            }
            last.insert(key, (version, view.message_id));
        }
    }

    for user in &users {
        let inbox = &log.inboxes[user];
        // 4. The read models equal what the log says: the inbox, position by position ...
        match inbox_model(read, *user).await {
            Ok(model) if model != *inbox => bad.push(format!(
                "inbox read model of {user} differs from its inbox stream:\n  model {:?}\n  log   {:?}",
                model.iter().map(|(p, v)| (p, v.message_id)).collect::<Vec<_>>(),
                inbox.iter().map(|(p, v)| (p, v.message_id)).collect::<Vec<_>>()
            )),
            Err(error) => bad.push(error),
            Ok(_) => {}
        }
        // ... and the history, each message once, oldest first, as sent.
        let expected = expected_history(&log, *user);
        match history(handlers, *user).await {
            Ok(got) => {
                let ids: Vec<MessageId> = got.iter().map(|m| m.message_id).collect();
                let unique: HashSet<MessageId> = ids.iter().copied().collect();
                if unique.len() != ids.len() {
                    bad.push(format!("history of {user} has a message twice"));
                }
                let mut sorted = got.clone();
                sorted.sort_by_key(|m| m.history_key());
                if sorted != got {
                    bad.push(format!("history of {user} is not oldest first"));
                }
                let got_map: BTreeMap<MessageId, MessageView> =
                    got.into_iter().map(|m| (m.message_id, m)).collect();
                if got_map != expected {
                    let missing: Vec<_> = expected
                        .keys()
                        .filter(|k| !got_map.contains_key(k))
                        .collect();
                    let extra: Vec<_> = got_map
                        .keys()
                        .filter(|k| !expected.contains_key(k))
                        .collect();
                    bad.push(format!(
                        "history of {user} differs from the log: missing {missing:?}, extra {extra:?}"
                    ));
                }
            }
            Err(error) => bad.push(error),
        }
        // get-new-messages returned every delivered message once, in inbox order: never one
        // twice, none skipped.
        let poller = record.poller(*user);
        let poller = poller.lock().await;
        checked.polled += poller.returned.len();
        let want: Vec<MessageId> = inbox.iter().map(|(_, v)| v.message_id).collect();
        if poller.returned != want {
            bad.push(format!(
                "get-new-messages of {user} returned {:?}, the inbox holds {want:?}",
                poller.returned
            ));
        }
    }

    match read.pending_before(Timestamp(i64::MAX), 10).await {
        Ok(pending) if !pending.is_empty() => bad.push(format!(
            "settled messages still pending: {:?}",
            pending.iter().map(|p| p.message_id).collect::<Vec<_>>()
        )),
        Err(error) => bad.push(error.to_string()),
        Ok(_) => {}
    }

    // An injected store fault is a 503, never a 500.
    let internal = record.internal_errors.lock().unwrap().clone();
    if !internal.is_empty() {
        bad.push(format!("internal errors: {internal:?}"));
    }
    (bad, checked)
}
