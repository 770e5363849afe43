//! The REST endpoints: each one extracts, calls one command handler and shapes the answer.

use crate::extract::{ApiJson, ApiQuery, Authenticated, BearerToken, IdempotencyKey, OptionalJson};
use crate::fallback::{not_found, problem_guard};
use crate::problem::Problem;
use crate::rate_limit::{gcra, Admission};
use crate::request_context::request_context;
use crate::state::AppState;
use crate::views::{HistoryJson, NewMessagesJson};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use messaging_commands::{
    Accepted, BlockUser, CreateGroup, Done, GetAllMessages, GetNewMessages, GroupCreatedResponse,
    GroupMember, Register, Registered, RevokeToken, Revoked, SendGroupMessage, SendMessage,
};
use messaging_events::UserId;
use serde_json::{json, Value};
use tower_http::catch_panic::CatchPanicLayer;

/// The API's router over `state`, with body limit, problem responses and request context.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/register", post(register))
        .route("/send-message", post(send_message))
        .route("/block-user", post(block_user))
        .route("/unblock-user", post(unblock_user))
        .route("/create-group", post(create_group))
        .route("/add-user-to-group", post(add_user_to_group))
        .route("/remove-user-from-group", post(remove_user_from_group))
        .route("/send-group-message", post(send_group_message))
        .route("/get-new-messages", get(get_new_messages))
        .route("/get-all-messages", get(get_all_messages))
        .route("/health", get(health))
        .route("/revoke-token", post(revoke_token))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        // A bug in one handler answers 500 as a problem instead of dropping the connection.
        .layer(CatchPanicLayer::custom(|_| {
            Problem::internal().into_response()
        }))
        .layer(middleware::from_fn(problem_guard))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

type Reply<T> = Result<(StatusCode, Json<T>), Problem>;

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The OpenAPI 3.1 document of this API (the same as `docs/openapi.json`).
async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::document_json(),
    )
}

/// Refuses a send over the caller's rate limit, before anything is read or written.
async fn admit(state: &AppState, user: UserId) -> Result<(), Problem> {
    match state.rate_limiter.admit(user).await {
        Admission::Allowed => Ok(()),
        Admission::Limited { retry_after } => {
            tracing::info!(user_id = %user, "send refused: rate limit");
            Err(Problem::rate_limited(gcra::retry_after_secs(retry_after)))
        }
    }
}

async fn register(
    State(state): State<AppState>,
    key: IdempotencyKey,
    OptionalJson(body): OptionalJson<Register>,
) -> Reply<Registered> {
    let registered = state
        .handlers
        .register(body.unwrap_or_default(), key.as_deref())
        .await?;
    tracing::Span::current().record("user_id", registered.user_id.as_str());
    Ok((StatusCode::CREATED, Json(registered)))
}

async fn send_message(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<SendMessage>,
) -> Reply<Accepted> {
    admit(&state, actor).await?;
    let accepted = state
        .handlers
        .send_message(actor, body, key.as_deref())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

async fn block_user(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<BlockUser>,
) -> Reply<Done> {
    let done = state
        .handlers
        .block_user(actor, body, key.as_deref())
        .await?;
    Ok((StatusCode::OK, Json(done)))
}

async fn unblock_user(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<BlockUser>,
) -> Reply<Done> {
    let done = state
        .handlers
        .unblock_user(actor, body, key.as_deref())
        .await?;
    Ok((StatusCode::OK, Json(done)))
}

async fn create_group(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<CreateGroup>,
) -> Reply<GroupCreatedResponse> {
    let created = state
        .handlers
        .create_group(actor, body, key.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn add_user_to_group(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<GroupMember>,
) -> Reply<Done> {
    let done = state
        .handlers
        .add_user_to_group(actor, body, key.as_deref())
        .await?;
    Ok((StatusCode::OK, Json(done)))
}

async fn remove_user_from_group(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<GroupMember>,
) -> Reply<Done> {
    let done = state
        .handlers
        .remove_user_from_group(actor, body, key.as_deref())
        .await?;
    Ok((StatusCode::OK, Json(done)))
}

async fn send_group_message(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<SendGroupMessage>,
) -> Reply<Accepted> {
    admit(&state, actor).await?;
    let accepted = state
        .handlers
        .send_group_message(actor, body, key.as_deref())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

async fn revoke_token(
    State(state): State<AppState>,
    BearerToken(token): BearerToken,
    key: IdempotencyKey,
    OptionalJson(body): OptionalJson<RevokeToken>,
) -> Reply<Revoked> {
    let revoked = state
        .handlers
        .revoke_token(&token, body.unwrap_or_default(), key.as_deref())
        .await?;
    Ok((StatusCode::OK, Json(revoked)))
}

/// The long-poll part of `GET /get-new-messages`: `wait=N` seconds, 0 (the default) to 20.
#[derive(Debug, serde::Deserialize)]
struct LongPoll {
    #[serde(default)]
    wait: Option<String>,
}

impl LongPoll {
    fn duration(&self) -> Result<std::time::Duration, Problem> {
        let max = messaging_projections::MAX_LONG_POLL.as_secs();
        match self.wait.as_deref().map(str::parse::<u64>) {
            None => Ok(std::time::Duration::ZERO),
            Some(Ok(secs)) if secs <= max => Ok(std::time::Duration::from_secs(secs)),
            Some(_) => Err(Problem::invalid(format!(
                "wait must be an integer number of seconds from 0 to {max}"
            ))),
        }
    }
}

/// Answers at once, or with `wait`, as soon as a message is there (or empty after the wait).
/// The waiter is the server's delivery hub when it provides one (an `Extension`), else a
/// timer that re-queries every second, capped at 5 s (the Lambda function: see the README).
async fn get_new_messages(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    waiter: Option<axum::Extension<std::sync::Arc<dyn messaging_projections::InboxWaiter>>>,
    ApiQuery(query): ApiQuery<GetNewMessages>,
    ApiQuery(long_poll): ApiQuery<LongPoll>,
) -> Reply<NewMessagesJson> {
    let wait = long_poll.duration()?;
    let new = if wait.is_zero() {
        state.handlers.get_new_messages(actor, query).await?
    } else {
        let fallback = messaging_projections::PollingWaiter::LAMBDA;
        let waiter: &dyn messaging_projections::InboxWaiter = match &waiter {
            Some(axum::Extension(waiter)) => waiter.as_ref(),
            None => &fallback,
        };
        messaging_projections::long_poll(
            waiter,
            actor,
            wait,
            || state.handlers.get_new_messages(actor, query.clone()),
            |new| new.messages.is_empty(),
        )
        .await?
    };
    Ok((StatusCode::OK, Json(new.into())))
}

async fn get_all_messages(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    ApiQuery(query): ApiQuery<GetAllMessages>,
) -> Reply<HistoryJson> {
    let page = state.handlers.get_all_messages(actor, query).await?;
    Ok((StatusCode::OK, Json(page.into())))
}
