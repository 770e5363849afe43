use messaging_events::{Event, GroupId, MessageId, RecordedEvent, Timestamp, UserId};
use serde::{Deserialize, Serialize};

/// A message as the GET endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// The message's id.
    pub message_id: MessageId,
    /// Who sent it.
    pub sender_id: UserId,
    /// The recipient of a direct message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_id: Option<UserId>,
    /// The group of a group message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// The text.
    pub message: String,
    /// When it was accepted.
    pub sent_at: Timestamp,
}

impl MessageView {
    /// The recipient of a `MessageDelivered` event and the message as they are shown it;
    /// `None` for any other event.
    pub fn of_delivery(event: &Event) -> Option<(UserId, MessageView)> {
        let Event::MessageDelivered {
            message_id,
            recipient,
            sender,
            receiver,
            group_id,
            text,
            sent_at,
        } = event
        else {
            return None;
        };
        let message = MessageView {
            message_id: *message_id,
            sender_id: *sender,
            receiver_id: *receiver,
            group_id: *group_id,
            message: text.clone(),
            sent_at: *sent_at,
        };
        Some((*recipient, message))
    }

    /// The history sort key: acceptance time, then id, so that one sender's messages keep their
    /// acceptance order (send times are monotonic per sender) and keys are unique.
    pub fn history_key(&self) -> String {
        format!("{:020}#{}", self.sent_at.micros().max(0), self.message_id)
    }
}

/// A message in a user's inbox at a position (the version of the `inbox-*` stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// Inbox position, dense from 1.
    pub position: u64,
    /// The message.
    pub message: MessageView,
}

/// A message in a user's history (sent or received).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Sort key, see [`MessageView::history_key`].
    pub sort_key: String,
    /// The message.
    pub message: MessageView,
}

/// An accepted message without an outcome yet, for the re-enqueue sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWork {
    /// The message.
    pub message_id: MessageId,
    /// When it was accepted.
    pub accepted_at: Timestamp,
    /// The recorded `*MessageSent` event to hand to a processor again.
    pub sent: RecordedEvent,
}

/// One idempotent change to a read model. Applying the same change twice, or changes of
/// different streams in any order, gives the same read models; changes of one stream carry
/// its version so that a stale one never overwrites a newer one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReadModelChange {
    /// Insert if absent: (user, position) → message.
    InboxEntry { user: UserId, entry: InboxEntry },
    /// Insert if absent: (user, sort_key) → message.
    HistoryEntry { user: UserId, entry: HistoryEntry },
    /// The user's read marker becomes max(current, up_to).
    ReadMarker { user: UserId, up_to: u64 },
    /// Insert if absent: a registered user.
    User {
        user: UserId,
        display_name: Option<String>,
    },
    /// Insert if absent: a group and its admin.
    Group {
        group: GroupId,
        name: String,
        admin: UserId,
    },
    /// Set membership if `version` is newer than the stored one.
    Membership {
        group: GroupId,
        user: UserId,
        member: bool,
        version: u64,
    },
    /// Set a block if `version` is newer than the stored one.
    Block {
        blocker: UserId,
        blocked: UserId,
        active: bool,
        version: u64,
    },
    /// Insert if absent and not settled: work awaiting an outcome.
    Pending { work: PendingWork },
    /// Mark the message settled and forget its work (also when it arrives before its
    /// `Pending`, which then stays settled).
    Settled { message_id: MessageId },
}
