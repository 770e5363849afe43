use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random identifier.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// Parses the textual (hyphenated) form; anything else is rejected.
            pub fn parse(text: &str) -> Option<Self> {
                Uuid::from_str(text).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// Identifies a registered user.
    UserId
);
uuid_id!(
    /// Identifies a group.
    GroupId
);
uuid_id!(
    /// Identifies a message, direct or group.
    MessageId
);

impl MessageId {
    /// A fresh identifier that sorts by creation time (UUIDv7: 48 bits of milliseconds, then
    /// random bits). Every message adds keys named by its id (its outcome's stream, its pending
    /// row); time-ordered ids append those to the end of their indexes instead of dirtying a
    /// random index page per message. The time it reveals is the message's `sent_at` anyway.
    pub fn new_time_ordered() -> Self {
        Self(Uuid::now_v7())
    }
}

/// Names an event stream: the unit of ordering and optimistic concurrency.
///
/// On DynamoDB this is the partition key of the event table; each event is one item keyed by
/// (stream, version), so a conditional put on a missing (stream, version) is the append.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(pub String);

impl StreamId {
    /// A user's registration and tokens.
    pub fn user(id: UserId) -> Self {
        Self(format!("user-{id}"))
    }
    /// Who blocks this user: the facts every send by this user is checked against.
    pub fn blocks_of(blocked: UserId) -> Self {
        Self(format!("blocks-{blocked}"))
    }
    /// A group's creation and membership changes.
    pub fn group(id: GroupId) -> Self {
        Self(format!("group-{id}"))
    }
    /// Every message a user sent, in acceptance order.
    pub fn outbox(sender: UserId) -> Self {
        Self(format!("outbox-{sender}"))
    }
    /// Every message delivered to a user, in delivery order; versions are inbox positions.
    pub fn inbox(recipient: UserId) -> Self {
        Self(format!("inbox-{recipient}"))
    }
    /// A user's read marker advances.
    pub fn reads(user: UserId) -> Self {
        Self(format!("reads-{user}"))
    }
    /// The outcome of one message (dispatched or rejected).
    pub fn message(id: MessageId) -> Self {
        Self(format!("message-{id}"))
    }

    /// The stream name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_message_ids_sort_by_creation_in_their_text_form() {
        let first = MessageId::new_time_ordered();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = MessageId::new_time_ordered();
        assert!(first.to_string() < second.to_string());
        assert_eq!(MessageId::parse(&second.to_string()), Some(second));
    }
}
