//! The Lambda handlers driven with the events Lambda delivers (JSON fixtures in
//! `tests/fixtures/`), over the embedded store: a real adapter of the same ports the DynamoDB
//! adapter implements (which is tested on moto in its own crate).

mod helpers;
mod http;
mod notifier;
mod sqs;
mod stream;
mod sweep;
