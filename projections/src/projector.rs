use crate::ReadStoreError;
use crate::{HistoryEntry, InboxEntry, MessageView, PendingWork, ReadModelChange, ReadStore};
use messaging_events::{Event, RecordedEvent, UserId};
use std::sync::Arc;

/// A delivery shows in the recipient's history and, at its inbox position, in the inbox.
fn delivery_changes(
    recipient: UserId,
    message: MessageView,
    position: u64,
) -> Vec<ReadModelChange> {
    vec![
        ReadModelChange::HistoryEntry {
            user: recipient,
            entry: HistoryEntry {
                sort_key: message.history_key(),
                message: message.clone(),
            },
        },
        ReadModelChange::InboxEntry {
            user: recipient,
            entry: InboxEntry { position, message },
        },
    ]
}

/// What one event changes in the read models. Pure: the same event always gives the same
/// changes, and every change is idempotent, so duplicates and reordering are harmless.
pub fn project(recorded: &RecordedEvent) -> Vec<ReadModelChange> {
    let version = recorded.version;
    match &recorded.event {
        Event::MessageDelivered { .. } => MessageView::of_delivery(&recorded.event)
            .map(|(recipient, message)| delivery_changes(recipient, message, version))
            .unwrap_or_default(),
        Event::UserRegistered {
            user_id,
            display_name,
        } => vec![ReadModelChange::User {
            user: *user_id,
            display_name: display_name.clone(),
        }],
        Event::TokenIssued { .. } | Event::TokenRevoked { .. } => Vec::new(),
        Event::UserBlocked { blocker, blocked } => vec![ReadModelChange::Block {
            blocker: *blocker,
            blocked: *blocked,
            active: true,
            version,
        }],
        Event::UserUnblocked { blocker, blocked } => vec![ReadModelChange::Block {
            blocker: *blocker,
            blocked: *blocked,
            active: false,
            version,
        }],
        Event::GroupCreated {
            group_id,
            name,
            admin,
            members,
        } => {
            let mut changes = vec![ReadModelChange::Group {
                group: *group_id,
                name: name.clone(),
                admin: *admin,
            }];
            changes.extend(members.iter().map(|user| ReadModelChange::Membership {
                group: *group_id,
                user: *user,
                member: true,
                version,
            }));
            changes
        }
        Event::MemberAdded {
            group_id, user_id, ..
        } => vec![ReadModelChange::Membership {
            group: *group_id,
            user: *user_id,
            member: true,
            version,
        }],
        Event::MemberRemoved {
            group_id, user_id, ..
        } => vec![ReadModelChange::Membership {
            group: *group_id,
            user: *user_id,
            member: false,
            version,
        }],
        Event::DirectMessageSent {
            message_id,
            sender,
            receiver,
            text,
            sent_at,
            ..
        } => sent(
            recorded,
            MessageView {
                message_id: *message_id,
                sender_id: *sender,
                receiver_id: Some(*receiver),
                group_id: None,
                message: text.clone(),
                sent_at: *sent_at,
            },
        ),
        Event::GroupMessageSent {
            message_id,
            sender,
            group_id,
            text,
            sent_at,
            ..
        } => sent(
            recorded,
            MessageView {
                message_id: *message_id,
                sender_id: *sender,
                receiver_id: None,
                group_id: Some(*group_id),
                message: text.clone(),
                sent_at: *sent_at,
            },
        ),
        Event::MessageDispatched { message_id, .. } | Event::MessageRejected { message_id, .. } => {
            vec![ReadModelChange::Settled {
                message_id: *message_id,
            }]
        }
        Event::MessagesRead { user_id, up_to } => vec![ReadModelChange::ReadMarker {
            user: *user_id,
            up_to: *up_to,
        }],
    }
}

/// A sent message enters the sender's history at once and waits for its outcome.
fn sent(recorded: &RecordedEvent, message: MessageView) -> Vec<ReadModelChange> {
    vec![
        ReadModelChange::HistoryEntry {
            user: message.sender_id,
            entry: HistoryEntry {
                sort_key: message.history_key(),
                message: message.clone(),
            },
        },
        ReadModelChange::Pending {
            work: PendingWork {
                message_id: message.message_id,
                accepted_at: message.sent_at,
                sent: recorded.clone(),
            },
        },
    ]
}

/// The changes of a batch of events, in order.
pub fn project_batch<'a>(
    events: impl IntoIterator<Item = &'a RecordedEvent>,
) -> Vec<ReadModelChange> {
    events.into_iter().flat_map(project).collect()
}

/// Applies batches of events to a read store: the projector that the change feed (or a
/// DynamoDB stream) drives.
#[derive(Clone)]
pub struct Projector {
    store: Arc<dyn ReadStore>,
}

impl Projector {
    /// A projector writing to `store`.
    pub fn new(store: Arc<dyn ReadStore>) -> Self {
        Self { store }
    }

    /// Projects a batch; on error nothing may be assumed applied and the batch is retried.
    pub async fn handle(&self, events: &[RecordedEvent]) -> Result<(), ReadStoreError> {
        let changes = project_batch(events);
        if changes.is_empty() {
            return Ok(());
        }
        self.store.apply(&changes).await
    }
}
