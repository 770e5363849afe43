//! The router's state over the embedded store.

use messaging_commands::Dependencies;
use messaging_embedded::Embedded;
use messaging_events::{Clock, Limits};
use messaging_http::AppState;
use std::sync::Arc;

/// Builds the handlers over the embedded store's parts.
pub fn embedded_state(embedded: &Embedded, clock: Arc<dyn Clock>, limits: Limits) -> AppState {
    AppState::new(Dependencies {
        store: embedded.events.clone(),
        read: embedded.read.clone(),
        direct_queue: embedded.direct_queue.clone(),
        group_queue: embedded.group_queue.clone(),
        clock,
        limits,
    })
}
