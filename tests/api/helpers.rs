//! Test harness: spawns the real `messaging` binary on a temporary data
//! directory and talks to it over HTTP, like a client would.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long `eventually` waits by default.
pub const EVENTUALLY: Duration = Duration::from_secs(10);
/// How long a server may take to print its `listening on` line.
const STARTUP: Duration = Duration::from_secs(60);

/// A registered user: id and bearer token.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// A captured HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Option<Value>,
}

impl Resp {
    /// The JSON body; panics (with the raw text) if it was not JSON.
    pub fn body(&self) -> &Value {
        match &self.json {
            Some(v) => v,
            None => panic!(
                "expected a JSON body, got status {} content-type {:?} body {:?}",
                self.status, self.content_type, self.text
            ),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "status {} content-type {:?} body {}",
            self.status,
            self.content_type,
            truncate(&self.text, 600)
        )
    }

    /// Panics unless the status is `status`.
    pub fn expect_status(&self, status: u16, ctx: &str) -> &Self {
        assert_eq!(
            self.status,
            status,
            "{ctx}: expected HTTP {status}, got {}",
            self.describe()
        );
        self
    }

    /// A string member of the JSON body.
    pub fn str_field(&self, name: &str) -> String {
        match self.body().get(name) {
            Some(Value::String(s)) => s.clone(),
            other => panic!(
                "expected string member {name:?} in {}, got {other:?}",
                self.describe()
            ),
        }
    }
}

pub fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…({} bytes)", &s[..end], s.len())
    }
}

/// Asserts an RFC 9457 problem response: status in `statuses`, content type
/// `application/problem+json`, members `status` (= HTTP status), `title`
/// (string) and `code` in `codes` (any string if `codes` is empty).
pub fn assert_problem(resp: &Resp, statuses: &[u16], codes: &[&str], ctx: &str) {
    assert!(
        statuses.contains(&resp.status),
        "{ctx}: expected HTTP status in {statuses:?}, got {}",
        resp.describe()
    );
    assert!(
        resp.content_type
            .to_ascii_lowercase()
            .starts_with("application/problem+json"),
        "{ctx}: expected content-type application/problem+json, got {}",
        resp.describe()
    );
    let body = match &resp.json {
        Some(Value::Object(_)) => resp.json.as_ref().unwrap(),
        _ => panic!(
            "{ctx}: problem body is not a JSON object: {}",
            resp.describe()
        ),
    };
    assert_eq!(
        body.get("status").and_then(Value::as_u64),
        Some(resp.status as u64),
        "{ctx}: problem member `status` must equal the HTTP status: {}",
        resp.describe()
    );
    assert!(
        body.get("title").map(Value::is_string).unwrap_or(false),
        "{ctx}: problem member `title` must be a string: {}",
        resp.describe()
    );
    let code = body.get("code").and_then(Value::as_str);
    match code {
        None => panic!(
            "{ctx}: problem member `code` missing or not a string: {}",
            resp.describe()
        ),
        Some(c) => assert!(
            codes.is_empty() || codes.contains(&c),
            "{ctx}: expected problem code in {codes:?}, got {c:?}: {}",
            resp.describe()
        ),
    }
}

/// Polls `f` until it returns `Ok`, for up to [`EVENTUALLY`]; panics with
/// the last error otherwise.
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    eventually_within(EVENTUALLY, what, f).await
}

pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                if start.elapsed() > limit {
                    panic!("eventually({what}) did not hold within {limit:?}: {e}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A short pause used after a positive signal (a later message was
/// delivered) before asserting that something was *not* delivered.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

/// `message_id`s of a list of messages.
pub fn ids(messages: &[Value]) -> Vec<String> {
    messages.iter().map(msg_id).collect()
}

pub fn msg_id(m: &Value) -> String {
    m.get("message_id")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("message without string message_id: {m}"))
        .to_string()
}

/// Asserts that no id occurs twice; returns the duplicates for messages.
pub fn assert_no_duplicates(ids: &[String], ctx: &str) {
    let mut seen = HashSet::new();
    let dups: Vec<&String> = ids.iter().filter(|i| !seen.insert(*i)).collect();
    assert!(
        dups.is_empty(),
        "{ctx}: {} duplicate id(s), e.g. {:?}",
        dups.len(),
        dups.iter().take(5).collect::<Vec<_>>()
    );
}

/// Asserts the full shape of a message object.
pub fn assert_message_shape(m: &Value, ctx: &str) {
    let obj = m
        .as_object()
        .unwrap_or_else(|| panic!("{ctx}: message is not an object: {m}"));
    for key in ["message_id", "sender_id", "message", "sent_at"] {
        assert!(
            obj.get(key).map(Value::is_string).unwrap_or(false),
            "{ctx}: message member {key:?} missing or not a string: {m}"
        );
    }
    let sent_at = obj["sent_at"].as_str().unwrap();
    assert_rfc3339_utc(sent_at, ctx);
    let has_receiver = obj
        .get("receiver_id")
        .map(Value::is_string)
        .unwrap_or(false);
    let has_group = obj.get("group_id").map(Value::is_string).unwrap_or(false);
    assert!(
        has_receiver ^ has_group,
        "{ctx}: a message carries exactly one of receiver_id / group_id (as a string): {m}"
    );
}

pub fn assert_rfc3339_utc(s: &str, ctx: &str) {
    let parsed = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339);
    assert!(
        parsed.is_ok(),
        "{ctx}: sent_at {s:?} is not RFC 3339: {:?}",
        parsed.err()
    );
    assert!(
        s.ends_with('Z') || s.ends_with("+00:00"),
        "{ctx}: sent_at {s:?} is not UTC (must end in Z or +00:00)"
    );
}

pub fn parse_rfc3339(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("sent_at {s:?} is not RFC 3339: {e}"))
}

/// Groups ids by sender, preserving order.
pub fn by_sender(messages: &[Value]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for m in messages {
        let s = m
            .get("sender_id")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("message without sender_id: {m}"))
            .to_string();
        out.entry(s).or_default().push(msg_id(m));
    }
    out
}

/// One page of get-new-messages.
#[derive(Debug, Clone)]
pub struct NewPage {
    pub messages: Vec<Value>,
    pub cursor: String,
}

/// One page of get-all-messages.
#[derive(Debug, Clone)]
pub struct AllPage {
    pub messages: Vec<Value>,
    pub next_cursor: Option<String>,
}

/// The variable that selects the backend the suite runs against: unset or `embedded`, or
/// `dynamodb` (DynamoDB + Streams + SQS on the moto server that `./scripts/test` starts).
pub const BACKEND_VAR: &str = "MESSAGING_E2E_BACKEND";

/// Whether this run drives the server on DynamoDB/SQS (moto) instead of the embedded store.
pub fn backend_is_dynamodb() -> bool {
    match std::env::var(BACKEND_VAR).as_deref() {
        Err(_) | Ok("") | Ok("embedded") => false,
        Ok("dynamodb") => true,
        Ok(other) => panic!("{BACKEND_VAR}={other}: expected embedded or dynamodb"),
    }
}

/// The moto endpoint of the dynamodb backend.
fn moto_endpoint() -> String {
    std::env::var("MESSAGING_TEST_MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "{BACKEND_VAR}=dynamodb needs MESSAGING_TEST_MOTO_ENDPOINT: run ./scripts/test, \
             which installs and starts moto server"
        )
    })
}

/// The table and queue name prefix of a server on `dir`: derived from the data directory, so
/// a restart on the same directory finds the same tables.
fn table_prefix(dir: &Path) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&dir, &mut hasher);
    format!("e2e{:016x}-", std::hash::Hasher::finish(&hasher))
}

