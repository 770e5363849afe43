//! An in-memory read store with the semantics every adapter must have; test-only, for the
//! projector's unit tests.

use crate::{HistoryEntry, InboxEntry, PendingWork, ReadModelChange, ReadStore, ReadStoreError};
use async_trait::async_trait;
use messaging_events::{GroupId, MessageId, Timestamp, UserId};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// All read models as plain maps, comparable with `==`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tables {
    pub inbox: BTreeMap<(UserId, u64), InboxEntry>,
    pub history: BTreeMap<(UserId, String), HistoryEntry>,
    pub markers: BTreeMap<UserId, u64>,
    pub users: BTreeMap<UserId, Option<String>>,
    pub groups: BTreeMap<GroupId, (String, UserId)>,
    pub memberships: BTreeMap<(GroupId, UserId), (bool, u64)>,
    pub blocks: BTreeMap<(UserId, UserId), (bool, u64)>,
    pub pending: BTreeMap<MessageId, (bool, Option<PendingWork>)>,
}

/// The in-memory store.
#[derive(Default)]
pub struct MemoryReadStore {
    pub tables: Mutex<Tables>,
}

impl MemoryReadStore {
    pub fn snapshot(&self) -> Tables {
        self.tables.lock().expect("lock").clone()
    }
}

fn guarded(slot: &mut (bool, u64), value: bool, version: u64) {
    if version > slot.1 {
        *slot = (value, version);
    }
}

#[async_trait]
impl ReadStore for MemoryReadStore {
    async fn apply(&self, changes: &[ReadModelChange]) -> Result<(), ReadStoreError> {
        let mut t = self.tables.lock().expect("lock");
        for change in changes {
            match change.clone() {
                ReadModelChange::InboxEntry { user, entry } => {
                    t.inbox.entry((user, entry.position)).or_insert(entry);
                }
                ReadModelChange::HistoryEntry { user, entry } => {
                    t.history
                        .entry((user, entry.sort_key.clone()))
                        .or_insert(entry);
                }
                ReadModelChange::ReadMarker { user, up_to } => {
                    let marker = t.markers.entry(user).or_insert(0);
                    *marker = (*marker).max(up_to);
                }
                ReadModelChange::User { user, display_name } => {
                    t.users.entry(user).or_insert(display_name);
                }
                ReadModelChange::Group { group, name, admin } => {
                    t.groups.entry(group).or_insert((name, admin));
                }
                ReadModelChange::Membership {
                    group,
                    user,
                    member,
                    version,
                } => guarded(
                    t.memberships.entry((group, user)).or_insert((false, 0)),
                    member,
                    version,
                ),
                ReadModelChange::Block {
                    blocker,
                    blocked,
                    active,
                    version,
                } => guarded(
                    t.blocks.entry((blocker, blocked)).or_insert((false, 0)),
                    active,
                    version,
                ),
                ReadModelChange::Pending { work } => {
                    t.pending
                        .entry(work.message_id)
                        .or_insert((false, Some(work)));
                }
                ReadModelChange::Settled { message_id } => {
                    t.pending.insert(message_id, (true, None));
                }
            }
        }
        Ok(())
    }

    async fn inbox_after(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, ReadStoreError> {
        let t = self.tables.lock().expect("lock");
        Ok(t.inbox
            .range((user, after + 1)..=(user, u64::MAX))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn history_after(
        &self,
        user: UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ReadStoreError> {
        let t = self.tables.lock().expect("lock");
        Ok(t.history
            .iter()
            .filter(|((u, key), _)| *u == user && after.is_none_or(|a| key.as_str() > a))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_marker(&self, user: UserId) -> Result<u64, ReadStoreError> {
        Ok(*self
            .tables
            .lock()
            .expect("lock")
            .markers
            .get(&user)
            .unwrap_or(&0))
    }

    async fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>, ReadStoreError> {
        let t = self.tables.lock().expect("lock");
        if !t.groups.contains_key(&group) {
            return Ok(None);
        }
        Ok(Some(
            t.memberships
                .iter()
                .filter(|((g, _), (member, _))| *g == group && *member)
                .map(|((_, u), _)| *u)
                .collect(),
        ))
    }

    async fn blocked_by(&self, blocker: UserId) -> Result<Vec<UserId>, ReadStoreError> {
        let t = self.tables.lock().expect("lock");
        Ok(t.blocks
            .iter()
            .filter(|((b, _), (active, _))| *b == blocker && *active)
            .map(|((_, blocked), _)| *blocked)
            .collect())
    }

    async fn pending_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingWork>, ReadStoreError> {
        let t = self.tables.lock().expect("lock");
        let mut work: Vec<PendingWork> = t
            .pending
            .values()
            .filter(|(settled, _)| !settled)
            .filter_map(|(_, w)| w.clone())
            .filter(|w| w.accepted_at < before)
            .collect();
        work.sort_by_key(|w| w.accepted_at);
        work.truncate(limit);
        Ok(work)
    }
}
