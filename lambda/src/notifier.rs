//! WebSocket push on AWS: the notifier's handler (the event table's DynamoDB stream →
//! API Gateway WebSocket connections) and the `$connect`/`$disconnect` handler that keeps the
//! connections table.
//!
//! The notifier reads the same stream as the projector (its event source mapping filters
//! `MessageDelivered` inserts) and posts each delivered message, as the JSON object the GET
//! endpoints return, to every open connection of the recipient through the API Gateway
//! Management API. A connection API Gateway reports gone (410) is removed from the table. A
//! failure worth retrying (throttling, a DynamoDB or network error) reports that record's
//! sequence number and stops, as the projector does: Lambda retries from it, so a message may
//! be pushed twice (clients deduplicate by `message_id`; the inbox stays the source of truth).
//!
//! The mapping also passes `TokenRevoked` inserts: the notifier then closes (`DeleteConnection`)
//! and forgets every connection opened with that token, as the local server closes its
//! WebSocket connections when their token is revoked. Deliveries and revocations travel on
//! different shards of the stream, so a message delivered within moments of the revocation may
//! still be pushed; nothing is pushed to the connection after its close.
//!
//! Both ports, the connections table and the Management API, are traits: the handler is tested
//! with fakes, the table adapter ([`DynamoConnections`]) on moto.

use async_trait::async_trait;
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use messaging_commands::{CommandError, CommandHandlers, TokenIdentity};
use messaging_dynamodb::{DynamoConnections, EventItem};
use messaging_events::{Event, UserId};
use messaging_projections::{message_json, MessageView};
use uuid::Uuid;

/// How long a connection item lives: API Gateway closes every connection after 2 hours, so an
/// item whose `$disconnect` was lost expires a little after that.
pub const CONNECTION_TTL_SECS: i64 = 3 * 60 * 60;
/// The subprotocol selected for browsers (see the local server's `/ws`).
pub const SUBPROTOCOL: &str = "messaging.v1";
/// The subprotocol prefix that carries a browser's token.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "bearer.";

/// A connections-table failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectionsError(pub String);

/// The open connections of each user.
#[async_trait]
pub trait Connections: Send + Sync {
    /// `user`'s connections, not expired at `now` (epoch seconds).
    async fn connections_of(&self, user: UserId, now: i64)
        -> Result<Vec<String>, ConnectionsError>;
    /// `user`'s connections opened with token `token_id`, not expired at `now`.
    async fn connections_of_token(
        &self,
        user: UserId,
        token_id: Uuid,
        now: i64,
    ) -> Result<Vec<String>, ConnectionsError>;
    /// Records a connection opened with token `token_id`, until `expires_at`.
    async fn add(
        &self,
        user: UserId,
        connection_id: &str,
        token_id: Uuid,
        expires_at: i64,
    ) -> Result<(), ConnectionsError>;
    /// Forgets one of `user`'s connections.
    async fn remove(&self, user: UserId, connection_id: &str) -> Result<(), ConnectionsError>;
    /// Forgets a connection known only by its id.
    async fn remove_connection(&self, connection_id: &str) -> Result<(), ConnectionsError>;
}

#[async_trait]
impl Connections for DynamoConnections {
    async fn connections_of(
        &self,
        user: UserId,
        now: i64,
    ) -> Result<Vec<String>, ConnectionsError> {
        DynamoConnections::connections_of(self, user, now)
            .await
            .map_err(|e| ConnectionsError(e.to_string()))
    }

    async fn connections_of_token(
        &self,
        user: UserId,
        token_id: Uuid,
        now: i64,
    ) -> Result<Vec<String>, ConnectionsError> {
        DynamoConnections::connections_of_token(self, user, token_id, now)
            .await
            .map_err(|e| ConnectionsError(e.to_string()))
    }

