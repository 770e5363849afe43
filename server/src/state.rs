//! What every request handler shares: the command handlers and the limits.

use messaging_commands::{CommandHandlers, Dependencies};
use messaging_embedded::Embedded;
use messaging_events::{Clock, EventStore, Limits, WorkQueue};
use messaging_projections::ReadStore;
use std::sync::Arc;

/// The state of the router; cheap to clone (everything inside is shared).
#[derive(Clone)]
pub struct AppState {
    /// The command and query handlers.
    pub handlers: CommandHandlers,
    /// The limits the handlers were built with; the body limit is enforced by the router.
    pub limits: Limits,
}

impl AppState {
    /// Builds the handlers over the embedded store's parts.
    pub fn embedded(embedded: &Embedded, clock: Arc<dyn Clock>, limits: Limits) -> AppState {
        let store: Arc<dyn EventStore> = embedded.events.clone();
        let read: Arc<dyn ReadStore> = embedded.read.clone();
        let direct_queue: Arc<dyn WorkQueue> = embedded.direct_queue.clone();
        let group_queue: Arc<dyn WorkQueue> = embedded.group_queue.clone();
        let handlers = CommandHandlers::new(Dependencies {
            store,
            read,
            direct_queue,
            group_queue,
            clock,
            limits,
        });
        AppState { handlers, limits }
    }
}
