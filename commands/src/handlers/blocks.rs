use super::{contended, parse_user, require_self, Appended, CommandHandlers, MAX_ATTEMPTS};
use crate::decide::blocks::{decide_block, decide_unblock, BlockersState};
use crate::decide::DomainError;
use crate::idempotency::Idempotency;
use crate::{BlockUser, CommandError, Done};
use messaging_events::{AppendRequest, Event, NewEvent, StreamId, UserId};

/// Which of the two block commands.
#[derive(Clone, Copy)]
enum BlockCommand {
    Block,
    Unblock,
}

impl CommandHandlers {
    /// `POST /block-user`: the caller stops receiving messages from `blocked_user_id`.
    pub async fn block_user(
        &self,
        actor: UserId,
        body: BlockUser,
        idempotency_key: Option<&str>,
    ) -> Result<Done, CommandError> {
        self.change_block(actor, body, idempotency_key, BlockCommand::Block)
            .await
    }

    /// `POST /unblock-user`: the caller receives later messages from `blocked_user_id` again.
    pub async fn unblock_user(
        &self,
        actor: UserId,
        body: BlockUser,
        idempotency_key: Option<&str>,
    ) -> Result<Done, CommandError> {
        self.change_block(actor, body, idempotency_key, BlockCommand::Unblock)
            .await
    }

    async fn change_block(
        &self,
        actor: UserId,
        body: BlockUser,
        idempotency_key: Option<&str>,
        command: BlockCommand,
    ) -> Result<Done, CommandError> {
        let blocker = parse_user("user_id", &body.user_id)?;
        let blocked = parse_user("blocked_user_id", &body.blocked_user_id)?;
        require_self(actor, blocker, "user_id")?;
        if blocker == blocked {
            return Err(DomainError::SelfBlock.into());
        }
        let endpoint = match command {
            BlockCommand::Block => "block-user",
            BlockCommand::Unblock => "unblock-user",
        };
        let idem = Idempotency::new(&actor.to_string(), endpoint, idempotency_key, &body)?;
        if let Some(done) = self.replayed(idem.as_ref()).await? {
            return Ok(done);
        }
        self.require_users(&[blocked]).await?;
        let stream = StreamId::blocks_of(blocked);
        for _ in 0..MAX_ATTEMPTS {
            let (version, events) = self.read(&stream).await?;
            let state = BlockersState::from_events(&events);
            let new_events: Vec<Event> = match command {
                BlockCommand::Block => decide_block(&state, blocker, blocked)?,
                BlockCommand::Unblock => decide_unblock(&state, blocker, blocked)?,
            };
            let request = if new_events.is_empty() {
                AppendRequest::default()
            } else {
                AppendRequest::single(
                    stream.clone(),
                    version,
                    new_events.into_iter().map(NewEvent::new).collect(),
                )
            };
            match self.commit(request, idem.as_ref(), &Done::ok()).await? {
                Appended::Committed(_) => {
                    tracing::info!(user_id = %blocker, blocked_user_id = %blocked, endpoint, "block changed");
                    return Ok(Done::ok());
                }
                Appended::Replayed(done) => return Ok(done),
                Appended::Retry => continue,
            }
        }
        Err(contended())
    }
}