    async fn add(
        &self,
        user: UserId,
        connection_id: &str,
        token_id: Uuid,
        expires_at: i64,
    ) -> Result<(), ConnectionsError> {
        self.put(user, connection_id, token_id, expires_at)
            .await
            .map_err(|e| ConnectionsError(e.to_string()))
    }

    async fn remove(&self, user: UserId, connection_id: &str) -> Result<(), ConnectionsError> {
        DynamoConnections::remove(self, user, connection_id)
            .await
            .map_err(|e| ConnectionsError(e.to_string()))
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<(), ConnectionsError> {
        DynamoConnections::remove_connection(self, connection_id)
            .await
            .map(|_| ())
            .map_err(|e| ConnectionsError(e.to_string()))
    }
}

/// Why a post to a connection (or its close) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// The connection is gone (410): forget it.
    Gone,
    /// Worth retrying (throttling, a 5xx, the network).
    Retryable(String),
    /// Never going to work for this connection and payload (403, 413): skip it.
    Permanent(String),
}

/// The API Gateway Management API: posting to a connection, closing one.
#[async_trait]
pub trait PushGateway: Send + Sync {
    /// Sends `payload` as one text frame to `connection_id`.
    async fn post(&self, connection_id: &str, payload: &str) -> Result<(), PostError>;
    /// Closes `connection_id` (`Gone` if it was closed already).
    async fn disconnect(&self, connection_id: &str) -> Result<(), PostError>;
}

/// The Management API client of one WebSocket API stage.
pub struct ApiGatewayPush {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayPush {
    /// A client for the stage at `endpoint` (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`).
    pub fn new(config: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(config)
            .endpoint_url(endpoint)
            .build();
        Self {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(config),
        }
    }
}

#[async_trait]
impl PushGateway for ApiGatewayPush {
    async fn post(&self, connection_id: &str, payload: &str) -> Result<(), PostError> {
        use aws_sdk_apigatewaymanagement::error::DisplayErrorContext;
        use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
        let sent = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
                payload.as_bytes(),
            ))
            .send()
            .await;
        sent.map(|_| ()).map_err(|error| {
            let service = error.as_service_error();
            classify(
                DisplayErrorContext(&error).to_string(),
                matches!(service, Some(PostToConnectionError::GoneException(_))),
                matches!(
                    service,
                    Some(PostToConnectionError::ForbiddenException(_))
                        | Some(PostToConnectionError::PayloadTooLargeException(_))
                ),
            )
        })
    }

    async fn disconnect(&self, connection_id: &str) -> Result<(), PostError> {
        use aws_sdk_apigatewaymanagement::error::DisplayErrorContext;
        use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
        let deleted = self
            .client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await;
        deleted.map(|_| ()).map_err(|error| {
            let service = error.as_service_error();
            classify(
                DisplayErrorContext(&error).to_string(),
                matches!(service, Some(DeleteConnectionError::GoneException(_))),
                matches!(service, Some(DeleteConnectionError::ForbiddenException(_))),
            )
        })
    }
}

/// A Management API failure: gone (410), refused for good (403, 413), or worth retrying.
fn classify(detail: String, gone: bool, refused: bool) -> PostError {
    if gone {
        PostError::Gone
    } else if refused {
        PostError::Permanent(detail)
    } else {
        PostError::Retryable(detail)
    }
}

/// The notifier: connections and the gateway.
pub struct Notifier {
    /// Who is connected.
    pub connections: Box<dyn Connections>,
    /// How to reach them.
    pub gateway: Box<dyn PushGateway>,
}

