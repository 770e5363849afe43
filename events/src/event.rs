use crate::{GroupId, MessageId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every fact the system records. Events are immutable once appended.
///
/// Adding a variant or an optional field is backwards compatible; renaming or changing a field
/// needs a new schema version and an upcaster in [`crate::StoredEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// A user account was created (stream `user-*`, version 1).
    UserRegistered {
        user_id: UserId,
        #[serde(default)]
        display_name: Option<String>,
    },
    /// A bearer token was issued; only its SHA-256 hash is kept.
    TokenIssued {
        user_id: UserId,
        token_id: Uuid,
        token_hash: String,
    },
    /// A token stopped being accepted.
    TokenRevoked { user_id: UserId, token_id: Uuid },
    /// `blocker` no longer receives messages from `blocked` (stream `blocks-{blocked}`).
    UserBlocked { blocker: UserId, blocked: UserId },
    /// `blocker` receives messages from `blocked` again.
    UserUnblocked { blocker: UserId, blocked: UserId },
    /// A group was created; `members` includes the admin.
    GroupCreated {
        group_id: GroupId,
        name: String,
        admin: UserId,
        members: Vec<UserId>,
    },
    /// `user_id` joined the group, added by `by`.
    MemberAdded {
        group_id: GroupId,
        user_id: UserId,
        by: UserId,
    },
    /// `user_id` left the group or was removed by `by`.
    MemberRemoved {
        group_id: GroupId,
        user_id: UserId,
        by: UserId,
    },
    /// A direct message was accepted (stream `outbox-{sender}`).
    ///
    /// `blocks_version` is the version of `blocks-{sender}` at acceptance: the processor decides
    /// delivery against exactly that state.
    DirectMessageSent {
        message_id: MessageId,
        sender: UserId,
        receiver: UserId,
        text: String,
        sent_at: Timestamp,
        blocks_version: u64,
    },
    /// A group message was accepted (stream `outbox-{sender}`), against the group at
    /// `group_version` and the sender's blockers at `blocks_version`.
    GroupMessageSent {
        message_id: MessageId,
        sender: UserId,
        group_id: GroupId,
        text: String,
        sent_at: Timestamp,
        group_version: u64,
        blocks_version: u64,
    },
    /// A message landed in `recipient`'s inbox (stream `inbox-{recipient}`; the version is the
    /// inbox position). It carries the message so the inbox needs no join.
    MessageDelivered {
        message_id: MessageId,
        recipient: UserId,
        sender: UserId,
        #[serde(default)]
        receiver: Option<UserId>,
        #[serde(default)]
        group_id: Option<GroupId>,
        text: String,
        sent_at: Timestamp,
    },
    /// Processing of a message finished (stream `message-*`, version 1): it was delivered to
    /// `delivered` recipients and withheld from `withheld` who block the sender.
    MessageDispatched {
        message_id: MessageId,
        delivered: u32,
        withheld: u32,
    },
    /// A message was not delivered to anyone (stream `message-*`, version 1).
    MessageRejected {
        message_id: MessageId,
        reason: RejectionReason,
    },
    /// The user's new-messages marker moved to inbox position `up_to` (stream `reads-*`).
    MessagesRead { user_id: UserId, up_to: u64 },
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    /// The recipient blocks the sender.
    Blocked,
    /// The sender was not a member of the group when the message was accepted.
    NotAMember,
}

impl Event {
    /// The variant's name, as stored in the `type` attribute.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::UserRegistered { .. } => "UserRegistered",
            Event::TokenIssued { .. } => "TokenIssued",
            Event::TokenRevoked { .. } => "TokenRevoked",
            Event::UserBlocked { .. } => "UserBlocked",
            Event::UserUnblocked { .. } => "UserUnblocked",
            Event::GroupCreated { .. } => "GroupCreated",
            Event::MemberAdded { .. } => "MemberAdded",
            Event::MemberRemoved { .. } => "MemberRemoved",
            Event::DirectMessageSent { .. } => "DirectMessageSent",
            Event::GroupMessageSent { .. } => "GroupMessageSent",
            Event::MessageDelivered { .. } => "MessageDelivered",
            Event::MessageDispatched { .. } => "MessageDispatched",
            Event::MessageRejected { .. } => "MessageRejected",
            Event::MessagesRead { .. } => "MessagesRead",
        }
    }
}
