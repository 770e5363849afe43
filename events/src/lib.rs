//! The facts of the messaging domain and the ports through which they are stored and moved.
//!
//! Nothing here knows about AWS or SQLite: adapters implement [`EventStore`], [`WorkQueue`] and
//! [`ChangeFeed`]; the write side (`messaging-commands`) and the read side
//! (`messaging-projections`) only talk to these traits.

mod clock;
mod event;
mod feed;
mod ids;
mod log;
mod queue;
mod store;
mod stored;
mod values;

pub use clock::{Clock, SystemClock, Timestamp};
pub use event::{Event, RejectionReason};
pub use feed::{ChangeFeed, FeedError, FeedPage, FeedRecord};
pub use ids::{GroupId, MessageId, StreamId, UserId};
pub use log::{EventLog, LogPage};
pub use queue::{QueueError, QueueMessage, WorkItem, WorkQueue};
pub use store::{
    AppendError, AppendRequest, Claim, EventStore, NewEvent, RecordedEvent, StoreError,
    StreamAppend, VersionCheck, MAX_ITEMS_PER_APPEND, MAX_ITEM_BYTES,
};
pub use stored::{decode_json, StoredEvent, UpcastError, CURRENT_SCHEMA_VERSION};
pub use values::{DisplayName, GroupName, LimitError, Limits, MessageText, ValueError};
