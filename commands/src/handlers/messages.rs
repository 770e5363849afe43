use super::{
    contended, parse_user, require_self, Appended, CommandHandlers, Dispatch, MAX_ATTEMPTS,
};
use crate::decide::group::decide_send;
use crate::idempotency::Idempotency;
use crate::{Accepted, CommandError, SendGroupMessage, SendMessage};
use messaging_events::{
    AppendRequest, Event, GroupId, MessageId, MessageText, NewEvent, RecordedEvent, StreamAppend,
    StreamId, Timestamp, UserId, VersionCheck, WorkItem, WorkQueue,
};
use std::sync::Arc;
use tracing::Instrument;

/// What a send pins at acceptance besides the message itself.
struct Pinned {
    outbox_version: u64,
    sent_at: Timestamp,
    blocks_version: u64,
}

impl CommandHandlers {
    /// `POST /send-message`: accepts a direct message (202) for asynchronous delivery.
    pub async fn send_message(
        &self,
        actor: UserId,
        body: SendMessage,
        idempotency_key: Option<&str>,
    ) -> Result<Accepted, CommandError> {
        let sender = parse_user("sender_id", &body.sender_id)?;
        let receiver = parse_user("receiver_id", &body.receiver_id)?;
        require_self(actor, sender, "sender_id")?;
        let text = MessageText::parse(body.message.clone(), &self.deps.limits)?.into_inner();
        let idem = Idempotency::new(&actor.to_string(), "send-message", idempotency_key, &body)?;
        if let Some(done) = self.replayed(idem.as_ref()).await? {
            return Ok(done);
        }
        self.require_users(&[receiver]).await?;
        let message_id = MessageId::new_time_ordered();
        let response = Accepted {
            message_id: message_id.to_string(),
        };
        for _ in 0..MAX_ATTEMPTS {
            let pinned = self.pin(sender).await?;
            let event = Event::DirectMessageSent {
                message_id,
                sender,
                receiver,
                text: text.clone(),
                sent_at: pinned.sent_at,
                blocks_version: pinned.blocks_version,
            };
            let request = self.send_request(sender, &pinned, event, Vec::new());
            match self.commit(request, idem.as_ref(), &response).await? {
                Appended::Committed(recorded) => {
                    tracing::info!(%message_id, sender_id = %sender, receiver_id = %receiver, "direct message accepted");
                    self.enqueue(&self.deps.direct_queue, recorded).await;
                    return Ok(response);
                }
                Appended::Replayed(done) => return Ok(done),
                Appended::Retry => continue,
            }
        }
        Err(contended())
    }

    /// `POST /send-group-message`: accepts a group message (202) from a current member.
    pub async fn send_group_message(
        &self,
        actor: UserId,
        body: SendGroupMessage,
        idempotency_key: Option<&str>,
    ) -> Result<Accepted, CommandError> {
        let sender = parse_user("sender_id", &body.sender_id)?;
        let group_id = GroupId::parse(&body.group_id)
            .ok_or_else(|| CommandError::Invalid("group_id is not a valid id".into()))?;
        require_self(actor, sender, "sender_id")?;
        let text = MessageText::parse(body.message.clone(), &self.deps.limits)?.into_inner();
        let idem = Idempotency::new(
            &actor.to_string(),
            "send-group-message",
            idempotency_key,
            &body,
        )?;
        if let Some(done) = self.replayed(idem.as_ref()).await? {
            return Ok(done);
        }
        let message_id = MessageId::new_time_ordered();
        let response = Accepted {
            message_id: message_id.to_string(),
        };
        let group_stream = StreamId::group(group_id);
        for _ in 0..MAX_ATTEMPTS {
            let (group_version, group) = self.group(group_id).await?;
            decide_send(&group, sender)?;
            let pinned = self.pin(sender).await?;
            let event = Event::GroupMessageSent {
                message_id,
                sender,
                group_id,
                text: text.clone(),
                sent_at: pinned.sent_at,
                group_version,
                blocks_version: pinned.blocks_version,
            };
            // The membership that allowed the send must still hold when it commits.
            let check = VersionCheck {
                stream: group_stream.clone(),
                version: group_version,
            };
            let request = self.send_request(sender, &pinned, event, vec![check]);
            match self.commit(request, idem.as_ref(), &response).await? {
                Appended::Committed(recorded) => {
                    tracing::info!(%message_id, sender_id = %sender, %group_id, "group message accepted");
                    self.enqueue(&self.deps.group_queue, recorded).await;
                    return Ok(response);
                }
                Appended::Replayed(done) => return Ok(done),
                Appended::Retry => continue,
            }
        }
        Err(contended())
    }

    /// Reads what a send pins: the sender's outbox head (for order and a monotonic send time)
    /// and the version of the sender's blocks.
    async fn pin(&self, sender: UserId) -> Result<Pinned, CommandError> {
        let (outbox_version, last) = self.head(&StreamId::outbox(sender)).await?;
        let blocks_version = self
            .deps
            .store
            .stream_version(&StreamId::blocks_of(sender))
            .await?;
        let now = self.deps.clock.now();
        let sent_at = match last {
            Some(Event::DirectMessageSent { sent_at, .. })
            | Some(Event::GroupMessageSent { sent_at, .. }) => now.max(sent_at.next()),
            _ => now,
        };
        Ok(Pinned {
            outbox_version,
            sent_at,
            blocks_version,
        })
    }

    /// The append of a send: the event on the sender's outbox, with the sender's blocks (and
    /// any other pinned stream) checked unchanged in the same transaction, so that a block
    /// acknowledged before the acceptance is always part of the pinned state.
    fn send_request(
        &self,
        sender: UserId,
        pinned: &Pinned,
        event: Event,
        mut checks: Vec<VersionCheck>,
    ) -> AppendRequest {
        checks.push(VersionCheck {
            stream: StreamId::blocks_of(sender),
            version: pinned.blocks_version,
        });
        AppendRequest {
            appends: vec![StreamAppend {
                stream: StreamId::outbox(sender),
                expected_version: pinned.outbox_version,
                events: vec![NewEvent::new(event)],
            }],
            checks,
            claims: Vec::new(),
        }
    }

    /// Hands accepted work to a processor as [`super::Dependencies::dispatch`] says.
    async fn enqueue(&self, queue: &Arc<dyn WorkQueue>, recorded: Vec<RecordedEvent>) {
        match self.deps.dispatch {
            Dispatch::Enqueue => enqueue(Arc::clone(queue), recorded).await,
            Dispatch::EnqueueInBackground => {
                let queue = Arc::clone(queue);
                tokio::spawn(enqueue(queue, recorded).in_current_span());
            }
            Dispatch::ChangeFeed => {}
        }
    }
}

/// A failure here loses nothing: the event is durable and the sweep re-enqueues work that has
/// no outcome.
async fn enqueue(queue: Arc<dyn WorkQueue>, recorded: Vec<RecordedEvent>) {
    let items: Vec<WorkItem> = recorded.into_iter().map(|sent| WorkItem { sent }).collect();
    if let Err(error) = queue.enqueue(items).await {
        tracing::warn!(%error, "enqueue failed; the sweep will re-enqueue");
    }
}
