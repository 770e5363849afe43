//! The router's state over the embedded store.

use messaging_commands::{Dependencies, Dispatch};
use messaging_embedded::Embedded;
use messaging_events::{Clock, Limits};
use messaging_http::AppState;
use messaging_projections::ReadStore;
use std::sync::Arc;

/// Builds the handlers over the embedded store's parts and `read` (its read models, usually
/// through their generations).
pub fn embedded_state(
    embedded: &Embedded,
    read: Arc<dyn ReadStore>,
    clock: Arc<dyn Clock>,
    limits: Limits,
) -> AppState {
    AppState::new(Dependencies {
        store: embedded.events.clone(),
        read,
        direct_queue: embedded.direct_queue.clone(),
        group_queue: embedded.group_queue.clone(),
        clock,
        limits,
        dispatch: Dispatch::ChangeFeed,
    })
}
