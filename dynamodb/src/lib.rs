//! The AWS adapter: the event store and claims on DynamoDB (conditional writes,
//! `TransactWriteItems`), the read models on DynamoDB tables, the change feed read from
//! DynamoDB Streams, and the work queues on SQS. Table and queue names come from a prefix.
//! For replay, the event table read as a whole ([`DynamoEventLog`]) and the read models'
//! generations ([`DynamoCatalog`]).

mod config;
mod connections;
mod error;
mod event_item;
mod event_log;
mod event_store;
mod event_tables;
mod generations;
mod queues;
mod read_error;
mod read_store;
mod read_tables;
mod request_counter;
mod sdk_config;
mod sqs_queue;
mod stream_poller;

pub use config::{AwsClients, ResourceNames};
pub use connections::{
    connections_table, create_connections_table, DynamoConnections, BY_CONNECTION, CONNECTIONS,
    EXPIRES_AT,
};
pub use error::DynamoError;
pub use event_item::{EventItem, ItemError};
pub use event_log::{DynamoEventLog, DEFAULT_SEGMENTS};
pub use event_store::DynamoEventStore;
pub use event_tables::{checkpoints_table, create_event_tables};
pub use generations::{
    create_generations_table, generation_names, generations_table, DynamoCatalog,
};
pub use queues::{
    create_queues, dead_letter_queue_name, queue_urls, QueueUrls, MAX_RECEIVE_COUNT,
    VISIBILITY_TIMEOUT_SECS,
};
pub use read_error::ReadError;
pub use read_store::DynamoReadStore;
pub use read_tables::{create_read_tables, read_table_names};
pub use request_counter::RequestCounter;
pub use sdk_config::{https_client, load_sdk_config, sdk_config_loader};
pub use sqs_queue::SqsQueue;
pub use stream_poller::{StreamBatch, StreamPoller};

#[cfg(feature = "testing")]
pub mod testing;
