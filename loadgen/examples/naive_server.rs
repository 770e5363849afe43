//! The naive design the seed started from, for the benchmark comparison only: every user's
//! inbox is ONE growing row (a JSON array of every message ever delivered to them, plus a
//! read count), every send rewrites the recipients' whole rows, and every poll reads and
//! parses the whole history to return the unread tail. Delivery is synchronous (no queue,
//! no events). Same durability as the real server (SQLite WAL, `synchronous=FULL`, commit
//! before the reply), but one transaction per request on one connection.
//!
//! The endpoints are the subset the load generator uses, with the same shapes:
//! `cargo run --release -p messaging-loadgen --example naive_server` (reads `MESSAGING_ADDR`,
//! `MESSAGING_DATA_DIR`; prints `listening on http://ADDR`).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The one database connection (the naive server serialises every request on it).
#[derive(Clone)]
struct Naive {
    db: Arc<Mutex<Connection>>,
    /// token -> user id (kept in memory: authentication is not what is compared).
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

/// An error answer: status and text.
type Failure = (StatusCode, String);

type Reply = Result<Response, Failure>;

/// A whole inbox row: every message, and how many were read.
type InboxRow = (Vec<Value>, usize);

fn fail(status: StatusCode, text: impl ToString) -> (StatusCode, String) {
    (status, text.to_string())
}

fn internal(error: impl ToString) -> (StatusCode, String) {
    fail(StatusCode::INTERNAL_SERVER_ERROR, error)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("MESSAGING_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let dir = std::env::var("MESSAGING_DATA_DIR").unwrap_or_else(|_| "./naive-data".into());
    std::fs::create_dir_all(&dir)?;
    let db = Connection::open(std::path::Path::new(&dir).join("naive.sqlite3"))?;
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS inbox (user_id TEXT PRIMARY KEY, messages TEXT NOT NULL, read INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS groups (group_id TEXT PRIMARY KEY, members TEXT NOT NULL);",
    )?;
    let state = Naive {
        db: Arc::new(Mutex::new(db)),
        tokens: Arc::new(Mutex::new(HashMap::new())),
    };
    let app = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/register", post(register))
        .route("/send-message", post(send_message))
        .route("/create-group", post(create_group))
        .route("/send-group-message", post(send_group_message))
        .route("/get-new-messages", get(get_new_messages))
        .route("/get-all-messages", get(get_all_messages))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

impl Naive {
    /// The user the bearer token belongs to.
    fn caller(&self, headers: &HeaderMap) -> Result<String, (StatusCode, String)> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| fail(StatusCode::UNAUTHORIZED, "no token"))?;
        let tokens = self.tokens.lock().map_err(internal)?;
        tokens
            .get(token)
            .cloned()
            .ok_or_else(|| fail(StatusCode::UNAUTHORIZED, "bad token"))
    }

    /// Runs `work` in one transaction on the blocking pool.
    async fn transaction<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction) -> Result<T, (StatusCode, String)> + Send + 'static,
    ) -> Result<T, (StatusCode, String)> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.lock().map_err(internal)?;
            let tx = conn.transaction().map_err(internal)?;
            let value = work(&tx)?;
            tx.commit().map_err(internal)?;
            Ok(value)
        })
        .await
        .map_err(internal)?
    }
}

/// Reads a user's whole inbox row: the naive design's unit of storage.
fn read_inbox(tx: &rusqlite::Transaction, user: &str) -> Result<Option<InboxRow>, Failure> {
    let row: Option<(String, i64)> = tx
        .query_row(
            "SELECT messages, read FROM inbox WHERE user_id = ?1",
            params![user],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(internal)?;
    match row {
        None => Ok(None),
        Some((messages, read)) => {
            let messages: Vec<Value> = serde_json::from_str(&messages).map_err(internal)?;
            Ok(Some((messages, read as usize)))
        }
    }
}

/// Appends one message to a user's row: read the whole row, push, write it all back.
fn deliver(
    tx: &rusqlite::Transaction,
    user: &str,
    message: &Value,
) -> Result<bool, (StatusCode, String)> {
    let Some((mut messages, _)) = read_inbox(tx, user)? else {
        return Ok(false);
    };
    messages.push(message.clone());
    let text = serde_json::to_string(&messages).map_err(internal)?;
    tx.execute(
        "UPDATE inbox SET messages = ?2 WHERE user_id = ?1",
        params![user, text],
    )
    .map_err(internal)?;
    Ok(true)
}

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, (StatusCode, String)> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| fail(StatusCode::BAD_REQUEST, format!("{name} missing")))
}

