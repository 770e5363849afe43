use crate::{Cursor, InboxEntry, MessageView, ReadStore, ReadStoreError};
use messaging_events::UserId;
use std::sync::Arc;

/// A query failure.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The cursor was not made by this server.
    #[error("malformed cursor")]
    BadCursor,
    /// The read store failed.
    #[error(transparent)]
    Store(#[from] ReadStoreError),
}

/// One page of a user's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Messages, oldest first.
    pub messages: Vec<MessageView>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// The query handlers: they only read read models.
#[derive(Clone)]
pub struct Queries {
    store: Arc<dyn ReadStore>,
}

impl Queries {
    /// Queries over `store`.
    pub fn new(store: Arc<dyn ReadStore>) -> Self {
        Self { store }
    }

    /// A page of the user's whole history (sent and received), oldest first.
    pub async fn history(
        &self,
        user: UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, QueryError> {
        let after = match cursor {
            Some(text) => Some(Cursor::decode_history(text).map_err(|_| QueryError::BadCursor)?),
            None => None,
        };
        // One extra row tells whether another page exists without a second read.
        let mut entries = self
            .store
            .history_after(user, after.as_deref(), limit + 1)
            .await?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next_cursor = match (more, entries.last()) {
            (true, Some(last)) => Some(Cursor::History(last.sort_key.clone()).encode()),
            _ => None,
        };
        Ok(HistoryPage {
            messages: entries.into_iter().map(|e| e.message).collect(),
            next_cursor,
        })
    }

    /// Up to `limit` inbox entries after `position`, stopping at the first gap.
    ///
    /// Inbox positions are dense (they are the versions of the user's inbox stream), so a gap
    /// means a delivery that the projector has not written yet. Stopping there is what keeps
    /// a read marker from ever skipping a message that arrives out of order.
    pub async fn inbox_after(
        &self,
        user: UserId,
        position: u64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, QueryError> {
        let entries = self.store.inbox_after(user, position, limit).await?;
        Ok(contiguous_from(position, entries))
    }
}

/// The entries that follow `position` without a gap.
fn contiguous_from(position: u64, entries: Vec<InboxEntry>) -> Vec<InboxEntry> {
    let mut expected = position + 1;
    entries
        .into_iter()
        .take_while(|entry| {
            let next = entry.position == expected;
            expected += 1;
            next
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_events::{MessageId, Timestamp};

    fn entry(position: u64) -> InboxEntry {
        InboxEntry {
            position,
            message: MessageView {
                message_id: MessageId::new_random(),
                sender_id: UserId::new_random(),
                receiver_id: None,
                group_id: None,
                message: "m".into(),
                sent_at: Timestamp(0),
            },
        }
    }

    #[test]
    fn given_a_gap_when_reading_the_inbox_then_it_stops_before_the_gap() {
        let got = contiguous_from(3, vec![entry(4), entry(5), entry(7), entry(8)]);
        let positions: Vec<u64> = got.iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![4, 5]);
    }

    #[test]
    fn given_the_next_position_missing_then_nothing_is_returned() {
        assert!(contiguous_from(3, vec![entry(5)]).is_empty());
    }
}
