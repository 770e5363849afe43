//! End-to-end tests of the `messaging` binary over its REST API.
//!
//! Every test starts its own server (on a fresh temporary data directory, a
//! random port) and speaks HTTP to it, so tests run in parallel.

mod auth;
mod bad_input;
mod blocks;
mod crash;
mod crash_random;
mod groups;
mod happy_path;
mod helpers;
mod idempotency;
mod large_history;
mod long_poll;
mod new_messages;
mod pagination;
mod rate_limit;
mod replay;
mod restart;
mod revocation;
mod websocket;
