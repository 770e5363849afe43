//! The open WebSocket connections of API Gateway (AWS only): `{prefix}connections`, one item per
//! connection, keyed by user (hash) and connection id (range), so the notifier finds a user's
//! connections with one `Query`; the `by_connection` index (keys only) lets `$disconnect`, which
//! knows only the connection id, find the item. `expires_at` (epoch seconds) is the table's TTL
//! attribute: API Gateway closes a connection after 2 hours at most, so an item whose
//! `$disconnect` was lost disappears by itself (and readers skip expired items before then).
//! Each item also names the id of the token the connection was opened with (`token_id`), so
//! that revoking that token can close it.
//! This is not a read model: it is not derived from events and replay leaves it alone.

use crate::{AwsClients, ReadError, ResourceNames};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use messaging_events::UserId;
use std::time::Duration;
use uuid::Uuid;

/// The table's suffix under the prefix.
pub const CONNECTIONS: &str = "connections";
/// The hash key: the user id.
const USER: &str = "user";
/// The range key: API Gateway's connection id.
const CONNECTION_ID: &str = "connection_id";
/// The id of the token the connection was opened with.
const TOKEN_ID: &str = "token_id";
/// The TTL attribute (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";
/// The index from connection id to user.
pub const BY_CONNECTION: &str = "by_connection";

/// The connections table's name.
pub fn connections_table(names: &ResourceNames) -> String {
    names.name(CONNECTIONS)
}

/// Creates the connections table (with its index and TTL) if it is missing; for emulators and
/// tests (the stack creates it on AWS).
pub async fn create_connections_table(
    clients: &AwsClients,
    names: &ResourceNames,
) -> Result<(), ReadError> {
    let client = &clients.dynamodb;
    let name = connections_table(names);
    let resource = |detail: String| ReadError::Resource {
        resource: name.clone(),
        detail,
    };
    let key = |attribute: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attribute)
            .key_type(kind)
            .build()
            .map_err(|e| resource(e.to_string()))
    };
    let attribute = |attribute: &str| {
        AttributeDefinition::builder()
            .attribute_name(attribute)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| resource(e.to_string()))
    };
    let index = GlobalSecondaryIndex::builder()
        .index_name(BY_CONNECTION)
        .key_schema(key(CONNECTION_ID, KeyType::Hash)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(|e| resource(e.to_string()))?;
    let created = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(USER, KeyType::Hash)?)
        .key_schema(key(CONNECTION_ID, KeyType::Range)?)
        .attribute_definitions(attribute(USER)?)
        .attribute_definitions(attribute(CONNECTION_ID)?)
        .global_secondary_indexes(index)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(error) => return Err(ReadError::request("dynamodb.CreateTable", error)),
    }
    for _ in 0..600 {
        let described = client
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .map_err(|e| ReadError::request("dynamodb.DescribeTable", e))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            let ttl = TimeToLiveSpecification::builder()
                .attribute_name(EXPIRES_AT)
                .enabled(true)
                .build()
                .map_err(|e| resource(e.to_string()))?;
            return match client
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(ttl)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // Already enabled (a second caller): AWS refuses to enable it twice.
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| format!("{e:?}").contains("already enabled")) =>
                {
                    Ok(())
                }
                Err(error) => Err(ReadError::request("dynamodb.UpdateTimeToLive", error)),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(resource("did not become active".into()))
}

/// The connections table.
#[derive(Clone)]
pub struct DynamoConnections {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoConnections {
    /// The connections table of the deployment named by `names`.
    pub fn new(clients: &AwsClients, names: &ResourceNames) -> Self {
        Self {
            client: clients.dynamodb.clone(),
            table: connections_table(names),
        }
    }

    /// Records `connection_id` as `user`'s, opened with token `token_id`, until `expires_at`
    /// (epoch seconds).
    pub async fn put(
        &self,
        user: UserId,
        connection_id: &str,
        token_id: Uuid,
        expires_at: i64,
    ) -> Result<(), ReadError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(USER, AttributeValue::S(user.to_string()))
            .item(CONNECTION_ID, AttributeValue::S(connection_id.to_string()))
            .item(TOKEN_ID, AttributeValue::S(token_id.to_string()))
            .item(EXPIRES_AT, AttributeValue::N(expires_at.to_string()))
            .send()
            .await
            .map_err(|e| ReadError::request("dynamodb.PutItem", e))?;
        Ok(())
    }

    /// `user`'s connections not expired at `now` (epoch seconds).
    pub async fn connections_of(&self, user: UserId, now: i64) -> Result<Vec<String>, ReadError> {
        self.query_connections(user, None, now).await
    }

    /// `user`'s connections opened with token `token_id` and not expired at `now`.
    pub async fn connections_of_token(
        &self,
        user: UserId,
        token_id: Uuid,
        now: i64,
    ) -> Result<Vec<String>, ReadError> {
        self.query_connections(user, Some(token_id), now).await
    }

    async fn query_connections(
        &self,
        user: UserId,
        token_id: Option<Uuid>,
        now: i64,
    ) -> Result<Vec<String>, ReadError> {
        let mut connections = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#u = :u")
                .expression_attribute_names("#u", USER)
                .expression_attribute_values(":u", AttributeValue::S(user.to_string()));
            if let Some(token_id) = token_id {
                query = query
                    .filter_expression("#t = :t")
                    .expression_attribute_names("#t", TOKEN_ID)
                    .expression_attribute_values(":t", AttributeValue::S(token_id.to_string()));
            }
            let page = query
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| ReadError::request("dynamodb.Query", e))?;
            for item in page.items() {
                let expires_at = item
                    .get(EXPIRES_AT)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok())
                    .unwrap_or(i64::MAX);
                if expires_at <= now {
                    continue;
                }
                match item.get(CONNECTION_ID).and_then(|v| v.as_s().ok()) {
                    Some(id) => connections.push(id.clone()),
                    None => return Err(ReadError::corrupt("connection", "no connection id")),
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(connections),
            }
        }
    }

    /// Forgets one of `user`'s connections (idempotent).
    pub async fn remove(&self, user: UserId, connection_id: &str) -> Result<(), ReadError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(USER, AttributeValue::S(user.to_string()))
            .key(CONNECTION_ID, AttributeValue::S(connection_id.to_string()))
            .send()
            .await
            .map_err(|e| ReadError::request("dynamodb.DeleteItem", e))?;
        Ok(())
    }

    /// Forgets a connection known only by its id (`$disconnect`); returns whose it was.
    pub async fn remove_connection(
        &self,
        connection_id: &str,
    ) -> Result<Option<UserId>, ReadError> {
        let found = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_CONNECTION)
            .key_condition_expression("#c = :c")
            .expression_attribute_names("#c", CONNECTION_ID)
            .expression_attribute_values(":c", AttributeValue::S(connection_id.to_string()))
            .send()
            .await
            .map_err(|e| ReadError::request("dynamodb.Query", e))?;
        let mut owner = None;
        for item in found.items() {
            let user = item
                .get(USER)
                .and_then(|v| v.as_s().ok())
                .and_then(|s| UserId::parse(s))
                .ok_or_else(|| ReadError::corrupt("connection", "no user"))?;
            self.remove(user, connection_id).await?;
            owner = Some(user);
        }
        Ok(owner)
    }
}