/// Pushes the `MessageDelivered` events of a stream batch to their recipients' connections and
/// closes the connections of the tokens `TokenRevoked` events revoke; on the first retryable
/// failure reports that record and handles nothing after it.
pub async fn handle_notify_batch(
    notifier: &Notifier,
    event: StreamEvent,
    now: i64,
) -> DynamoDbEventResponse {
    for record in event.records {
        if record.event_name != "INSERT" {
            continue;
        }
        let sequence_number = record.change.sequence_number.clone();
        let recorded = match EventItem::from_item(record.change.new_image)
            .and_then(|item| item.into_recorded())
        {
            Ok(recorded) => recorded,
            Err(error) => {
                // Retrying cannot help, and a push is only a notification: the projector
                // stops (and alarms) at such a record; the notifier moves on.
                tracing::error!(
                    sequence_number = sequence_number.as_deref(),
                    %error,
                    "undecodable event in the stream; not pushed"
                );
                continue;
            }
        };
        let handled = if let Some((recipient, message)) = MessageView::of_delivery(&recorded.event)
        {
            let message_id = message.message_id;
            push(notifier, recipient, &message_json(&message), now)
                .await
                .map_err(|error| format!("pushing message {message_id}: {error}"))
        } else if let Event::TokenRevoked { user_id, token_id } = recorded.event {
            close_token_connections(notifier, user_id, token_id, now)
                .await
                .map_err(|error| format!("closing the connections of token {token_id}: {error}"))
        } else {
            Ok(())
        };
        if let Err(error) = handled {
            tracing::warn!(
                sequence_number = sequence_number.as_deref(),
                %error,
                "a stream record failed; the batch resumes from it"
            );
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = sequence_number;
            let mut response = DynamoDbEventResponse::default();
            response.batch_item_failures.push(failure);
            return response;
        }
    }
    DynamoDbEventResponse::default()
}

