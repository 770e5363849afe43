//! The notifier (stream → WebSocket connections) and the `$connect`/`$disconnect` handler, with
//! fakes for the connections table and the Management API (the table's adapter is tested on
//! moto in `dynamodb/tests/connections.rs`).

use crate::helpers::*;
use async_trait::async_trait;
use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use messaging_commands::{CommandError, TokenIdentity};
use messaging_events::UserId;
use messaging_lambda::notifier::{
    handle_connection_event, handle_notify_batch, Authenticator, Connections, ConnectionsError,
    Notifier, PostError, PushGateway, CONNECTION_TTL_SECS,
};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

const NOW: i64 = 1_732_440_000;
const DELIVERIES: &str = "dynamodb-stream-deliveries.json";
/// A `TokenRevoked` of Bob's token [`REVOKED_TOKEN`], then a delivery to Bob.
const REVOCATION: &str = "dynamodb-stream-revocation.json";
const REVOKED_TOKEN: &str = "70c1e000-0000-4000-8000-000000000001";

/// (user, connection) → (expires_at, token id).
type ConnectionMap = HashMap<(UserId, String), (i64, Uuid)>;

#[derive(Default, Clone)]
struct FakeConnections(Arc<Mutex<ConnectionMap>>);

impl FakeConnections {
    fn with(pairs: &[(UserId, &str)]) -> Self {
        let fake = FakeConnections::default();
        for (user, id) in pairs {
            fake.insert(*user, id, NOW + 60, Uuid::nil());
        }
        fake
    }

    fn insert(&self, user: UserId, id: &str, expires_at: i64, token_id: Uuid) {
        self.0
            .lock()
            .unwrap()
            .insert((user, id.to_string()), (expires_at, token_id));
    }

    fn ids(&self) -> BTreeSet<String> {
        self.0
            .lock()
            .unwrap()
            .keys()
            .map(|(_, c)| c.clone())
            .collect()
    }
}

#[async_trait]
impl Connections for FakeConnections {
    async fn connections_of(
        &self,
        user: UserId,
        now: i64,
    ) -> Result<Vec<String>, ConnectionsError> {
        let mut ids: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|((u, _), (expires, _))| *u == user && *expires > now)
            .map(|((_, c), _)| c.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }
    async fn connections_of_token(
        &self,
        user: UserId,
        token_id: Uuid,
        now: i64,
    ) -> Result<Vec<String>, ConnectionsError> {
        let mut ids: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|((u, _), (expires, t))| *u == user && *expires > now && *t == token_id)
            .map(|((_, c), _)| c.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }
    async fn add(
        &self,
        user: UserId,
        id: &str,
        token_id: Uuid,
        expires_at: i64,
    ) -> Result<(), ConnectionsError> {
        self.insert(user, id, expires_at, token_id);
        Ok(())
    }
    async fn remove(&self, user: UserId, id: &str) -> Result<(), ConnectionsError> {
        self.0.lock().unwrap().remove(&(user, id.to_string()));
        Ok(())
    }
    async fn remove_connection(&self, id: &str) -> Result<(), ConnectionsError> {
        self.0.lock().unwrap().retain(|(_, c), _| c != id);
        Ok(())
    }
}

/// Records posts and closes; answers per connection id as configured (default: done).
#[derive(Default, Clone)]
struct FakeGateway {
    posts: Arc<Mutex<Vec<(String, Value)>>>,
    closed: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<HashMap<String, PostError>>>,
}

impl FakeGateway {
    fn answer(&self, id: &str, error: PostError) {
        self.answers.lock().unwrap().insert(id.to_string(), error);
    }

    /// (connection, message_id) of every successful post, in order.
    fn delivered(&self) -> Vec<(String, String)> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .map(|(c, m)| (c.clone(), m["message_id"].as_str().unwrap().to_string()))
            .collect()
    }
}

#[async_trait]
impl PushGateway for FakeGateway {
    async fn post(&self, id: &str, payload: &str) -> Result<(), PostError> {
        if let Some(error) = self.answers.lock().unwrap().get(id) {
            return Err(error.clone());
        }
        let json: Value = serde_json::from_str(payload).expect("a JSON payload");
        self.posts.lock().unwrap().push((id.to_string(), json));
        Ok(())
    }

    async fn disconnect(&self, id: &str) -> Result<(), PostError> {
        if let Some(error) = self.answers.lock().unwrap().get(id) {
            return Err(error.clone());
        }
        self.closed.lock().unwrap().push(id.to_string());
        Ok(())
    }
}

fn notifier(connections: &FakeConnections, gateway: &FakeGateway) -> Notifier {
    Notifier {
        connections: Box::new(connections.clone()),
        gateway: Box::new(gateway.clone()),
    }
}

fn m(n: u32) -> String {
    message(n).to_string()
}

