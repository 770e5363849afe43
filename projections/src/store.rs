use crate::{HistoryEntry, InboxEntry, PendingWork, ReadModelChange};
use async_trait::async_trait;
use messaging_events::{GroupId, Timestamp, UserId};

/// A read-store failure.
#[derive(Debug, thiserror::Error)]
pub enum ReadStoreError {
    /// Temporary failure; retry.
    #[error("read store unavailable: {0}")]
    Unavailable(String),
    /// Stored data this build cannot read.
    #[error("corrupt read model: {0}")]
    Corrupt(String),
}

/// The read-model port. Projectors are its only writers (through [`ReadStore::apply`]); query
/// handlers only read. Every read is bounded by its `limit`, never by a user's history.
#[async_trait]
pub trait ReadStore: Send + Sync {
    /// Applies changes idempotently (see [`ReadModelChange`]).
    async fn apply(&self, changes: &[ReadModelChange]) -> Result<(), ReadStoreError>;

    /// Up to `limit` inbox entries of `user` with position > `after`, by position.
    async fn inbox_after(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, ReadStoreError>;

    /// Up to `limit` history entries of `user` with sort key > `after`, by sort key.
    async fn history_after(
        &self,
        user: UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ReadStoreError>;

    /// The user's projected read marker (0 if none).
    async fn read_marker(&self, user: UserId) -> Result<u64, ReadStoreError>;

    /// Current members of a group, if the group exists.
    async fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>, ReadStoreError>;

    /// Users that `blocker` currently blocks.
    async fn blocked_by(&self, blocker: UserId) -> Result<Vec<UserId>, ReadStoreError>;

    /// Up to `limit` unsettled messages accepted before `before`, oldest first.
    async fn pending_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingWork>, ReadStoreError>;
}
