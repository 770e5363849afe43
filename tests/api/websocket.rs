//! `GET /ws`: WebSocket push on the local server. Each delivered message is pushed, as the very
//! JSON object the GET endpoints return, to the recipient's open connections; the inbox stays
//! the source of truth (get-new-messages still returns it).

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::*;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a push may take to arrive in these tests (moto is slower).
fn push_limit() -> Duration {
    if backend_is_dynamodb() {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(10)
    }
}

fn ws_url(srv: &TestServer) -> String {
    format!("{}/ws", srv.base.replacen("http://", "ws://", 1))
}

/// Opens `/ws` with the given extra headers; the HTTP status of a refusal as `Err`.
async fn try_connect(srv: &TestServer, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut request = ws_url(srv).into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("WebSocket connection failed: {other}"),
    }
}

async fn connect(srv: &TestServer, user: &User) -> Ws {
    let auth = format!("Bearer {}", user.token);
    try_connect(srv, &[("authorization", &auth)])
        .await
        .unwrap_or_else(|status| panic!("upgrade refused with {status}"))
}

/// The next frame other than a ping or pong, within `limit`.
async fn next_frame(ws: &mut Ws, limit: Duration) -> Message {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a well-formed frame");
        if !matches!(frame, Message::Ping(_) | Message::Pong(_)) {
            return frame;
        }
    }
}

/// The next pushed message (skipping control frames), within `limit`.
async fn next_message(ws: &mut Ws, limit: Duration) -> Value {
    match next_frame(ws, limit).await {
        Message::Text(text) => serde_json::from_str(text.as_str()).expect("JSON"),
        other => panic!("unexpected frame {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_receives_its_users_messages_in_order_as_the_get_endpoints_show_them() {
    let srv = TestServer::spawn();
    let alice = srv.register().await;
    let bob = srv.register().await;
    let carol = srv.register().await;
    let mut bob_ws = connect(&srv, &bob).await;
    let mut carol_ws = connect(&srv, &carol).await;

    let count = if backend_is_dynamodb() { 8 } else { 25 };
    let mut sent = Vec::new();
    for n in 0..count {
        sent.push(srv.send(&alice, &bob.id, &format!("m{n}")).await);
    }
    let mut pushed = Vec::new();
    for _ in 0..count {
        pushed.push(next_message(&mut bob_ws, push_limit()).await);
    }
    assert_eq!(ids(&pushed), sent, "pushed in acceptance order");

    // Pushing does not move the read marker: get-new-messages returns the same objects.
    let polled = srv.new_messages(&bob, None, Some(100)).await.messages;
    assert_eq!(polled, pushed, "the same JSON objects as get-new-messages");
    for message in &pushed {
        assert_message_shape(message, "pushed message");
    }

    // Carol's connection heard nothing of Bob's messages.
    let quiet = tokio::time::timeout(Duration::from_millis(300), carol_ws.next()).await;
    assert!(quiet.is_err(), "carol was pushed {quiet:?}");

    // Group messages are pushed to members too (not to the sender).
    let group = srv
        .create_group(&alice, "g", &[bob.id.as_str(), carol.id.as_str()])
        .await;
    let id = srv.send_group(&carol, &group, "hello group").await;
    let got = next_message(&mut bob_ws, push_limit()).await;
    assert_eq!(msg_id(&got), id);
    assert_eq!(got["group_id"], Value::String(group));
}

#[tokio::test]
async fn a_browser_passes_its_token_as_a_subprotocol() {
    let srv = TestServer::spawn();
    let alice = srv.register().await;
    let bob = srv.register().await;
    let protocols = format!("messaging.v1, bearer.{}", bob.token);
    let mut request = ws_url(&srv).into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&protocols).unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade with the subprotocol token");
    // The server selects messaging.v1 and never echoes the token.
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("messaging.v1")
    );
    let id = srv.send(&alice, &bob.id, "hi browser").await;
    assert_eq!(msg_id(&next_message(&mut ws, push_limit()).await), id);
}