fn now() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    micros.to_string()
}

async fn register(State(naive): State<Naive>) -> Reply {
    let user = uuid::Uuid::new_v4().to_string();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let id = user.clone();
    naive
        .transaction(move |tx| {
            tx.execute(
                "INSERT INTO inbox (user_id, messages, read) VALUES (?1, '[]', 0)",
                params![id],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await?;
    naive
        .tokens
        .lock()
        .map_err(internal)?
        .insert(token.clone(), user.clone());
    Ok((
        StatusCode::CREATED,
        Json(json!({"user_id": user, "token": token})),
    )
        .into_response())
}

async fn send_message(
    State(naive): State<Naive>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    let caller = naive.caller(&headers)?;
    if field(&body, "sender_id")? != caller {
        return Err(fail(StatusCode::FORBIDDEN, "not you"));
    }
    let receiver = field(&body, "receiver_id")?.to_string();
    let message_id = uuid::Uuid::new_v4().to_string();
    let message = json!({
        "message_id": message_id, "sender_id": caller, "receiver_id": receiver,
        "message": field(&body, "message")?, "sent_at": now(),
    });
    let found = naive
        .transaction(move |tx| deliver(tx, &receiver, &message))
        .await?;
    if !found {
        return Err(fail(StatusCode::NOT_FOUND, "unknown receiver"));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"message_id": message_id})),
    )
        .into_response())
}

async fn create_group(
    State(naive): State<Naive>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    let caller = naive.caller(&headers)?;
    let mut members: Vec<String> = body
        .get("members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    members.push(caller);
    let group = uuid::Uuid::new_v4().to_string();
    let id = group.clone();
    naive
        .transaction(move |tx| {
            let members = serde_json::to_string(&members).map_err(internal)?;
            tx.execute(
                "INSERT INTO groups (group_id, members) VALUES (?1, ?2)",
                params![id, members],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"group_id": group}))).into_response())
}

async fn send_group_message(
    State(naive): State<Naive>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    let caller = naive.caller(&headers)?;
    let group = field(&body, "group_id")?.to_string();
    let message_id = uuid::Uuid::new_v4().to_string();
    let message = json!({
        "message_id": message_id, "sender_id": caller, "group_id": group,
        "message": field(&body, "message")?, "sent_at": now(),
    });
    naive
        .transaction(move |tx| {
            let members: Option<String> = tx
                .query_row(
                    "SELECT members FROM groups WHERE group_id = ?1",
                    params![group],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            let members: Vec<String> =
                serde_json::from_str(&members.ok_or_else(|| fail(StatusCode::NOT_FOUND, "group"))?)
                    .map_err(internal)?;
            for member in members.iter().filter(|m| **m != caller) {
                deliver(tx, member, &message)?;
            }
            Ok(())
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"message_id": message_id})),
    )
        .into_response())
}

async fn get_new_messages(
    State(naive): State<Naive>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let caller = naive.caller(&headers)?;
    if query.get("user_id") != Some(&caller) {
        return Err(fail(StatusCode::FORBIDDEN, "not you"));
    }
    let new = naive
        .transaction(move |tx| {
            // The whole history, every poll.
            let (messages, read) =
                read_inbox(tx, &caller)?.ok_or_else(|| fail(StatusCode::NOT_FOUND, "user"))?;
            let new: Vec<Value> = messages.get(read..).unwrap_or_default().to_vec();
            tx.execute(
                "UPDATE inbox SET read = ?2 WHERE user_id = ?1",
                params![caller, messages.len() as i64],
            )
            .map_err(internal)?;
            Ok(new)
        })
        .await?;
    Ok(Json(json!({"messages": new, "cursor": ""})).into_response())
}

async fn get_all_messages(
    State(naive): State<Naive>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let caller = naive.caller(&headers)?;
    if query.get("user_id") != Some(&caller) {
        return Err(fail(StatusCode::FORBIDDEN, "not you"));
    }
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let page = naive
        .transaction(move |tx| {
            let (messages, _) =
                read_inbox(tx, &caller)?.ok_or_else(|| fail(StatusCode::NOT_FOUND, "user"))?;
            Ok(messages.into_iter().take(limit).collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(json!({"messages": page, "next_cursor": null})).into_response())
}
