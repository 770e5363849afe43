//! Creates the write side's tables (events, claims, stream checkpoints) where they are missing:
//! for emulators and development accounts. Production stacks create them with CloudFormation.

use crate::error::classify;
use crate::{AwsClients, DynamoError, ResourceNames};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus,
};
use std::time::{Duration, Instant};

/// How long to wait for a new table to become ACTIVE (AWS takes seconds, emulators none).
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);
/// The first pause between status checks; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(100);
/// The longest pause between status checks.
const MAX_POLL: Duration = Duration::from_secs(2);

/// The checkpoints table of the stream poller: one item per (consumer, shard).
pub fn checkpoints_table(names: &ResourceNames) -> String {
    names.name("checkpoints")
}

/// Creates the events table (stream `NEW_IMAGE`), the claims table and the stream checkpoints
/// table if they do not exist, and waits until all three are ACTIVE. Idempotent.
pub async fn create_event_tables(
    clients: &AwsClients,
    names: &ResourceNames,
) -> Result<(), DynamoError> {
    let tables = [
        TableSpec {
            name: names.events_table(),
            hash: "stream",
            range: Some(("version", ScalarAttributeType::N)),
            stream: true,
        },
        TableSpec {
            name: names.claims_table(),
            hash: "key",
            range: None,
            stream: false,
        },
        TableSpec {
            name: checkpoints_table(names),
            hash: "consumer",
            range: Some(("shard", ScalarAttributeType::S)),
            stream: false,
        },
    ];
    for table in &tables {
        create_if_missing(&clients.dynamodb, table).await?;
    }
    for table in &tables {
        wait_until_active(&clients.dynamodb, &table.name).await?;
    }
    Ok(())
}

/// The shape of one table: string hash key, optional range key.
struct TableSpec {
    name: String,
    hash: &'static str,
    range: Option<(&'static str, ScalarAttributeType)>,
    stream: bool,
}

async fn create_if_missing(
    client: &aws_sdk_dynamodb::Client,
    table: &TableSpec,
) -> Result<(), DynamoError> {
    let mut request = client
        .create_table()
        .table_name(&table.name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(table.hash, ScalarAttributeType::S)?)
        .key_schema(key(table.hash, KeyType::Hash)?);
    if let Some((range, kind)) = &table.range {
        request = request
            .attribute_definitions(attribute(range, kind.clone())?)
            .key_schema(key(range, KeyType::Range)?);
    }
    if table.stream {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(|e| setup(&table.name, e))?,
        );
    }
    match request.send().await {
        Ok(_) => {
            tracing::info!(table = %table.name, "created table");
            Ok(())
        }
        // Someone (another process, an earlier run) created it already: that is the goal.
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(error) => Err(classify("CreateTable", &error)),
    }
}

async fn wait_until_active(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), DynamoError> {
    let started = Instant::now();
    let mut pause = FIRST_POLL;
    loop {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| classify("DescribeTable", &e))?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        if started.elapsed() > ACTIVE_TIMEOUT {
            return Err(DynamoError::Setup(format!(
                "table {table} is still {status:?} after {ACTIVE_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, DynamoError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(|e| setup(name, e))
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, DynamoError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| setup(name, e))
}

fn setup(what: &str, error: impl std::fmt::Display) -> DynamoError {
    DynamoError::Setup(format!("{what}: {error}"))
}
