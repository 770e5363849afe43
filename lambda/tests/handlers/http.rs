//! The HTTP function: API Gateway HTTP API (payload v2) requests through the REST router, over
//! the embedded store; and one message's whole way through the three Lambda handlers.

use crate::helpers::*;
use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::Router;
use lambda_http::http::{header, Request as HttpRequest, StatusCode};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Context, LambdaEvent, Request, Service};
use messaging_commands::{Dependencies, Dispatch, Processor};
use messaging_dynamodb::EventItem;
use messaging_events::{ChangeFeed, Event, Limits, SystemClock, WorkQueue};
use messaging_http::{router, AppState};
use messaging_lambda::{handle_sqs_batch, handle_stream_batch};
use messaging_projections::Projector;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

fn app(store: &Store) -> Router {
    let embedded = &store.embedded;
    router(AppState::new(Dependencies {
        store: embedded.events.clone(),
        read: embedded.read.clone(),
        direct_queue: embedded.direct_queue.clone(),
        group_queue: embedded.group_queue.clone(),
        clock: Arc::new(SystemClock),
        limits: Limits::default(),
        dispatch: Dispatch::Enqueue,
    }))
}

/// A request as `lambda_http` hands it to the router, from an API Gateway v2 event.
fn api_gateway_request(json: &str) -> Request {
    lambda_http::request::from_str(json).expect("an API Gateway v2 request")
}

struct Reply {
    status: StatusCode,
    content_type: String,
    request_id: Option<String>,
    body: Value,
}

async fn call(app: &Router, request: Request) -> Reply {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let header_text = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_string())
    };
    let content_type = header_text(header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let request_id = header_text("x-request-id");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    Reply {
        status,
        content_type,
        request_id,
        body,
    }
}

