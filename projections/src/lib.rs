//! The read side: projectors turn events into read-model changes, adapters apply them, and the
//! query handlers answer the GET endpoints from the read models alone.

mod cursor;
mod model;
mod projector;
mod queries;
mod store;

pub use cursor::{Cursor, CursorError};
pub use model::{HistoryEntry, InboxEntry, MessageView, PendingWork, ReadModelChange};
pub use projector::{project, project_batch, Projector};
pub use queries::{HistoryPage, Queries, QueryError};
pub use store::{ReadStore, ReadStoreError};

#[cfg(test)]
mod memory;
#[cfg(test)]
mod projector_tests;