#[tokio::test]
async fn deliveries_are_pushed_to_every_connection_of_their_recipient_in_stream_order() {
    let connections = FakeConnections::with(&[
        (user(BOB), "bob-1"),
        (user(BOB), "bob-2"),
        (user(CY), "cy-1"),
    ]);
    let gateway = FakeGateway::default();
    let response = handle_notify_batch(
        &notifier(&connections, &gateway),
        stream_event(DELIVERIES),
        NOW,
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        gateway.delivered(),
        vec![
            ("bob-1".to_string(), m(1)),
            ("bob-2".to_string(), m(1)),
            ("bob-1".to_string(), m(2)),
            ("bob-2".to_string(), m(2)),
            ("cy-1".to_string(), m(4)),
            ("bob-1".to_string(), m(3)),
            ("bob-2".to_string(), m(3)),
        ]
    );
    // The JSON object of the GET endpoints.
    let posts = gateway.posts.lock().unwrap();
    assert_eq!(
        posts[0].1,
        serde_json::json!({
            "message_id": m(1),
            "sender_id": ADA,
            "receiver_id": BOB,
            "message": "Hi Bob",
            "sent_at": "2024-11-24T09:20:00.001001Z",
        })
    );
    assert_eq!(posts[5].1["group_id"], GROUP);
    assert!(posts[5].1.get("receiver_id").is_none());
}

