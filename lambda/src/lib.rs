//! The AWS Lambda drivers: thin functions over the same core the local server runs.
//!
//! | function | event | handler |
//! |---|---|---|
//! | `messaging-http` | API Gateway HTTP API (payload v2) | [`messaging_http::router`] |
//! | `messaging-direct-processor` | SQS FIFO `direct.fifo` | [`handle_sqs_batch`] |
//! | `messaging-group-processor` | SQS FIFO `group.fifo` | [`handle_sqs_batch`] |
//! | `messaging-projector` | DynamoDB stream of the event table | [`handle_stream_batch`] |
//! | `messaging-sweeper` | EventBridge schedule (every minute) | [`handle_sweep`] |
//! | `messaging-notifier` | DynamoDB stream of the event table (`MessageDelivered`) | [`notifier::handle_notify_batch`] |
//! | `messaging-connections` | API Gateway WebSocket `$connect`/`$disconnect` | [`notifier::handle_connection_event`] |
//!
//! The handlers take the domain's [`Processor`](messaging_commands::Processor) and
//! [`Projector`](messaging_projections::Projector), which sit on the ports: they are tested over
//! the embedded store and run over DynamoDB/SQS (wired in [`config`]). Both report partial batch
//! failures, so one bad record never makes Lambda redo (or drop) a whole batch.

pub mod config;
pub mod logging;
pub mod notifier;
pub mod sqs;
pub mod stream;
pub mod sweep;

pub use sqs::handle_sqs_batch;
pub use stream::handle_stream_batch;
pub use sweep::{handle_sweep, SweepReport};