/// Registers through the API Gateway fixture; returns (user id, token).
async fn register(app: &Router) -> (String, String) {
    let reply = call(
        app,
        api_gateway_request(&fixture("apigw-v2-post-register.json")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let field = |name: &str| reply.body[name].as_str().expect(name).to_string();
    (field("user_id"), field("token"))
}

/// The get-new-messages fixture for `user`, with a bearer token if given.
fn get_new_messages(user: &str, token: Option<&str>) -> Request {
    let mut event: Value =
        serde_json::from_str(&fixture("apigw-v2-get-new-messages.json")).expect("JSON");
    let query = format!("user_id={user}&limit=10");
    event["rawQueryString"] = Value::String(query);
    event["queryStringParameters"]["user_id"] = Value::String(user.to_string());
    if let Some(token) = token {
        event["headers"]["authorization"] = Value::String(format!("Bearer {token}"));
    }
    api_gateway_request(&event.to_string())
}

fn assert_problem(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert!(
        reply.content_type.starts_with("application/problem+json"),
        "content type {:?}",
        reply.content_type
    );
    assert_eq!(reply.body["status"], u16::from(status));
    assert_eq!(reply.body["code"], code);
    assert!(reply.body["title"].is_string());
}

#[tokio::test]
async fn register_through_api_gateway_answers_201_with_a_token() {
    let store = Store::new();
    let app = app(&store);

    let reply = call(
        &app,
        api_gateway_request(&fixture("apigw-v2-post-register.json")),
    )
    .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert!(reply.content_type.starts_with("application/json"));
    assert!(reply.body["user_id"]
        .as_str()
        .is_some_and(|id| id.len() == 36));
    assert!(reply.body["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        reply.request_id.is_some(),
        "every response carries x-request-id"
    );
}

#[tokio::test]
async fn get_new_messages_without_a_token_is_a_401_problem() {
    let store = Store::new();
    let app = app(&store);

    let reply = call(
        &app,
        api_gateway_request(&fixture("apigw-v2-get-new-messages.json")),
    )
    .await;

    assert_problem(&reply, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn get_new_messages_with_a_token_answers_200() {
    let store = Store::new();
    let app = app(&store);
    let (ada, token) = register(&app).await;

    let reply = call(&app, get_new_messages(&ada, Some(&token))).await;

    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["messages"], Value::Array(vec![]));
    assert!(reply.body["cursor"].is_string());
}

#[tokio::test]
async fn an_unknown_path_is_a_404_problem() {
    let store = Store::new();
    let app = app(&store);
    let fixture = fixture("apigw-v2-get-new-messages.json").replace("/get-new-messages", "/nope");

    let reply = call(&app, api_gateway_request(&fixture)).await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.content_type.starts_with("application/problem+json"));
}

/// What `lambda_http::run` does with an invocation: the API Gateway event in, the API Gateway
/// v2 response JSON out (status, headers, and the problem as text, not base64).
#[tokio::test]
async fn the_lambda_response_is_an_api_gateway_v2_response() {
    let store = Store::new();
    let mut adapter = lambda_http::Adapter::from(app(&store));
    let request: LambdaRequest =
        serde_json::from_str(&fixture("apigw-v2-get-new-messages.json")).expect("a request");

    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("infallible");
    let json = serde_json::to_value(&response).expect("serialises");

    assert_eq!(json["statusCode"], 401);
    assert_eq!(json["isBase64Encoded"], false);
    assert!(json["headers"]["content-type"]
        .as_str()
        .is_some_and(|ct| ct.starts_with("application/problem+json")));
    let problem: Value =
        serde_json::from_str(json["body"].as_str().expect("a text body")).expect("a problem");
    assert_eq!(problem["code"], "unauthenticated");
}

/// The local server's loops, replaced by the Lambda handlers: accepted over HTTP, processed from
/// an SQS event, projected from a DynamoDB stream event, read over HTTP.
#[tokio::test]
async fn a_message_goes_through_the_http_processor_and_projector_functions() {
    let store = Store::new();
    let app = app(&store);
    let (ada, ada_token) = register(&app).await;
    let (bob, bob_token) = register(&app).await;

    let send = HttpRequest::builder()
        .method("POST")
        .uri("https://abc123defg.execute-api.eu-west-1.amazonaws.com/send-message")
        .header(header::AUTHORIZATION, format!("Bearer {ada_token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({ "sender_id": ada, "receiver_id": bob, "message": "Hi Bob" })
                .to_string(),
        ))
        .expect("a request");
    let reply = call(&app, send).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);

    // The direct processor function gets the queued work as an SQS FIFO event.
    let queued = store
        .embedded
        .direct_queue
        .receive(10, Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(queued.len(), 1);
    let mut sqs = SqsEvent::default();
    for (n, message) in queued.iter().enumerate() {
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("msg-{n}"));
        record.receipt_handle = Some(message.receipt.clone());
        record.body = Some(serde_json::to_string(&message.item).expect("encodes"));
        record
            .attributes
            .insert("MessageGroupId".into(), ada.clone());
        sqs.records.push(record);
    }
    let processed = handle_sqs_batch(&Processor::new(store.events()), sqs).await;
    assert!(processed.batch_item_failures.is_empty());

    // The projector function gets every appended event as a stream INSERT.
    let feed = store
        .embedded
        .events
        .poll("lambda-test", 1000)
        .await
        .expect("the change feed");
    assert!(feed
        .iter()
        .any(|r| matches!(r.event.event, Event::MessageDelivered { .. })));
    let mut stream = StreamEvent::default();
    for record in &feed {
        let mut insert = EventRecord::default();
        insert.event_name = "INSERT".into();
        insert.change.sequence_number = Some(format!("{:021}", record.position));
        insert.change.new_image = EventItem::from_recorded(&record.event)
            .to_item()
            .expect("an item");
        stream.records.push(insert);
    }
    let projected = handle_stream_batch(&Projector::new(store.read()), stream).await;
    assert!(projected.batch_item_failures.is_empty());

    let reply = call(&app, get_new_messages(&bob, Some(&bob_token))).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let messages = reply.body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["message"], "Hi Bob");
    assert_eq!(messages[0]["sender_id"], Value::String(ada));
}