/// The server's environment for the DynamoDB backend on moto.
pub fn dynamodb_env(dir: &Path) -> Vec<(String, String)> {
    [
        ("MESSAGING_BACKEND", "dynamodb".to_string()),
        ("MESSAGING_TABLE_PREFIX", table_prefix(dir)),
        ("MESSAGING_CREATE_RESOURCES", "1".to_string()),
        ("AWS_ENDPOINT_URL", moto_endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A running `messaging` server (killed on drop).
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    child: Option<Child>,
    pid: u32,
    data_dir: PathBuf,
    _own_dir: Option<tempfile::TempDir>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl TestServer {
    /// A server on a fresh temporary data directory.
    pub fn spawn() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self::spawn_in(dir.path());
        s._own_dir = Some(dir);
        s
    }

    /// A server on a fresh temporary data directory with extra environment variables (set
    /// after the defaults, so they override them: e.g. `MESSAGING_RATE_LIMIT_PER_MINUTE`).
    pub fn spawn_with_env(env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self::spawn_in_with_env(dir.path(), env);
        s._own_dir = Some(dir);
        s
    }

    /// A server on `dir` (which the caller keeps alive), e.g. for restarts.
    pub fn spawn_in(dir: &Path) -> TestServer {
        Self::spawn_in_with_env(dir, &[])
    }

    /// [`TestServer::spawn_in`] with extra environment variables.
    pub fn spawn_in_with_env(dir: &Path, env: &[(&str, &str)]) -> TestServer {
        let log_dir = tempfile::tempdir().expect("tempdir for logs");
        let log_path = log_dir.path().join("server-stderr.log");
        let log = std::fs::File::create(&log_path).expect("create log file");
        // MESSAGING_E2E_BIN runs the suite against another build of the server.
        let bin = std::env::var("MESSAGING_E2E_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_messaging").to_string());
        let mut command = Command::new(bin);
        command
            .env("MESSAGING_ADDR", "127.0.0.1:0")
            .env("MESSAGING_DATA_DIR", dir)
            .env("MESSAGING_SWEEP_AFTER_SECS", "2")
            .env("MESSAGING_RATE_LIMIT_PER_MINUTE", "0")
            .env("RUST_LOG", "warn");
        if backend_is_dynamodb() {
            command.envs(dynamodb_env(dir));
        }
        command.envs(env.iter().copied());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn the messaging binary");
        let pid = child.id();
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            match reader.read_line(&mut first) {
                Ok(n) if n > 0 => {
                    let _ = tx.send(first);
                }
                _ => return,
            }
            // Keep draining so the child never blocks on a full pipe.
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
            if !sink.is_empty() {
                eprintln!(
                    "[test harness] server printed more than one stdout line: {:?}",
                    truncate(&String::from_utf8_lossy(&sink), 400)
                );
            }
        });
        let first = match rx.recv_timeout(STARTUP) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!(
                    "server did not print its `listening on` line ({e:?}); exit status {status:?}; stderr:\n{}",
                    tail(&log_path, 60)
                );
            }
        };
        let line = first.trim_end_matches(['\r', '\n']);
        let base = match line.strip_prefix("listening on ") {
            Some(url) if url.starts_with("http://") => url.trim_end_matches('/').to_string(),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "first stdout line must be `listening on http://127.0.0.1:PORT`, got {line:?}"
                )
            }
        };
        // moto is single-threaded: under the suite's load one slow command (a group of 1,000
        // members checks each of them) can wait its turn for long.
        let timeout = Duration::from_secs(if backend_is_dynamodb() { 120 } else { 30 });
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .expect("reqwest client");
        TestServer {
            base,
            client,
            child: Some(child),
            pid,
            data_dir: dir.to_path_buf(),
            _own_dir: None,
            log_path,
            _log_dir: log_dir,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGKILL, then reap.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait up to 15 s for a clean exit (SIGKILL after that).
    /// Returns the exit status if the process exited by itself.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("[test harness] server did not exit within 15 s of SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The last lines the server wrote to stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        tail(&self.log_path, lines)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// On the dynamodb backend, the name of one of the server's tables (e.g. `events`).
    pub fn dynamodb_table(&self, name: &str) -> String {
        assert!(
            backend_is_dynamodb(),
            "only the dynamodb backend has tables"
        );
        format!("{}{name}", table_prefix(&self.data_dir))
    }

    /// On the dynamodb backend, one DynamoDB call straight to moto (JSON protocol; moto does
    /// not check signatures), for test setup that the API would make slow there. Panics
    /// unless it succeeds.
    pub async fn dynamodb_call(&self, operation: &str, body: &Value) -> Value {
        assert!(
            backend_is_dynamodb(),
            "only the dynamodb backend has DynamoDB"
        );
        let resp = self
            .client
            .post(moto_endpoint())
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("DynamoDB_20120810.{operation}"))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DynamoDB {operation} failed at the transport level: {e}"));
        let resp = Self::capture(resp).await;
        resp.expect_status(200, &format!("DynamoDB {operation}"));
        resp.body().clone()
    }

    // ---------------------------------------------------------------- raw

    async fn capture(resp: reqwest::Response) -> Resp {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).ok();
        Resp {
            status,
            content_type,
            headers,
            text,
            json,
        }
    }

    /// POST with arbitrary bytes and headers.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.try_post_raw(path, token, content_type, body, headers)
            .await
            .unwrap_or_else(|e| panic!("POST {path} failed at the transport level: {e}"))
    }

    pub async fn try_post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, reqwest::Error> {
        let mut req = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(t) = token {
            req = req.header(reqwest::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        Ok(Self::capture(resp).await)
    }

    /// POST a JSON value.
    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.post_json_with(path, token, body, &[]).await
    }

    pub async fn post_json_with(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.post_raw(
            path,
            token,
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
            headers,
        )
        .await
    }

    /// GET with query pairs (URL-encoded by the client).
    pub async fn get(&self, path: &str, token: Option<&str>, query: &[(&str, &str)]) -> Resp {
        self.get_with(path, token, query, &[]).await
    }

    pub async fn get_with(
        &self,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.client.get(self.url(path)).query(query);
        if let Some(t) = token {
            req = req.header(reqwest::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed at the transport level: {e}"));
        Self::capture(resp).await
    }

    // -------------------------------------------------------------- typed

    pub async fn register(&self) -> User {
        let r = self
            .post_raw("/register", None, None, Vec::new(), &[])
            .await;
        r.expect_status(201, "POST /register");
        User {
            id: r.str_field("user_id"),
            token: r.str_field("token"),
        }
    }

    /// Registers `n` users, `concurrency` at a time.
    pub async fn register_many(&self, n: usize) -> Vec<User> {
        use futures::StreamExt;
        futures::stream::iter(0..n)
            .map(|_| self.register())
            .buffer_unordered(16)
            .collect()
            .await
    }

    pub async fn try_send(&self, from: &User, to: &str, message: &str) -> Resp {
        self.post_json(
            "/send-message",
            Some(&from.token),
            &json!({"sender_id": from.id, "receiver_id": to, "message": message}),
        )
        .await
    }

    /// Sends a direct message; asserts 202 and returns the message id.
    pub async fn send(&self, from: &User, to: &str, message: &str) -> String {
        let r = self.try_send(from, to, message).await;
        r.expect_status(202, "POST /send-message");
        r.str_field("message_id")
    }

    pub async fn try_send_group(&self, from: &User, group: &str, message: &str) -> Resp {
        self.post_json(
            "/send-group-message",
            Some(&from.token),
            &json!({"sender_id": from.id, "group_id": group, "message": message}),
        )
        .await
    }

    pub async fn send_group(&self, from: &User, group: &str, message: &str) -> String {
        let r = self.try_send_group(from, group, message).await;
        r.expect_status(202, "POST /send-group-message");
        r.str_field("message_id")
    }

    pub async fn try_create_group(&self, creator: &User, name: &str, members: &[&str]) -> Resp {
        self.post_json(
            "/create-group",
            Some(&creator.token),
            &json!({"group_name": name, "creator_id": creator.id, "members": members}),
        )
        .await
    }

    pub async fn create_group(&self, creator: &User, name: &str, members: &[&str]) -> String {
        let r = self.try_create_group(creator, name, members).await;
        r.expect_status(201, "POST /create-group");
        r.str_field("group_id")
    }

    pub async fn try_block(&self, user: &User, blocked: &str) -> Resp {
        self.post_json(
            "/block-user",
            Some(&user.token),
            &json!({"user_id": user.id, "blocked_user_id": blocked}),
        )
        .await
    }

    pub async fn block(&self, user: &User, blocked: &str) {
        self.try_block(user, blocked)
            .await
            .expect_status(200, "POST /block-user");
    }

    pub async fn try_unblock(&self, user: &User, blocked: &str) -> Resp {
        self.post_json(
            "/unblock-user",
            Some(&user.token),
            &json!({"user_id": user.id, "blocked_user_id": blocked}),
        )
        .await
    }

    pub async fn unblock(&self, user: &User, blocked: &str) {
        self.try_unblock(user, blocked)
            .await
            .expect_status(200, "POST /unblock-user");
    }

    pub async fn try_add_member(&self, caller: &User, group: &str, user: &str) -> Resp {
        self.post_json(
            "/add-user-to-group",
            Some(&caller.token),
            &json!({"group_id": group, "user_id": user}),
        )
        .await
    }

    pub async fn add_member(&self, caller: &User, group: &str, user: &str) {
        self.try_add_member(caller, group, user)
            .await
            .expect_status(200, "POST /add-user-to-group");
    }

    pub async fn try_remove_member(&self, caller: &User, group: &str, user: &str) -> Resp {
        self.post_json(
            "/remove-user-from-group",
            Some(&caller.token),
            &json!({"group_id": group, "user_id": user}),
        )
        .await
    }

    pub async fn remove_member(&self, caller: &User, group: &str, user: &str) {
        self.try_remove_member(caller, group, user)
            .await
            .expect_status(200, "POST /remove-user-from-group");
    }

    pub async fn try_new_messages(&self, user: &User, query: &[(&str, &str)]) -> Resp {
        let mut q = vec![("user_id", user.id.as_str())];
        q.extend_from_slice(query);
        self.get("/get-new-messages", Some(&user.token), &q).await
    }

    /// get-new-messages; asserts 200 and the response shape.
    pub async fn new_messages(
        &self,
        user: &User,
        since: Option<&str>,
        limit: Option<u32>,
    ) -> NewPage {
        let limit_s = limit.map(|l| l.to_string());
        let mut q: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = since {
            q.push(("since", s));
        }
        if let Some(l) = &limit_s {
            q.push(("limit", l));
        }
        let r = self.try_new_messages(user, &q).await;
        r.expect_status(200, "GET /get-new-messages");
        let body = r.body();
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("get-new-messages: `messages` is not an array: {}", r.text))
            .clone();
        let cursor = body
            .get("cursor")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("get-new-messages: `cursor` is not a string: {}", r.text))
            .to_string();
        if let Some(l) = limit {
            assert!(
                messages.len() <= l as usize,
                "get-new-messages returned {} messages for limit={l}",
                messages.len()
            );
        }
        NewPage { messages, cursor }
    }

    pub async fn try_all_messages(&self, user: &User, query: &[(&str, &str)]) -> Resp {
        let mut q = vec![("user_id", user.id.as_str())];
        q.extend_from_slice(query);
        self.get("/get-all-messages", Some(&user.token), &q).await
    }

    /// One page of get-all-messages; asserts 200 and the response shape.
    pub async fn all_page(&self, user: &User, cursor: Option<&str>, limit: Option<u32>) -> AllPage {
        let limit_s = limit.map(|l| l.to_string());
        let mut q: Vec<(&str, &str)> = Vec::new();
        if let Some(c) = cursor {
            q.push(("cursor", c));
        }
        if let Some(l) = &limit_s {
            q.push(("limit", l));
        }
        let r = self.try_all_messages(user, &q).await;
        r.expect_status(200, "GET /get-all-messages");
        let body = r.body();
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("get-all-messages: `messages` is not an array: {}", r.text))
            .clone();
        let next_cursor = match body.get("next_cursor") {
            Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            other => panic!(
                "get-all-messages: `next_cursor` must be a string or null, got {other:?}: {}",
                r.text
            ),
        };
        if let Some(l) = limit {
            assert!(
                messages.len() <= l as usize,
                "get-all-messages returned {} messages for limit={l}",
                messages.len()
            );
        }
        AllPage {
            messages,
            next_cursor,
        }
    }

    /// The whole history, following next_cursor with limit=100.
    pub async fn all_messages(&self, user: &User) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let page = self.all_page(user, cursor.as_deref(), Some(100)).await;
            out.extend(page.messages);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
        panic!("get-all-messages pagination did not end after 10,000 pages");
    }

    pub async fn all_ids(&self, user: &User) -> Vec<String> {
        ids(&self.all_messages(user).await)
    }

    /// Waits until the user's history contains every id in `wanted`;
    /// returns the history.
    pub async fn wait_history_contains(&self, user: &User, wanted: &[String]) -> Vec<Value> {
        self.wait_history_contains_within(EVENTUALLY, user, wanted)
            .await
    }

    pub async fn wait_history_contains_within(
        &self,
        limit: Duration,
        user: &User,
        wanted: &[String],
    ) -> Vec<Value> {
        eventually_within(limit, "history contains the expected messages", || async {
            let all = self.all_messages(user).await;
            let have: HashSet<String> = ids(&all).into_iter().collect();
            let missing: Vec<&String> = wanted.iter().filter(|w| !have.contains(*w)).collect();
            if missing.is_empty() {
                Ok(all)
            } else {
                Err(format!(
                    "{} of {} expected ids missing from the history of {} (history has {}), e.g. {:?}",
                    missing.len(),
                    wanted.len(),
                    user.id,
                    have.len(),
                    missing.iter().take(3).collect::<Vec<_>>()
                ))
            }
        })
        .await
    }

    /// Polls get-new-messages (no `since`), accumulating, until every id in
    /// `wanted` has been returned; returns everything returned, in order.
    pub async fn collect_new_until(&self, user: &User, wanted: &[String]) -> Vec<Value> {
        self.collect_new_until_within(EVENTUALLY, user, wanted)
            .await
    }

    pub async fn collect_new_until_within(
        &self,
        limit: Duration,
        user: &User,
        wanted: &[String],
    ) -> Vec<Value> {
        let mut acc: Vec<Value> = Vec::new();
        let start = Instant::now();
        loop {
            let page = self.new_messages(user, None, None).await;
            acc.extend(page.messages);
            let have: HashSet<String> = ids(&acc).into_iter().collect();
            let missing: Vec<&String> = wanted.iter().filter(|w| !have.contains(*w)).collect();
            if missing.is_empty() {
                return acc;
            }
            if start.elapsed() > limit {
                panic!(
                    "get-new-messages for {} did not return {} of {} expected ids within {:?} (got {} messages: {:?})",
                    user.id,
                    missing.len(),
                    wanted.len(),
                    limit,
                    acc.len(),
                    ids(&acc)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- server {} stderr (last lines) ----\n{}\n----",
                self.base,
                tail(&self.log_path, 40)
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

/// A random v4 UUID string (an id nobody has).
pub fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