/// Closes and forgets every connection opened with the revoked token `token_id` of `user`.
async fn close_token_connections(
    notifier: &Notifier,
    user: UserId,
    token_id: Uuid,
    now: i64,
) -> Result<(), String> {
    let connections = notifier
        .connections
        .connections_of_token(user, token_id, now)
        .await
        .map_err(|e| e.to_string())?;
    let mut retry = None;
    for connection_id in connections {
        match notifier.gateway.disconnect(&connection_id).await {
            Ok(()) | Err(PostError::Gone) => {
                tracing::info!(user_id = %user, %connection_id, "token revoked; connection closed");
                forget(notifier, user, &connection_id).await;
            }
            // Kept: a retry of the record would be refused the same way.
            Err(PostError::Permanent(error)) => {
                tracing::error!(%connection_id, %error, "closing a revoked token's connection was refused");
            }
            Err(PostError::Retryable(error)) => retry = Some(error),
        }
    }
    match retry {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Removes a closed connection from the table; a failure only leaves it to `$disconnect` or
/// the TTL.
async fn forget(notifier: &Notifier, user: UserId, connection_id: &str) {
    if let Err(error) = notifier.connections.remove(user, connection_id).await {
        tracing::warn!(%connection_id, %error, "forgetting a closed connection failed");
    }
}

/// Posts `payload` to every connection of `user`; gone ones are forgotten.
async fn push(notifier: &Notifier, user: UserId, payload: &str, now: i64) -> Result<(), String> {
    let connections = notifier
        .connections
        .connections_of(user, now)
        .await
        .map_err(|e| e.to_string())?;
    let mut retry = None;
    for connection_id in connections {
        match notifier.gateway.post(&connection_id, payload).await {
            Ok(()) => {}
            Err(PostError::Gone) => {
                tracing::debug!(%connection_id, "connection gone; forgetting it");
                forget(notifier, user, &connection_id).await;
            }
            Err(PostError::Permanent(error)) => {
                tracing::warn!(%connection_id, %error, "push refused; skipping the connection");
            }
            // The other connections still get the message now; the retry re-pushes to all.
            Err(PostError::Retryable(error)) => retry = Some(error),
        }
    }
    match retry {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Resolves a bearer token to its user and id (the command handlers on AWS).
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The token's user and id, or why not.
    async fn identify(&self, token: &str) -> Result<TokenIdentity, CommandError>;
}

#[async_trait]
impl Authenticator for CommandHandlers {
    async fn identify(&self, token: &str) -> Result<TokenIdentity, CommandError> {
        CommandHandlers::identify(self, token).await
    }
}

/// `$connect` (token check, then the connection is recorded) and `$disconnect` (forgotten) of
/// the WebSocket API. The token comes from `Authorization: Bearer <token>` or, for browsers,
/// the subprotocols `messaging.v1, bearer.<token>` (the answer selects `messaging.v1`).
pub async fn handle_connection_event(
    auth: &dyn Authenticator,
    connections: &dyn Connections,
    request: ApiGatewayWebsocketProxyRequest,
    now: i64,
) -> ApiGatewayProxyResponse {
    let route = request.request_context.route_key.as_deref().unwrap_or("");
    let Some(connection_id) = request.request_context.connection_id.clone() else {
        return status(400, None);
    };
    match route {
        "$connect" => {
            let Some(token) = token(&request.headers) else {
                return status(401, None);
            };
            let TokenIdentity { user, token_id } = match auth.identify(&token).await {
                Ok(identity) => identity,
                Err(CommandError::Unauthenticated) => return status(401, None),
                Err(error) => {
                    tracing::error!(%error, "authenticating a WebSocket connection failed");
                    return status(500, None);
                }
            };
            if let Err(error) = connections
                .add(user, &connection_id, token_id, now + CONNECTION_TTL_SECS)
                .await
            {
                tracing::error!(%error, "recording a WebSocket connection failed");
                return status(500, None);
            }
            tracing::info!(user_id = %user, %connection_id, "WebSocket connected");
            let offered = request
                .headers
                .get_all("sec-websocket-protocol")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|p| p.trim() == SUBPROTOCOL);
            status(200, offered.then_some(SUBPROTOCOL))
        }
        "$disconnect" => match connections.remove_connection(&connection_id).await {
            Ok(()) => status(200, None),
            Err(error) => {
                // Its TTL removes it anyway.
                tracing::warn!(%error, %connection_id, "forgetting a connection failed");
                status(200, None)
            }
        },
        // Clients have nothing to say over the socket.
        _ => status(400, None),
    }
}

fn token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        return (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
            .then(|| token.to_string());
    }
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

fn status(code: i64, protocol: Option<&'static str>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = code;
    if let Some(protocol) = protocol {
        response
            .headers
            .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    }
    response
}

/// The variable holding the WebSocket API stage's Management API endpoint
/// (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`), for the notifier.
pub const WEBSOCKET_ENDPOINT: &str = "MESSAGING_WEBSOCKET_ENDPOINT";

/// The notifier over the connections table and the stage's Management API (cold start).
pub async fn aws_notifier() -> anyhow::Result<Notifier> {
    use anyhow::Context;
    let config =
        crate::config::LambdaConfig::from_env().context("reading the function's configuration")?;
    let endpoint = std::env::var(WEBSOCKET_ENDPOINT)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .with_context(|| format!("{WEBSOCKET_ENDPOINT}: required"))?;
    let sdk = messaging_dynamodb::load_sdk_config().await;
    let clients = messaging_dynamodb::AwsClients::from_config(&sdk);
    Ok(Notifier {
        connections: Box::new(DynamoConnections::new(&clients, &config.names)),
        gateway: Box::new(ApiGatewayPush::new(&sdk, endpoint.trim())),
    })
}

/// The `$connect`/`$disconnect` function's ports: the command handlers (for the token check)
/// and the connections table (cold start).
pub async fn aws_connection_ports() -> anyhow::Result<(CommandHandlers, DynamoConnections)> {
    let ports = crate::config::aws_ports().await?;
    let clients = messaging_dynamodb::AwsClients::from_env().await;
    let connections = DynamoConnections::new(&clients, &ports.config.names);
    Ok((CommandHandlers::new(ports.dependencies()), connections))
}

/// Seconds since the epoch, for TTLs.
pub fn epoch_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
