//! The read-model tables: their names, keys and the sparse index of unsettled work, and
//! their creation for emulators and dev accounts (CloudFormation creates them on AWS).

use crate::{AwsClients, ReadError, ResourceNames};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableDescription, TableStatus,
};
use std::time::Duration;
use tokio::task::JoinSet;

/// Table suffixes under the prefix (see [`ResourceNames::name`]).
pub(crate) const INBOX: &str = "inbox";
pub(crate) const HISTORY: &str = "history";
pub(crate) const READ_MARKERS: &str = "read_markers";
pub(crate) const USERS: &str = "users";
pub(crate) const GROUPS: &str = "groups";
pub(crate) const MEMBERSHIPS: &str = "memberships";
pub(crate) const BLOCKS: &str = "blocks";
pub(crate) const PENDING: &str = "pending";

/// The sparse index of `pending`: only rows that still await an outcome carry its key.
pub(crate) const UNSETTLED_INDEX: &str = "unsettled";
/// Its partition key attribute, and the one value it takes (see [`UNSETTLED_SHARD_VALUE`]).
pub(crate) const UNSETTLED_SHARD: &str = "unsettled_shard";
/// Every unsettled row is in one index partition so that one Query returns the oldest ones
/// in order; the rows leave the index when settled, so the partition holds only work in flight.
pub(crate) const UNSETTLED_SHARD_VALUE: &str = "p";
/// Its sort key attribute: acceptance time in microseconds.
pub(crate) const ACCEPTED_AT: &str = "accepted_at";

