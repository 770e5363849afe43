//! The router in-process (no socket): status codes, problem responses and extractor rejections
//! over the real command handlers on a temporary embedded store.

use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use messaging_embedded::Embedded;
use messaging_events::{Clock, Limits, SystemClock};
use messaging_server::{embedded_state, router, worker_deps, Config, Workers, PROBLEM_JSON};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

struct Harness {
    app: Router,
    embedded: Embedded,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = router(embedded_state(
        &embedded,
        embedded.read.clone(),
        clock,
        Limits::default(),
    ));
    Harness {
        app,
        embedded,
        _dir: dir,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Harness {
    async fn call(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.call(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        let request = Request::builder()
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.call(request).await
    }

    async fn register(&self) -> (String, String) {
        let reply = self
            .call(Request::post("/register").body(Body::empty()).unwrap())
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        (
            reply.body["user_id"].as_str().unwrap().to_string(),
            reply.body["token"].as_str().unwrap().to_string(),
        )
    }
}

#[track_caller]
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
    assert_eq!(reply.headers[header::CONTENT_TYPE], PROBLEM_JSON);
    assert_eq!(reply.body["status"], status);
    assert_eq!(reply.body["code"], code);
    assert!(reply.body["title"].is_string());
    assert!(reply.body["type"].is_string());
    assert!(
        reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        reply.body
    );
}

fn raw_post(
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut request = Request::post(path).header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    request.body(body.into()).unwrap()
}

#[tokio::test]
async fn health_answers_ok_with_a_request_id() {
    let h = harness();
    let reply = h
        .call(Request::get("/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok"}));
    let id = reply.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let reply = h
        .call(
            Request::get("/health")
                .header("x-request-id", "trace-me-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.headers["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_problems() {
    let h = harness();
    let reply = h
        .call(Request::get("/nope").body(Body::empty()).unwrap())
        .await;
    assert_problem(&reply, 404, "not_found");
    assert!(reply.headers.contains_key("x-request-id"));

    let reply = h
        .call(Request::get("/register").body(Body::empty()).unwrap())
        .await;
    assert_problem(&reply, 405, "method_not_allowed");
    assert_eq!(reply.headers[header::ALLOW], "POST");

    let reply = h
        .call(
            Request::delete("/get-new-messages")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_problem(&reply, 405, "method_not_allowed");
}

#[tokio::test]
async fn register_takes_no_body_or_an_optional_display_name() {
    let h = harness();
    h.register().await;
    let reply = h
        .post("/register", None, json!({"display_name": "Ada"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert!(reply.body["user_id"].is_string());
    assert!(reply.body["token"].is_string());

    let reply = h
        .call(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{oops"))
                .unwrap(),
        )
        .await;
    assert_problem(&reply, 400, "invalid_request");
    assert!(reply.body["detail"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));

    let reply = h
        .call(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(r#"{"display_name": "Ada"}"#))
                .unwrap(),
        )
        .await;
    assert_problem(&reply, 400, "invalid_request");
}

#[tokio::test]
async fn register_with_the_same_idempotency_key_returns_the_same_user() {
    let h = harness();
    let request = || {
        Request::post("/register")
            .header("idempotency-key", "reg-1")
            .body(Body::empty())
            .unwrap()
    };
    let first = h.call(request()).await;
    let second = h.call(request()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(first.body, second.body);
}

#[tokio::test]
async fn missing_or_bad_credentials_are_401_with_a_bearer_challenge() {
    let h = harness();
    let body = json!({"sender_id": "x", "receiver_id": "y", "message": "hi"});
    for token in [None, Some("not-a-token")] {
        let reply = h.post("/send-message", token, body.clone()).await;
        assert_problem(&reply, 401, "unauthenticated");
        assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
    }
    let reply = h
        .call(
            Request::get("/get-new-messages?user_id=x")
                .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_problem(&reply, 401, "unauthenticated");
}

#[tokio::test]
async fn bad_bodies_are_400_problems_that_say_what_is_wrong() {
    let h = harness();
    let (me, token) = h.register().await;
    let (you, _) = h.register().await;
    let cases: Vec<(Option<&str>, String, &str)> = vec![
        (
            Some("application/json"),
            "{\"sender_id\":".into(),
            "malformed JSON",
        ),
        (Some("application/json"), "".into(), "body is required"),
        (
            Some("application/json"),
            json!({"sender_id": me, "message": "hi"}).to_string(),
            "receiver_id",
        ),
        (
            Some("application/json"),
            json!({"sender_id": me, "receiver_id": you, "message": 5}).to_string(),
            "invalid type",
        ),
        (
            Some("application/json"),
            json!([me, you]).to_string(),
            "invalid",
        ),
        (
            None,
            json!({"sender_id": me, "receiver_id": you, "message": "hi"}).to_string(),
            "Content-Type",
        ),
        (
            Some("text/plain"),
            json!({"sender_id": me, "receiver_id": you, "message": "hi"}).to_string(),
            "Content-Type",
        ),
    ];
    for (content_type, body, expected) in cases {
        let reply = h
            .call(raw_post(
                "/send-message",
                &token,
                content_type,
                body.clone(),
            ))
            .await;
        assert_problem(&reply, 400, "invalid_request");
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{body}: {detail}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_problems() {
    let h = harness();
    let (me, token) = h.register().await;
    let (you, _) = h.register().await;
    let body = json!({"sender_id": me, "receiver_id": you, "message": "x".repeat(70 * 1024)});
    let reply = h.post("/send-message", Some(&token), body).await;
    assert_problem(&reply, 413, "payload_too_large");

    let reply = h
        .call(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(" ".repeat(65 * 1024)))
                .unwrap(),
        )
        .await;
    assert_problem(&reply, 413, "payload_too_large");
}

#[tokio::test]
async fn bad_queries_are_400_problems() {
    let h = harness();
    let (me, token) = h.register().await;
    let reply = h.get("/get-new-messages", &token).await;
    assert_problem(&reply, 400, "invalid_request");
    assert!(reply.body["detail"].as_str().unwrap().contains("user_id"));

    let reply = h
        .get(
            &format!("/get-all-messages?user_id={me}&cursor=garbage"),
            &token,
        )
        .await;
    assert_problem(&reply, 400, "invalid_request");
}

#[tokio::test]
async fn acting_as_someone_else_is_403() {
    let h = harness();
    let (_, token) = h.register().await;
    let (other, _) = h.register().await;
    let reply = h
        .get(&format!("/get-all-messages?user_id={other}"), &token)
        .await;
    assert_problem(&reply, 403, "forbidden");
}

#[tokio::test]
async fn a_sent_message_reaches_the_receiver_through_the_workers() {
    let h = harness();
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: h._dir.path().to_path_buf(),
        limits: Limits::default(),
        sweep_after: Duration::from_secs(30),
        backend: messaging_server::Backend::Embedded,
        ..Config::from_lookup(|_| None).expect("the defaults are valid")
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let workers = Workers::start(worker_deps(
        &h.embedded,
        h.embedded.read.clone(),
        clock.clone(),
        clock.now(),
        &config,
    ));

    let (alice, alice_token) = h.register().await;
    let (bob, bob_token) = h.register().await;
    let reply = h
        .post(
            "/send-message",
            Some(&alice_token),
            json!({"sender_id": alice, "receiver_id": bob, "message": "hello"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let message_id = reply.body["message_id"].as_str().unwrap().to_string();

    let deadline = Instant::now() + Duration::from_secs(10);
    let messages = loop {
        let reply = h
            .get(&format!("/get-new-messages?user_id={bob}"), &bob_token)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(reply.body["cursor"].is_string());
        let messages = reply.body["messages"].as_array().unwrap().clone();
        if !messages.is_empty() {
            break messages;
        }
        assert!(Instant::now() < deadline, "message never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message["message_id"], message_id);
    assert_eq!(message["sender_id"], alice);
    assert_eq!(message["receiver_id"], bob);
    assert_eq!(message["message"], "hello");
    let sent_at = message["sent_at"].as_str().unwrap();
    assert!(sent_at.ends_with('Z') && sent_at.contains('T'), "{sent_at}");

    let reply = h
        .get(&format!("/get-all-messages?user_id={alice}"), &alice_token)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["messages"][0]["message_id"], message_id);
    assert_eq!(reply.body["next_cursor"], Value::Null);

    tokio::time::timeout(Duration::from_secs(15), workers.stop())
        .await
        .unwrap();
}
