use super::{back_off, contended, parse_user, require_self, CommandHandlers, MAX_ATTEMPTS};
use crate::{CommandError, GetAllMessages, GetNewMessages, NewMessages};
use messaging_events::{AppendError, AppendRequest, Event, NewEvent, StreamId, UserId};
use messaging_projections::{Cursor, HistoryPage};

impl CommandHandlers {
    /// `GET /get-new-messages`: messages delivered to the caller that no earlier call returned,
    /// oldest first; moves the read marker past them.
    ///
    /// The marker lives in the caller's `reads-*` stream and moves with a conditional append,
    /// so two concurrent polls cannot both return the same messages: the loser re-reads the
    /// marker and continues after the winner.
    pub async fn get_new_messages(
        &self,
        actor: UserId,
        query: GetNewMessages,
    ) -> Result<NewMessages, CommandError> {
        let user = parse_user("user_id", &query.user_id)?;
        require_self(actor, user, "user_id")?;
        let limit = self.page_size(query.limit.as_deref())?;
        let since = query
            .since
            .as_deref()
            .map(Cursor::decode_inbox)
            .transpose()
            .map_err(|_| CommandError::Invalid("since is not a valid cursor".into()))?;
        let stream = StreamId::reads(user);
        for _ in 0..MAX_ATTEMPTS {
            let (version, last) = self.head(&stream).await?;
            let marker = match last {
                Some(Event::MessagesRead { up_to, .. }) => up_to,
                _ => 0,
            };
            let start = since.unwrap_or(marker);
            let entries = self.queries.inbox_after(user, start, limit).await?;
            let end = entries.last().map_or(start, |e| e.position);
            if end > marker {
                let request = AppendRequest::single(
                    stream.clone(),
                    version,
                    vec![NewEvent::new(Event::MessagesRead {
                        user_id: user,
                        up_to: end,
                    })],
                );
                match self.deps.store.append(request).await {
                    Ok(_) => {}
                    Err(AppendError::Conflict { .. }) => {
                        back_off().await;
                        continue;
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            return Ok(NewMessages {
                messages: entries.into_iter().map(|e| e.message).collect(),
                cursor: Cursor::Inbox(end).encode(),
            });
        }
        Err(contended())
    }

    /// `GET /get-all-messages`: a page of the caller's whole history, oldest first.
    pub async fn get_all_messages(
        &self,
        actor: UserId,
        query: GetAllMessages,
    ) -> Result<HistoryPage, CommandError> {
        let user = parse_user("user_id", &query.user_id)?;
        require_self(actor, user, "user_id")?;
        let limit = self.page_size(query.limit.as_deref())?;
        Ok(self
            .queries
            .history(user, query.cursor.as_deref(), limit)
            .await?)
    }

    /// Parses `limit`: 1 to the page-size limit, which is also the default.
    fn page_size(&self, limit: Option<&str>) -> Result<usize, CommandError> {
        let max = self.deps.limits.max_page_size;
        let Some(text) = limit else { return Ok(max) };
        match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(CommandError::Invalid(format!(
                "limit must be an integer from 1 to {max}"
            ))),
        }
    }
}