#[tokio::test]
async fn a_gone_connection_is_removed_and_the_others_still_get_the_message() {
    let connections = FakeConnections::with(&[(user(BOB), "bob-gone"), (user(BOB), "bob-ok")]);
    let gateway = FakeGateway::default();
    gateway.answer("bob-gone", PostError::Gone);
    let response = handle_notify_batch(
        &notifier(&connections, &gateway),
        stream_event(DELIVERIES),
        NOW,
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(connections.ids(), BTreeSet::from(["bob-ok".to_string()]));
    let to_ok: Vec<String> = gateway
        .delivered()
        .into_iter()
        .filter(|(c, _)| c == "bob-ok")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(to_ok, vec![m(1), m(2), m(3)]);
}

#[tokio::test]
async fn a_retryable_failure_reports_its_record_and_stops_the_batch_there() {
    let connections = FakeConnections::with(&[(user(BOB), "bob-1"), (user(CY), "cy-throttled")]);
    let gateway = FakeGateway::default();
    gateway.answer(
        "cy-throttled",
        PostError::Retryable("LimitExceededException".into()),
    );
    let event = stream_event(DELIVERIES);
    let sequence = sequence_numbers(&event);
    let response = handle_notify_batch(&notifier(&connections, &gateway), event, NOW).await;
    // Cy's delivery is the fourth record: reported, and Bob's group message after it waits.
    assert_eq!(stream_failures(&response), vec![Some(sequence[3].clone())]);
    assert_eq!(
        gateway.delivered(),
        vec![("bob-1".to_string(), m(1)), ("bob-1".to_string(), m(2))]
    );
    assert_eq!(connections.ids().len(), 2, "a throttled connection is kept");
}

#[tokio::test]
async fn refused_posts_and_expired_connections_are_skipped_without_failing() {
    let connections = FakeConnections::with(&[(user(BOB), "bob-forbidden"), (user(CY), "cy-1")]);
    connections.insert(user(CY), "cy-expired", NOW - 1, Uuid::nil());
    let gateway = FakeGateway::default();
    gateway.answer(
        "bob-forbidden",
        PostError::Permanent("ForbiddenException".into()),
    );
    let response = handle_notify_batch(
        &notifier(&connections, &gateway),
        stream_event(DELIVERIES),
        NOW,
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(gateway.delivered(), vec![("cy-1".to_string(), m(4))]);
}

#[tokio::test]
async fn nobody_connected_means_nothing_posted() {
    let connections = FakeConnections::default();
    let gateway = FakeGateway::default();
    let response = handle_notify_batch(
        &notifier(&connections, &gateway),
        stream_event("dynamodb-stream-inserts.json"),
        NOW,
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert!(gateway.delivered().is_empty());
}

#[tokio::test]
async fn a_revoked_tokens_connections_are_closed_and_forgotten_before_later_pushes() {
    let revoked: Uuid = REVOKED_TOKEN.parse().unwrap();
    let connections = FakeConnections::default();
    connections.insert(user(BOB), "bob-revoked", NOW + 60, revoked);
    connections.insert(user(BOB), "bob-gone", NOW + 60, revoked);
    connections.insert(user(BOB), "bob-other-token", NOW + 60, Uuid::new_v4());
    let gateway = FakeGateway::default();
    gateway.answer("bob-gone", PostError::Gone);
    let response = handle_notify_batch(
        &notifier(&connections, &gateway),
        stream_event(REVOCATION),
        NOW,
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(*gateway.closed.lock().unwrap(), vec!["bob-revoked"]);
    assert_eq!(
        connections.ids(),
        BTreeSet::from(["bob-other-token".to_string()])
    );
    // The delivery after the revocation reaches only the connection of Bob's other token.
    assert_eq!(
        gateway.delivered(),
        vec![("bob-other-token".to_string(), m(1))]
    );
}

#[tokio::test]
async fn a_close_that_can_be_retried_reports_the_revocation_record() {
    let revoked: Uuid = REVOKED_TOKEN.parse().unwrap();
    let connections = FakeConnections::default();
    connections.insert(user(BOB), "bob-throttled", NOW + 60, revoked);
    let gateway = FakeGateway::default();
    gateway.answer(
        "bob-throttled",
        PostError::Retryable("LimitExceededException".into()),
    );
    let event = stream_event(REVOCATION);
    let sequence = sequence_numbers(&event);
    let response = handle_notify_batch(&notifier(&connections, &gateway), event, NOW).await;
    assert_eq!(stream_failures(&response), vec![Some(sequence[0].clone())]);
    assert!(
        gateway.delivered().is_empty(),
        "nothing after the failed record"
    );
    assert_eq!(connections.ids().len(), 1, "kept until it is closed");
}

const GOOD_TOKEN_ID: &str = "70c1e000-0000-4000-8000-0000000000aa";

struct FixedAuth;

#[async_trait]
impl Authenticator for FixedAuth {
    async fn identify(&self, token: &str) -> Result<TokenIdentity, CommandError> {
        match token {
            "good-token" => Ok(TokenIdentity {
                user: user(BOB),
                token_id: GOOD_TOKEN_ID.parse().unwrap(),
            }),
            _ => Err(CommandError::Unauthenticated),
        }
    }
}

fn ws_request(
    route: &str,
    connection: &str,
    headers: &[(&str, &str)],
) -> ApiGatewayWebsocketProxyRequest {
    let mut headers_json = serde_json::Map::new();
    for (k, v) in headers {
        headers_json.insert(k.to_string(), Value::String(v.to_string()));
    }
    serde_json::from_value(serde_json::json!({
        "headers": headers_json,
        "isBase64Encoded": false,
        "requestContext": {
            "routeKey": route,
            "eventType": if route == "$connect" { "CONNECT" } else { "DISCONNECT" },
            "connectionId": connection,
            "requestId": "r-1",
            "apiId": "abc123",
            "stage": "live",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "requestTimeEpoch": NOW * 1000,
            "connectedAt": NOW * 1000,
            "identity": { "sourceIp": "203.0.113.7" },
            "messageDirection": "IN",
        }
    }))
    .expect("a WebSocket request")
}

#[tokio::test]
async fn connect_checks_the_token_and_records_the_connection_until_disconnect() {
    let connections = FakeConnections::default();
    for (headers, expected) in [
        (vec![], 401),
        (vec![("Authorization", "Bearer wrong")], 401),
        (vec![("Authorization", "Basic x")], 401),
    ] {
        let response = handle_connection_event(
            &FixedAuth,
            &connections,
            ws_request("$connect", "c0=", &headers),
            NOW,
        )
        .await;
        assert_eq!(response.status_code, expected, "{headers:?}");
    }
    assert!(connections.ids().is_empty());

    let response = handle_connection_event(
        &FixedAuth,
        &connections,
        ws_request("$connect", "c1=", &[("Authorization", "Bearer good-token")]),
        NOW,
    )
    .await;
    assert_eq!(response.status_code, 200);
    assert!(response.headers.get("sec-websocket-protocol").is_none());

    // A browser: the token in the subprotocols; messaging.v1 is selected, never the token.
    let response = handle_connection_event(
        &FixedAuth,
        &connections,
        ws_request(
            "$connect",
            "c2=",
            &[("Sec-WebSocket-Protocol", "messaging.v1, bearer.good-token")],
        ),
        NOW,
    )
    .await;
    assert_eq!(response.status_code, 200);
    assert_eq!(
        response.headers.get("sec-websocket-protocol").unwrap(),
        "messaging.v1"
    );
    assert_eq!(
        connections.connections_of(user(BOB), NOW).await.unwrap(),
        vec!["c1=", "c2="]
    );
    // Recorded with the token's id, so that revoking that token closes it.
    assert_eq!(
        connections.0.lock().unwrap()[&(user(BOB), "c1=".to_string())],
        (NOW + CONNECTION_TTL_SECS, GOOD_TOKEN_ID.parse().unwrap())
    );

    let response = handle_connection_event(
        &FixedAuth,
        &connections,
        ws_request("$disconnect", "c1=", &[]),
        NOW,
    )
    .await;
    assert_eq!(response.status_code, 200);
    assert_eq!(connections.ids(), BTreeSet::from(["c2=".to_string()]));
}
