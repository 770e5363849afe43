//! The read side: projectors turn events into read-model changes, adapters apply them, and the
//! query handlers answer the GET endpoints from the read models alone.

mod catalog;
mod cursor;
mod generation;
mod generational;
mod model;
mod notify;
mod projector;
mod queries;
pub mod replay;
mod store;

pub use catalog::{Dump, GenerationCatalog};
pub use cursor::{Cursor, CursorError};
pub use generation::{Building, GenerationMap, Projection, Purpose, SegmentProgress};
pub use generational::GenerationalReadStore;
pub use model::{HistoryEntry, InboxEntry, MessageView, PendingWork, ReadModelChange};
pub use notify::{
    long_poll, message_json, Delivery, DeliveryListener, InboxWaiter, NotifyingReadStore,
    PollingWaiter, Wake, Wakeup, MAX_LONG_POLL,
};
pub use projector::{project, project_batch, Projector};
pub use queries::{HistoryPage, Queries, QueryError};
pub use store::{ReadStore, ReadStoreError};

#[cfg(test)]
mod memory;
#[cfg(test)]
mod projector_tests;
