//! Each read-model change as one conditional write. A write whose condition fails was already
//! applied (or overtaken by a newer version), so `ConditionalCheckFailed` counts as success:
//! redelivered and reordered changes leave the same items.

use super::attrs::{json, n, s, Item};
use crate::read_tables::{
    ACCEPTED_AT, BLOCKS, GROUPS, HISTORY, INBOX, MEMBERSHIPS, PENDING, READ_MARKERS,
    UNSETTLED_SHARD, UNSETTLED_SHARD_VALUE, USERS,
};
use crate::ReadError;
use aws_sdk_dynamodb::types::AttributeValue;
use messaging_projections::ReadModelChange;
use std::collections::HashMap;

/// Insert if the item is absent (`#k` is its partition key).
const IF_ABSENT: &str = "attribute_not_exists(#k)";
/// Write if the stored version is older (or there is none).
const IF_NEWER: &str = "attribute_not_exists(#v) OR #v < :v";

/// What a write does to its item.
pub(super) enum Action {
    /// PutItem of the whole item.
    Put(Item),
    /// UpdateItem of `key` with an update expression.
    Update { key: Item, expression: &'static str },
}

/// One DynamoDB write.
pub(super) struct Write {
    /// Table suffix (see [`crate::read_tables`]).
    pub table: &'static str,
    /// Identifies the item, so that writes to one item keep their order.
    pub item_key: String,
    pub action: Action,
    pub condition: Option<&'static str>,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

impl Write {
    fn put(table: &'static str, item_key: String, item: Item) -> Write {
        Write {
            table,
            item_key,
            action: Action::Put(item),
            condition: None,
            names: HashMap::new(),
            values: HashMap::new(),
        }
    }

    /// Only if no item with this key exists.
    fn if_absent(mut self, partition_key: &str) -> Write {
        self.condition = Some(IF_ABSENT);
        self.names.insert("#k".into(), partition_key.into());
        self
    }

    /// Only if the stored `attribute` is below `version` or missing.
    fn if_newer(mut self, attribute: &str, version: u64) -> Write {
        self.condition = Some(IF_NEWER);
        self.names.insert("#v".into(), attribute.into());
        self.values.insert(":v".into(), n(version));
        self
    }
}

fn item<const N: usize>(attributes: [(&str, AttributeValue); N]) -> Item {
    attributes
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}

/// The write that applies `change`.
pub(super) fn write_for(change: &ReadModelChange) -> Result<Write, ReadError> {
    Ok(match change {
        ReadModelChange::InboxEntry { user, entry } => Write::put(
            INBOX,
            format!("{user}/{}", entry.position),
            item([
                ("user", s(user.to_string())),
                ("position", n(entry.position)),
                ("message", json("inbox message", &entry.message)?),
            ]),
        )
        .if_absent("user"),
        ReadModelChange::HistoryEntry { user, entry } => Write::put(
            HISTORY,
            format!("{user}/{}", entry.sort_key),
            item([
                ("user", s(user.to_string())),
                ("sort_key", s(entry.sort_key.clone())),
                ("message", json("history message", &entry.message)?),
            ]),
        )
        .if_absent("user"),
        ReadModelChange::ReadMarker { user, up_to } => Write {
            table: READ_MARKERS,
            item_key: user.to_string(),
            action: Action::Update {
                key: item([("user", s(user.to_string()))]),
                expression: "SET #v = :v",
            },
            condition: None,
            names: HashMap::new(),
            values: HashMap::new(),
        }
        .if_newer("up_to", *up_to),
        ReadModelChange::User { user, display_name } => {
            let mut attributes = item([("user", s(user.to_string()))]);
            if let Some(name) = display_name {
                attributes.insert("display_name".into(), s(name.clone()));
            }
            Write::put(USERS, user.to_string(), attributes).if_absent("user")
        }
        ReadModelChange::Group { group, name, admin } => Write::put(
            GROUPS,
            group.to_string(),
            item([
                ("group_id", s(group.to_string())),
                ("name", s(name.clone())),
                ("admin", s(admin.to_string())),
            ]),
        )
        .if_absent("group_id"),
        ReadModelChange::Membership {
            group,
            user,
            member,
            version,
        } => Write::put(
            MEMBERSHIPS,
            format!("{group}/{user}"),
            item([
                ("group_id", s(group.to_string())),
                ("user", s(user.to_string())),
                ("member", AttributeValue::Bool(*member)),
                ("version", n(version)),
            ]),
        )
        .if_newer("version", *version),
        ReadModelChange::Block {
            blocker,
            blocked,
            active,
            version,
        } => Write::put(
            BLOCKS,
            format!("{blocker}/{blocked}"),
            item([
                ("blocker", s(blocker.to_string())),
                ("blocked", s(blocked.to_string())),
                ("active", AttributeValue::Bool(*active)),
                ("version", n(version)),
            ]),
        )
        .if_newer("version", *version),
        // Ignored when a row exists, settled or not: a Settled that overtook its Pending wins.
        ReadModelChange::Pending { work } => Write::put(
            PENDING,
            work.message_id.to_string(),
            item([
                ("message_id", s(work.message_id.to_string())),
                ("settled", AttributeValue::Bool(false)),
                (UNSETTLED_SHARD, s(UNSETTLED_SHARD_VALUE)),
                (ACCEPTED_AT, n(work.accepted_at.micros())),
                ("work", json("pending work", work)?),
            ]),
        )
        .if_absent("message_id"),
        // Overwrites the whole row: the work and the index key go, so the row leaves the
        // `unsettled` index and is the same whichever of Pending and Settled came first.
        ReadModelChange::Settled { message_id } => Write::put(
            PENDING,
            message_id.to_string(),
            item([
                ("message_id", s(message_id.to_string())),
                ("settled", AttributeValue::Bool(true)),
            ]),
        ),
    })
}

/// Groups writes by item, keeping their order: different items may be written concurrently,
/// but two changes of one item (e.g. two inbox entries at one position, where the first wins)
/// must be applied in the order given.
pub(super) fn chains(writes: Vec<Write>) -> Vec<Vec<Write>> {
    let mut index: HashMap<(&'static str, String), usize> = HashMap::new();
    let mut chains: Vec<Vec<Write>> = Vec::new();
    for write in writes {
        let key = (write.table, write.item_key.clone());
        match index.get(&key) {
            Some(&at) => chains[at].push(write),
            None => {
                index.insert(key, chains.len());
                chains.push(vec![write]);
            }
        }
    }
    chains
}