#[tokio::test]
async fn unauthenticated_or_wrong_token_upgrades_are_refused() {
    let srv = TestServer::spawn();
    let bob = srv.register().await;
    let wrong = format!("Bearer {}", "A".repeat(43));
    let malformed = "Bearer not-a-token".to_string();
    let wrong_protocol = format!("messaging.v1, bearer.{}", "B".repeat(43));
    for (what, headers) in [
        ("no token", vec![]),
        ("wrong token", vec![("authorization", wrong.as_str())]),
        (
            "malformed token",
            vec![("authorization", malformed.as_str())],
        ),
        (
            "Basic scheme",
            vec![("authorization", "Basic Ym9iOmJvYg==")],
        ),
        (
            "wrong subprotocol token",
            vec![("sec-websocket-protocol", wrong_protocol.as_str())],
        ),
    ] {
        match try_connect(&srv, &headers).await {
            Err(status) => assert_eq!(status, 401, "{what}"),
            Ok(_) => panic!("{what}: the upgrade was accepted"),
        }
    }
    // A plain GET (no upgrade) with a valid token is a 4xx problem, not a crash.
    let resp = srv.get("/ws", Some(&bob.token), &[]).await;
    assert!(
        (400..500).contains(&resp.status),
        "plain GET /ws: {}",
        resp.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_or_stalled_connection_does_not_delay_the_others() {
    let srv = TestServer::spawn();
    let alice = srv.register().await;
    let bob = srv.register().await;
    let mut healthy = connect(&srv, &bob).await;
    // Never read: its socket buffers fill up and the server's pushes to it stall.
    let stalled = connect(&srv, &bob).await;
    // Gone without a close frame: the TCP connection is simply dropped.
    let broken = connect(&srv, &bob).await;
    drop(broken.into_inner());

    let count = if backend_is_dynamodb() { 10 } else { 120 };
    let text = "x".repeat(4000);
    let mut worst = Duration::ZERO;
    for n in 0..count {
        let accepted = Instant::now();
        let id = srv.send(&alice, &bob.id, &format!("{n} {text}")).await;
        let got = next_message(&mut healthy, push_limit()).await;
        assert_eq!(msg_id(&got), id, "message {n}");
        worst = worst.max(accepted.elapsed());
    }
    let bound = if backend_is_dynamodb() {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(1)
    };
    assert!(
        worst < bound,
        "the healthy connection waited up to {worst:?} for a message"
    );
    drop(stalled);
}

#[tokio::test]
async fn stopping_the_server_closes_connections_with_a_close_frame() {
    let mut srv = TestServer::spawn();
    let bob = srv.register().await;
    let carol = srv.register().await;
    let mut clients = [connect(&srv, &bob).await, connect(&srv, &carol).await];
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = srv.stop();
        (status, srv)
    });
    for ws in clients.iter_mut() {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame before the timeout")
            .expect("a frame, not the end of the stream")
            .expect("a well-formed frame");
        match frame {
            Message::Close(Some(close)) => {
                assert_eq!(close.code, CloseCode::Away, "{close:?}")
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
        // Completing the closing handshake is the client's part.
        let _ = ws.close(None).await;
    }
    let (status, _srv) = status.await.expect("stop");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_revoked_tokens_connection_is_closed_before_its_next_push() {
    let srv = TestServer::spawn();
    let alice = srv.register().await;
    let bob = srv.register().await;
    let mut bob_ws = connect(&srv, &bob).await;
    let before = srv.send(&alice, &bob.id, "before").await;
    assert_eq!(
        msg_id(&next_message(&mut bob_ws, push_limit()).await),
        before
    );

    srv.post_raw("/revoke-token", Some(&bob.token), None, Vec::new(), &[])
        .await
        .expect_status(200, "revoke");
    srv.send(&alice, &bob.id, "after").await;

    // The message is not pushed: the connection closes first, as a request would get 401.
    match next_frame(&mut bob_ws, push_limit()).await {
        Message::Close(Some(close)) => assert_eq!(close.code, CloseCode::Policy, "{close:?}"),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn an_idle_connection_closes_at_the_next_recheck_once_its_token_is_revoked() {
    let srv = TestServer::spawn_with_env(&[("MESSAGING_WS_RECHECK_SECS", "1")]);
    let bob = srv.register().await;
    let mut bob_ws = connect(&srv, &bob).await;
    // A valid token passes the checks: the connection stays open and silent through three.
    let quiet = tokio::time::timeout(
        Duration::from_secs(3),
        next_frame(&mut bob_ws, Duration::from_secs(4)),
    )
    .await;
    assert!(quiet.is_err(), "a valid idle connection got {quiet:?}");

    srv.post_raw("/revoke-token", Some(&bob.token), None, Vec::new(), &[])
        .await
        .expect_status(200, "revoke");
    // Nothing is sent to bob: only the idle check can notice.
    let revoked_at = Instant::now();
    match next_frame(&mut bob_ws, push_limit()).await {
        Message::Close(Some(close)) => assert_eq!(close.code, CloseCode::Policy, "{close:?}"),
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert!(
        revoked_at.elapsed() < Duration::from_secs(5),
        "closed {:?} after the revocation, with checks every second",
        revoked_at.elapsed()
    );
}

// ------------------------------------------------------------------------------------------
// Benchmarks (BENCHMARKS.md, "Real-time delivery"); not run by default:
//   cargo test --release --test api -- --ignored --nocapture --test-threads 1 realtime_bench

/// The server's resident set size, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Memory per idle WebSocket connection: RSS before and after opening N connections (one per
/// user, so the per-user channel is counted too). `REALTIME_BENCH_CONNECTIONS` (5,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn realtime_bench_idle_connection_memory() {
    let connections = env_usize("REALTIME_BENCH_CONNECTIONS", 5_000);
    let srv = TestServer::spawn();
    let users = srv.register_many(connections).await;
    // Warm up: one connection and one push, so lazily allocated runtime parts are counted
    // in the baseline, not against the connections.
    let sender = srv.register().await;
    {
        let mut ws = connect(&srv, &sender).await;
        srv.send(&users[0], &sender.id, "warm-up").await;
        next_message(&mut ws, push_limit()).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(srv.pid());
    let mut open = Vec::with_capacity(connections);
    for chunk in users.chunks(100) {
        let opened = futures::future::join_all(chunk.iter().map(|user| connect(&srv, user))).await;
        open.extend(opened);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(srv.pid());
    let per = (after.saturating_sub(before) as f64) * 1024.0 / connections as f64;
    println!(
        "realtime_bench idle memory: {connections} connections, RSS {before} KiB -> {after} KiB, \
         {per:.0} bytes per connection ({:.1} KiB)",
        per / 1024.0
    );
    // Still alive and pushing after all that.
    let last = users.last().unwrap();
    let id = srv.send(&sender, &last.id, "still there?").await;
    let ws = open.last_mut().unwrap();
    assert_eq!(msg_id(&next_message(ws, push_limit()).await), id);
    assert!(per < 64.0 * 1024.0, "{per:.0} bytes per idle connection");
}

/// A `messaging` server that logs each hub publication (trace, JSON) to `log`: the time the
/// projector's write was applied and handed to the hub. Returns (process, base URL).
fn spawn_traced(dir: &std::path::Path, log: &std::path::Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_messaging"))
        .env("MESSAGING_ADDR", "127.0.0.1:0")
        .env("MESSAGING_DATA_DIR", dir)
        .env("MESSAGING_RATE_LIMIT_PER_MINUTE", "0")
        .env("MESSAGING_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,messaging_server::hub=trace")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn messaging");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("listening line");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening on")
        .to_string();
    (child, base)
}

/// Push latency at a steady rate: `REALTIME_BENCH_RATE` messages per second (1,000) for
/// `REALTIME_BENCH_SECS` seconds (10), from `REALTIME_BENCH_SENDERS` senders (50) to
/// `REALTIME_BENCH_RECIPIENTS` connected recipients (200). Two latencies per message: from the
/// projector's write (the hub's `published` trace line, wall clock) to the client's read, and
/// end to end, from issuing the send to the client's read (HTTP accept, processor, projector).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn realtime_bench_push_latency() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;
    let rate = env_usize("REALTIME_BENCH_RATE", 1_000);
    let secs = env_usize("REALTIME_BENCH_SECS", 10);
    let senders = env_usize("REALTIME_BENCH_SENDERS", 50);
    let recipients = env_usize("REALTIME_BENCH_RECIPIENTS", 200);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (mut child, base) = spawn_traced(&dir.path().join("data"), &log);
    let client = reqwest::Client::new();
    let register = |client: reqwest::Client, base: String| async move {
        let body: Value = client
            .post(format!("{base}/register"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        User {
            id: body["user_id"].as_str().unwrap().to_string(),
            token: body["token"].as_str().unwrap().to_string(),
        }
    };
    let mut users = Vec::new();
    for _ in 0..senders + recipients {
        users.push(register(client.clone(), base.clone()).await);
    }
    let recipients: Vec<User> = users.split_off(senders);
    let senders = users;
    // (issued at, issued at wall clock) per tag; (received at, wall clock, message id) per tag.
    let issued: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    type Received = HashMap<String, (Instant, SystemTime, String)>;
    let received: Arc<Mutex<Received>> = Arc::default();
    let total = rate * secs;

    let ws_base = format!("{}/ws", base.replacen("http://", "ws://", 1));
    let mut readers = Vec::new();
    for user in &recipients {
        let mut request = ws_base.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", user.token)).unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = ws.next().await {
                let (at, wall) = (Instant::now(), SystemTime::now());
                if let Message::Text(text) = frame {
                    let json: Value = serde_json::from_str(text.as_str()).unwrap();
                    let tag = json["message"].as_str().unwrap().to_string();
                    let id = json["message_id"].as_str().unwrap().to_string();
                    received.lock().unwrap().insert(tag, (at, wall, id));
                }
            }
        }));
    }

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..total {
        tick.tick().await;
        let (client, base) = (client.clone(), base.clone());
        let from = senders[n % senders.len()].clone();
        let to = recipients[(n / senders.len() + n) % recipients.len()]
            .id
            .clone();
        let issued = issued.clone();
        sends.spawn(async move {
            let tag = format!("bench-{n}");
            issued.lock().unwrap().insert(tag.clone(), Instant::now());
            let status = client
                .post(format!("{base}/send-message"))
                .bearer_auth(&from.token)
                .json(&serde_json::json!({"sender_id": from.id, "receiver_id": to, "message": tag}))
                .send()
                .await
                .map(|r| r.status().as_u16());
            assert_eq!(status.ok(), Some(202));
        });
        while sends.len() > 512 {
            sends.join_next().await;
        }
    }
    while sends.join_next().await.is_some() {}
    let offered = total as f64 / started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.lock().unwrap().len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for reader in readers {
        reader.abort();
    }
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();

    // The hub's publication times, by message id (the first one: a redelivery may repeat it).
    let mut published: HashMap<String, SystemTime> = HashMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let Ok(json) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(id), Some(at)) = (
            json["fields"]["message_id"].as_str(),
            json["timestamp"].as_str(),
        ) else {
            continue;
        };
        let at: SystemTime = parse_rfc3339(at).into();
        published.entry(id.to_string()).or_insert(at);
    }
    let received = received.lock().unwrap();
    let issued = issued.lock().unwrap();
    let mut end_to_end: Vec<Duration> = received
        .iter()
        .map(|(tag, (at, _, _))| *at - issued[tag])
        .collect();
    let mut from_projector: Vec<Duration> = received
        .values()
        .filter_map(|(_, wall, id)| {
            published
                .get(id)
                .map(|p| wall.duration_since(*p).unwrap_or_default())
        })
        .collect();
    let summary = |got: &mut Vec<Duration>| {
        got.sort();
        let pct = |p: f64| got[((got.len() as f64 * p).ceil() as usize).clamp(1, got.len()) - 1];
        format!(
            "n {} p50 {:.1} ms p90 {:.1} ms p99 {:.1} ms max {:.1} ms",
            got.len(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.90).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            got.last().unwrap().as_secs_f64() * 1e3
        )
    };
    println!(
        "realtime_bench push latency at {offered:.0} msg/s offered ({total} messages, {} recipients):\n  \
         projector write -> client read: {}\n  send issued -> client read:     {}",
        recipients.len(),
        summary(&mut from_projector),
        summary(&mut end_to_end)
    );
    assert_eq!(received.len(), total, "every message pushed");
}
