//! The AWS adapter: the event store and claims on DynamoDB (conditional writes,
//! `TransactWriteItems`), the read models on DynamoDB tables, the change feed read from
//! DynamoDB Streams, and the work queues on SQS. Table and queue names come from a prefix.

mod config;

pub use config::{AwsClients, ResourceNames};

#[cfg(feature = "testing")]
pub mod testing;
