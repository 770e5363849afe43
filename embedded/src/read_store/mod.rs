//! The read models in `read.sqlite3`.

mod apply;
mod queries;

use crate::connection::CacheSize;
use crate::readers::Readers;
use crate::writer::Writer;
use crate::{connection, schema, EmbeddedError};
use async_trait::async_trait;
use messaging_events::{GroupId, Timestamp, UserId};
use messaging_projections::{
    HistoryEntry, InboxEntry, PendingWork, ReadModelChange, ReadStore, ReadStoreError,
};
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The read-model store: projectors write through `apply`, queries read by primary key.
pub struct EmbeddedReadStore {
    writer: Arc<Writer>,
    readers: Arc<Readers>,
    rows_read: AtomicU64,
}

impl EmbeddedReadStore {
    /// Opens (creating if missing) read models in their own file; [`crate::Embedded::open`]
    /// uses `{data_dir}/read.sqlite3`, and a replay can rebuild into a fresh file.
    pub fn open(file: &Path) -> Result<Self, EmbeddedError> {
        let conn = connection::open_writer(file, &schema::READ, CacheSize::Large)?;
        Ok(Self {
            writer: Arc::new(Writer::start("read", conn)?),
            readers: Readers::new(file.to_path_buf()),
            rows_read: AtomicU64::new(0),
        })
    }

    /// Total rows returned by the query methods so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
    }

    /// Runs a query and counts the rows it returned.
    async fn query<F, T>(&self, query: F, rows: fn(&T) -> usize) -> Result<T, ReadStoreError>
    where
        F: FnOnce(&Connection) -> Result<T, EmbeddedError> + Send + 'static,
        T: Send + 'static,
    {
        let result = self.readers.read(query).await?;
        let count = u64::try_from(rows(&result)).unwrap_or(u64::MAX);
        self.rows_read.fetch_add(count, Ordering::Relaxed);
        Ok(result)
    }
}

#[async_trait]
impl ReadStore for EmbeddedReadStore {
    async fn apply(&self, changes: &[ReadModelChange]) -> Result<(), ReadStoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let changes = changes.to_vec();
        self.writer
            .write(move |conn| apply::apply_all(conn, &changes))
            .await?;
        Ok(())
    }

    async fn inbox_after(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, ReadStoreError> {
        self.query(
            move |conn| queries::inbox_after(conn, user, after, limit),
            Vec::len,
        )
        .await
    }

    async fn history_after(
        &self,
        user: UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ReadStoreError> {
        let after = after.map(str::to_string);
        self.query(
            move |conn| queries::history_after(conn, user, after.as_deref(), limit),
            Vec::len,
        )
        .await
    }

    async fn read_marker(&self, user: UserId) -> Result<u64, ReadStoreError> {
        let marker = self
            .query(
                move |conn| queries::read_marker(conn, user),
                |m| usize::from(m.is_some()),
            )
            .await?;
        Ok(marker.unwrap_or(0))
    }

    async fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>, ReadStoreError> {
        self.query(
            move |conn| queries::group_members(conn, group),
            |members| members.as_ref().map_or(0, Vec::len),
        )
        .await
    }

    async fn blocked_by(&self, blocker: UserId) -> Result<Vec<UserId>, ReadStoreError> {
        self.query(move |conn| queries::blocked_by(conn, blocker), Vec::len)
            .await
    }

    async fn pending_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingWork>, ReadStoreError> {
        self.query(
            move |conn| queries::pending_before(conn, before, limit),
            Vec::len,
        )
        .await
    }
}
