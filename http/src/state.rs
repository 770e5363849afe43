//! What every request handler shares: the command handlers and the limits.

use messaging_commands::{CommandHandlers, Dependencies};
use messaging_events::Limits;

/// The state of the router; cheap to clone (everything inside is shared).
#[derive(Clone)]
pub struct AppState {
    /// The command and query handlers.
    pub handlers: CommandHandlers,
    /// The limits the handlers were built with; the body limit is enforced by the router.
    pub limits: Limits,
}

impl AppState {
    /// Builds the handlers over the given ports.
    pub fn new(deps: Dependencies) -> AppState {
        let limits = deps.limits;
        AppState {
            handlers: CommandHandlers::new(deps),
            limits,
        }
    }
}
