//! The REST endpoints: each one extracts, calls one command handler and shapes the answer.

use crate::extract::{ApiJson, ApiQuery, Authenticated, IdempotencyKey, OptionalJson};
use crate::fallback::{not_found, problem_guard};
use crate::problem::Problem;
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
    GroupMember, Register, Registered, SendGroupMessage, SendMessage,
};
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
    let accepted = state
        .handlers
        .send_group_message(actor, body, key.as_deref())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

async fn get_new_messages(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    ApiQuery(query): ApiQuery<GetNewMessages>,
) -> Reply<NewMessagesJson> {
    let new = state.handlers.get_new_messages(actor, query).await?;
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
