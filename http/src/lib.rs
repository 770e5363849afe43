//! The REST API: extraction and validation of requests, one command handler per endpoint,
//! RFC 9457 problem responses and request ids. Drivers (the local server, the HTTP Lambda)
//! serve this router; it knows nothing of where the ports are implemented.

mod extract;
mod fallback;
pub mod openapi;
mod problem;
pub mod rate_limit;
mod request_context;
mod routes;
mod state;
mod views;

pub use extract::bearer_token_of;
pub use problem::{Problem, PROBLEM_JSON};
pub use rate_limit::{RateLimit, RateLimiter, RATE_LIMIT_VAR};
pub use request_context::X_REQUEST_ID;
pub use routes::router;
pub use state::AppState;
