//! Generations of the read models: each projection's rows live in one numbered generation
//! (its own tables or file), and a small pointer, the [`GenerationMap`], says which generation
//! each projection reads and writes now, and which one a replay is building.
//!
//! Replay rebuilds into a fresh generation while the old one keeps serving, then switches the
//! pointer in one conditional write; the old generation stays until it is dropped explicitly.

use crate::ReadModelChange;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One projection: a read model that replay can rebuild on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    /// Registered users.
    Users,
    /// Who blocked whom.
    Blocks,
    /// Groups and their memberships.
    Groups,
    /// Each user's inbox, by position.
    Inbox,
    /// Each user's whole history.
    History,
    /// Each user's read marker.
    ReadMarkers,
    /// Accepted messages awaiting an outcome (read by the sweep).
    Pending,
}

impl Projection {
    /// Every projection.
    pub const ALL: [Projection; 7] = [
        Projection::Users,
        Projection::Blocks,
        Projection::Groups,
        Projection::Inbox,
        Projection::History,
        Projection::ReadMarkers,
        Projection::Pending,
    ];

    /// Its name on the command line and in the pointer.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Users => "users",
            Projection::Blocks => "blocks",
            Projection::Groups => "groups",
            Projection::Inbox => "inbox",
            Projection::History => "history",
            Projection::ReadMarkers => "read_markers",
            Projection::Pending => "pending",
        }
    }

    /// The projection called `name`.
    pub fn parse(name: &str) -> Option<Projection> {
        Projection::ALL
            .into_iter()
            .find(|projection| projection.name() == name)
    }

    /// The projection a change belongs to.
    pub fn of(change: &ReadModelChange) -> Projection {
        match change {
            ReadModelChange::InboxEntry { .. } => Projection::Inbox,
            ReadModelChange::HistoryEntry { .. } => Projection::History,
            ReadModelChange::ReadMarker { .. } => Projection::ReadMarkers,
            ReadModelChange::User { .. } => Projection::Users,
            ReadModelChange::Group { .. } | ReadModelChange::Membership { .. } => {
                Projection::Groups
            }
            ReadModelChange::Block { .. } => Projection::Blocks,
            ReadModelChange::Pending { .. } | ReadModelChange::Settled { .. } => {
                Projection::Pending
            }
        }
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a generation under construction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// `replay --rebuild`: switched to when complete.
    Rebuild,
    /// `replay --verify`: compared with the live generation, then dropped.
    Verify,
}

/// How far one segment of the event log has been replayed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentProgress {
    /// The log position after the last applied page (`None`: not started).
    pub after: Option<String>,
    /// Whether the whole segment is applied.
    pub done: bool,
}

/// A generation a replay is filling; live projectors write every new event to it as well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Building {
    /// The generation's number.
    pub generation: u32,
    /// What it is for.
    pub purpose: Purpose,
    /// The projections it holds.
    pub projections: BTreeSet<Projection>,
    /// The replay's checkpoint, by log segment.
    pub segments: BTreeMap<u32, SegmentProgress>,
    /// Events applied so far (across restarts).
    pub events_done: u64,
}

/// The pointer: which generation each projection lives in, and the one being built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationMap {
    /// Bumped by every write; writes are conditional on it (compare-and-set).
    pub version: u64,
    /// A projection's live generation; absent means generation 0.
    pub current: BTreeMap<Projection, u32>,
    /// The generation under construction, if any.
    pub building: Option<Building>,
    /// The highest generation number ever used (new generations take the next one).
    pub highest: u32,
}

impl GenerationMap {
    /// The live generation of `projection`.
    pub fn current_of(&self, projection: Projection) -> u32 {
        self.current.get(&projection).copied().unwrap_or(0)
    }

    /// The generation under construction for `projection`, if it is being rebuilt.
    pub fn building_of(&self, projection: Projection) -> Option<u32> {
        self.building
            .as_ref()
            .filter(|building| building.projections.contains(&projection))
            .map(|building| building.generation)
    }

    /// Every generation the pointer refers to (live or under construction).
    pub fn referenced(&self) -> BTreeSet<u32> {
        let mut referenced: BTreeSet<u32> = Projection::ALL
            .into_iter()
            .map(|projection| self.current_of(projection))
            .collect();
        if let Some(building) = &self.building {
            referenced.insert(building.generation);
        }
        referenced
    }

    /// The generations a change must be written to: the live one, and the one under
    /// construction when its projection is being rebuilt.
    pub fn targets(&self, change: &ReadModelChange) -> (u32, Option<u32>) {
        let projection = Projection::of(change);
        let current = self.current_of(projection);
        let building = self
            .building_of(projection)
            .filter(|building| *building != current);
        (current, building)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_events::{MessageId, UserId};

    fn building(generation: u32, projections: &[Projection]) -> Building {
        Building {
            generation,
            purpose: Purpose::Rebuild,
            projections: projections.iter().copied().collect(),
            segments: BTreeMap::new(),
            events_done: 0,
        }
    }

    #[test]
    fn names_round_trip() {
        for projection in Projection::ALL {
            assert_eq!(Projection::parse(projection.name()), Some(projection));
        }
        assert_eq!(Projection::parse("inboxes"), None);
    }

    #[test]
    fn a_fresh_map_puts_everything_in_generation_zero() {
        let map = GenerationMap::default();
        let change = ReadModelChange::ReadMarker {
            user: UserId::new_random(),
            up_to: 3,
        };
        assert_eq!(map.targets(&change), (0, None));
        assert_eq!(map.referenced(), BTreeSet::from([0]));
    }

    #[test]
    fn changes_of_a_projection_being_rebuilt_go_to_both_generations() {
        let map = GenerationMap {
            version: 4,
            current: BTreeMap::from([(Projection::Inbox, 2)]),
            building: Some(building(3, &[Projection::Pending])),
            highest: 3,
        };
        let settled = ReadModelChange::Settled {
            message_id: MessageId::new_random(),
        };
        let marker = ReadModelChange::ReadMarker {
            user: UserId::new_random(),
            up_to: 1,
        };
        assert_eq!(map.targets(&settled), (0, Some(3)));
        assert_eq!(map.targets(&marker), (0, None));
        assert_eq!(map.referenced(), BTreeSet::from([0, 2, 3]));
    }
}
