//! A group's state, written down every `SNAPSHOT_EVERY` versions of its stream, so that loading
//! a group reads one snapshot and fewer than `SNAPSHOT_EVERY` events however many members came
//! and went before: a group message's cost stays linear in its members, not in its history.
//!
//! A snapshot is a claim taken in the same atomic append as the membership change that brings
//! the stream to a multiple of `SNAPSHOT_EVERY`, so it exists exactly when that version does,
//! and like the version's state it never changes. A group whose snapshot is missing (its
//! stream passed the mark before snapshots were written, or the state was too large to store)
//! is folded from its first event, as before.

use crate::decide::group::{evolve, GroupState};
use messaging_events::{Claim, Event, EventStore, GroupId, StoreError, StreamId};
use std::collections::HashMap;
use std::sync::Mutex;

/// How many versions of a group's stream lie between two snapshots.
pub(crate) const SNAPSHOT_EVERY: u64 = 100;

/// Largest snapshot written, in bytes of JSON: a DynamoDB item holds 400 KB, and a group at the
/// default limit of 1,000 members is about 40 KB.
const MAX_SNAPSHOT_BYTES: usize = 200_000;

/// Groups whose version [`KnownVersions`] remembers at most; past it the memory starts over,
/// which costs only the reads it saved.
const REMEMBERED_GROUPS: usize = 65_536;

/// The claim key of a group's state at `version`. The deployment's IAM policies name the
/// prefix (`snapshot:*`), and `scripts/check_template.py` finds it here.
fn snapshot_key(group: GroupId, version: u64) -> String {
    format!("snapshot:{group}:{version}")
}

/// Whether a claim key is a group snapshot's (taken only by the append that reaches its version,
/// so finding it taken means the stream moved).
pub(crate) fn is_snapshot_key(key: &str) -> bool {
    key.starts_with("snapshot:")
}

/// The group's state as of `up_to` (the stream's end when `None`) and the version it is at.
/// `known` is a version the stream is known to have reached (0 if none): loading starts from
/// the snapshot at or below it.
pub(crate) async fn load(
    store: &dyn EventStore,
    group: GroupId,
    known: u64,
    up_to: Option<u64>,
) -> Result<(u64, GroupState), StoreError> {
    let mark = known - known % SNAPSHOT_EVERY;
    let snapshot = if mark > 0 {
        read_snapshot(store, group, mark).await?
    } else {
        None
    };
    let (after, state) = match snapshot {
        Some(state) => (mark, state),
        None => (0, GroupState::default()),
    };
    if up_to == Some(after) {
        return Ok((after, state));
    }
    let events = store
        .read_stream(&StreamId::group(group), after, up_to)
        .await?;
    let version = events.last().map_or(after, |e| e.version);
    let state = events
        .iter()
        .fold(state, |state, e| evolve(state, &e.event));
    Ok((version, state))
}

async fn read_snapshot(
    store: &dyn EventStore,
    group: GroupId,
    version: u64,
) -> Result<Option<GroupState>, StoreError> {
    let Some(value) = store.get_claim(&snapshot_key(group, version)).await? else {
        return Ok(None);
    };
    match serde_json::from_value(value) {
        Ok(state) => Ok(Some(state)),
        Err(error) => {
            tracing::warn!(%group, version, %error, "unreadable group snapshot; folding the stream");
            Ok(None)
        }
    }
}

/// The snapshot claims to take with `events` appended to a group stream at `version`, whose
/// state there is `state`: one for each new version that is a multiple of `SNAPSHOT_EVERY`.
pub(crate) fn snapshots_for(
    group: GroupId,
    state: &GroupState,
    version: u64,
    events: &[Event],
) -> Vec<Claim> {
    let mut state = state.clone();
    let mut claims = Vec::new();
    for (at, event) in (version + 1..).zip(events) {
        state = evolve(state, event);
        if at % SNAPSHOT_EVERY != 0 {
            continue;
        }
        match serde_json::to_value(&state) {
            Ok(value) if value.to_string().len() <= MAX_SNAPSHOT_BYTES => claims.push(Claim {
                key: snapshot_key(group, at),
                value,
            }),
            // Without its snapshot the group is folded from the start: slower, still right.
            _ => tracing::warn!(%group, version = at, "group snapshot not written"),
        }
    }
    claims
}

/// The newest version this process has seen of each group's stream (streams only grow), so
/// that a command that needs a group's current state starts from its latest snapshot.
#[derive(Default)]
pub(crate) struct KnownVersions {
    versions: Mutex<HashMap<GroupId, u64>>,
}

impl KnownVersions {
    /// A version `group`'s stream has reached (0 if this process has not seen it).
    pub(crate) fn get(&self, group: GroupId) -> u64 {
        let versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        versions.get(&group).copied().unwrap_or(0)
    }

    /// Remembers that `group`'s stream has reached `version`.
    pub(crate) fn saw(&self, group: GroupId, version: u64) {
        // An unknown group (a bad id) is not worth a place.
        if version == 0 {
            return;
        }
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if versions.len() >= REMEMBERED_GROUPS && !versions.contains_key(&group) {
            versions.clear();
        }
        let known = versions.entry(group).or_insert(0);
        *known = (*known).max(version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_events::UserId;

    fn user() -> UserId {
        UserId::new_random()
    }

    #[test]
    fn given_a_change_that_reaches_a_mark_then_its_state_there_is_snapshotted() {
        let group = GroupId::new_random();
        let (admin, member) = (user(), user());
        let state = GroupState::from_events(&[Event::GroupCreated {
            group_id: group,
            name: "g".into(),
            admin,
            members: vec![],
        }]);
        let added = Event::MemberAdded {
            group_id: group,
            user_id: member,
            by: admin,
        };

        let at_the_mark = snapshots_for(
            group,
            &state,
            SNAPSHOT_EVERY - 1,
            std::slice::from_ref(&added),
        );
        let elsewhere = snapshots_for(group, &state, SNAPSHOT_EVERY, std::slice::from_ref(&added));

        assert_eq!(at_the_mark.len(), 1);
        assert_eq!(at_the_mark[0].key, snapshot_key(group, SNAPSHOT_EVERY));
        let stored: GroupState =
            serde_json::from_value(at_the_mark[0].value.clone()).expect("a state");
        assert_eq!(stored, evolve(state, &added));
        assert!(stored.is_member(member));
        assert!(elsewhere.is_empty());
    }

    #[test]
    fn known_versions_only_grow() {
        let known = KnownVersions::default();
        let group = GroupId::new_random();
        assert_eq!(known.get(group), 0);
        known.saw(group, 250);
        known.saw(group, 120);
        assert_eq!(known.get(group), 250);
    }
}