/// How long creation may take before we give up (AWS needs seconds, moto none).
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// One key attribute: name and type.
type Key = (&'static str, ScalarAttributeType);

/// What a table looks like.
struct TableSpec {
    suffix: &'static str,
    hash: Key,
    range: Option<Key>,
    /// A global secondary index: name, hash, range, projected non-key attributes.
    index: Option<(&'static str, Key, Key, &'static [&'static str])>,
}

fn specs() -> Vec<TableSpec> {
    use ScalarAttributeType::{N, S};
    let table = |suffix, hash, range| TableSpec {
        suffix,
        hash,
        range,
        index: None,
    };
    vec![
        table(INBOX, ("user", S), Some(("position", N))),
        table(HISTORY, ("user", S), Some(("sort_key", S))),
        table(READ_MARKERS, ("user", S), None),
        table(USERS, ("user", S), None),
        table(GROUPS, ("group_id", S), None),
        table(MEMBERSHIPS, ("group_id", S), Some(("user", S))),
        table(BLOCKS, ("blocker", S), Some(("blocked", S))),
        TableSpec {
            suffix: PENDING,
            hash: ("message_id", S),
            range: None,
            // Only `work` is read from the index, so only it is copied there.
            index: Some((
                UNSETTLED_INDEX,
                (UNSETTLED_SHARD, S),
                (ACCEPTED_AT, N),
                &["work"],
            )),
        },
    ]
}

/// The names of every read table under `names`' prefix (for tooling and tests).
pub fn read_table_names(names: &ResourceNames) -> Vec<String> {
    specs().iter().map(|spec| names.name(spec.suffix)).collect()
}

/// The key attributes (hash, range) of the read table `suffix`, for code that reads whole
/// tables (the generations' dumps).
pub(crate) fn key_attributes(suffix: &str) -> Option<(&'static str, Option<&'static str>)> {
    specs()
        .into_iter()
        .find(|spec| spec.suffix == suffix)
        .map(|spec| (spec.hash.0, spec.range.map(|range| range.0)))
}

/// Creates the table `name` with the string hash key `hash` and nothing else, if it is missing,
/// and waits until it is usable: the same idempotent creation as the read tables, for the
/// small tables beside them (the generation pointer).
pub(crate) async fn create_keyed_table(
    clients: &AwsClients,
    name: &str,
    hash: &'static str,
) -> Result<(), ReadError> {
    let spec = TableSpec {
        // Only read tables are named by suffix; this one is named by the caller.
        suffix: "",
        hash: (hash, ScalarAttributeType::S),
        range: None,
        index: None,
    };
    ensure_table(&clients.dynamodb, name, &spec).await
}

/// Creates the missing read tables (on-demand capacity) and waits until every one is active;
/// existing tables are left alone, so calling it again, or from several processes, is harmless.
pub async fn create_read_tables(
    clients: &AwsClients,
    names: &ResourceNames,
) -> Result<(), ReadError> {
    let mut tasks = JoinSet::new();
    for spec in specs() {
        let client = clients.dynamodb.clone();
        let name = names.name(spec.suffix);
        tasks.spawn(async move { ensure_table(&client, &name, &spec).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|error| ReadError::Resource {
            resource: "read tables".into(),
            detail: error.to_string(),
        })??;
    }
    Ok(())
}

async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    spec: &TableSpec,
) -> Result<(), ReadError> {
    if describe(client, name).await?.is_none() {
        create(client, name, spec).await?;
    }
    let table = wait_until_usable(client, name).await?;
    if let Some((index, ..)) = spec.index {
        let present = table
            .global_secondary_indexes()
            .iter()
            .any(|gsi| gsi.index_name() == Some(index));
        if !present {
            return Err(ReadError::Resource {
                resource: name.to_string(),
                detail: format!("the table exists without its index {index}"),
            });
        }
    }
    Ok(())
}

async fn create(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    spec: &TableSpec,
) -> Result<(), ReadError> {
    let build = |detail: String| ReadError::Resource {
        resource: name.to_string(),
        detail,
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    let mut attributes = vec![spec.hash.clone()];
    request = request.key_schema(key(spec.hash.0, KeyType::Hash).map_err(&build)?);
    if let Some(range) = &spec.range {
        attributes.push(range.clone());
        request = request.key_schema(key(range.0, KeyType::Range).map_err(&build)?);
    }
    if let Some((index, hash, range, projected)) = &spec.index {
        attributes.push(hash.clone());
        attributes.push(range.clone());
        let projection = Projection::builder()
            .projection_type(ProjectionType::Include)
            .set_non_key_attributes(Some(projected.iter().map(|a| a.to_string()).collect()))
            .build();
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(*index)
            .key_schema(key(hash.0, KeyType::Hash).map_err(&build)?)
            .key_schema(key(range.0, KeyType::Range).map_err(&build)?)
            .projection(projection)
            .build()
            .map_err(|e| build(e.to_string()))?;
        request = request.global_secondary_indexes(gsi);
    }
    for (attribute, kind) in attributes {
        let definition = AttributeDefinition::builder()
            .attribute_name(attribute)
            .attribute_type(kind)
            .build()
            .map_err(|e| build(e.to_string()))?;
        request = request.attribute_definitions(definition);
    }
    match request.send().await {
        Ok(_) => Ok(()),
        // Someone else created it between our DescribeTable and CreateTable.
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(error) => Err(ReadError::request("dynamodb.CreateTable", error)),
    }
}

fn key(attribute: &str, kind: KeyType) -> Result<KeySchemaElement, String> {
    KeySchemaElement::builder()
        .attribute_name(attribute)
        .key_type(kind)
        .build()
        .map_err(|e| e.to_string())
}

async fn describe(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<Option<TableDescription>, ReadError> {
    match client.describe_table().table_name(name).send().await {
        Ok(output) => Ok(output.table),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(error) => Err(ReadError::request("dynamodb.DescribeTable", error)),
    }
}

/// Waits until the table accepts reads and writes and its indexes can be queried.
async fn wait_until_usable(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<TableDescription, ReadError> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        if let Some(table) = describe(client, name).await? {
            // UPDATING tables serve requests; only CREATING ones (and CREATING indexes) do not.
            let table_ready = matches!(
                table.table_status(),
                Some(TableStatus::Active | TableStatus::Updating)
            );
            let indexes_ready = table
                .global_secondary_indexes()
                .iter()
                .all(|gsi| gsi.index_status() == Some(&IndexStatus::Active));
            if table_ready && indexes_ready {
                return Ok(table);
            }
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(ReadError::Resource {
                resource: name.to_string(),
                detail: format!("not active after {READY_TIMEOUT:?}"),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
