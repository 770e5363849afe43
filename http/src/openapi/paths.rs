//! The operations of the REST contract: one [`Operation`] per route of `routes.rs`, turned
//! into OpenAPI path items. A test compares this list with the router's routes.

use super::schemas::schema_ref;
use messaging_events::Limits;
use serde_json::{json, Map, Value};

/// Where a request's input comes from.
#[derive(Debug, Clone, Copy)]
pub enum Input {
    /// Nothing.
    None,
    /// A JSON body with this schema; `required` false means an empty body is fine.
    Body {
        schema: &'static str,
        required: bool,
    },
    /// Query parameters.
    Query(fn(&Limits) -> Vec<Value>),
}

/// One documented route.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// `get` or `post`.
    pub method: &'static str,
    /// The path, as routed.
    pub path: &'static str,
    /// A stable operation id.
    pub id: &'static str,
    /// One line.
    pub summary: &'static str,
    /// What it does, in Markdown.
    pub description: &'static str,
    /// Needs `Authorization: Bearer <token>`.
    pub authenticated: bool,
    /// Accepts `Idempotency-Key`.
    pub idempotent: bool,
    /// Its input.
    pub input: Input,
    /// Success status, response schema and its description.
    pub success: (u16, &'static str, &'static str),
    /// The error statuses it may answer with (each a problem document).
    pub errors: &'static [u16],
}

const COMMAND_ERRORS: &[u16] = &[400, 401, 403, 404, 409, 413, 500, 503];
const SEND_ERRORS: &[u16] = &[400, 401, 403, 404, 409, 413, 429, 500, 503];
const QUERY_ERRORS: &[u16] = &[400, 401, 403, 500, 503];

/// Every route the router serves.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "post",
        path: "/register",
        id: "register",
        summary: "Register a user",
        description: "Creates a user and their first bearer token. The token is shown once and stored only as a hash.",
        authenticated: false,
        idempotent: true,
        input: Input::Body { schema: "RegisterRequest", required: false },
        success: (201, "Registered", "The new user and their token"),
        errors: &[400, 409, 413, 500, 503],
    },
    Operation {
        method: "post",
        path: "/send-message",
        id: "sendMessage",
        summary: "Send a direct message",
        description: "Accepts a direct message for asynchronous delivery: 202 means durably appended and enqueued. A blocked sender is not told. Rate-limited per user (429 with Retry-After; nothing is written).",
        authenticated: true,
        idempotent: true,
        input: Input::Body { schema: "SendMessageRequest", required: true },
        success: (202, "Accepted", "Accepted for delivery"),
        errors: SEND_ERRORS,
    },
    Operation {
        method: "post",
        path: "/block-user",
        id: "blockUser",
        summary: "Block a user",
        description: "From now on, the blocked user's direct and group messages are not delivered to the caller. The blocked user is never told.",
        authenticated: true,
        idempotent: true,
        input: Input::Body { schema: "BlockRequest", required: true },
        success: (200, "Done", "Blocked"),
        errors: COMMAND_ERRORS,
    },
    Operation {
        method: "post",
        path: "/unblock-user",
        id: "unblockUser",
        summary: "Unblock a user",
        description: "Restores delivery of the user's later messages to the caller.",
        authenticated: true,
        idempotent: true,
        input: Input::Body { schema: "BlockRequest", required: true },
        success: (200, "Done", "Unblocked"),
        errors: COMMAND_ERRORS,
    },
    Operation {
        method: "post",
        path: "/create-group",
        id: "createGroup",
        summary: "Create a group",
        description: "Creates a group whose admin and first member is the caller. Unknown members: 404, nothing is created.",
        authenticated: true,
        idempotent: true,
        input: Input::Body { schema: "CreateGroupRequest", required: true },
        success: (201, "GroupCreated", "The new group"),
        errors: COMMAND_ERRORS,
    },
    Operation {
        method: "post",
        path: "/add-user-to-group",
        id: "addUserToGroup",
        summary: "Add a member to a group",
        description: "Only the group's admin may add members (others get 403).",
        authenticated: true,
        idempotent: true,
        input: Input::Body { schema: "GroupMemberRequest", required: true },
        success: (200, "Done", "Added"),
        errors: COMMAND_ERRORS,
    },
    Operation {
        method: "post",
        path: "/remove-user-from-group",
        id: "removeUserFromGroup",
        summary: "Remove a member from a group",
        description: "The admin removes anyone; any member may remove themselves (leave).",
        authenticated: true,
        idempotent: true,
        input: Input::Body { schema: "GroupMemberRequest", required: true },
        success: (200, "Done", "Removed"),
        errors: COMMAND_ERRORS,
    },
    Operation {
        method: "post",
        path: "/send-group-message",
        id: "sendGroupMessage",
        summary: "Send a group message",
        description: "Accepts a message from a current member for asynchronous delivery to the other members. Rate-limited per user like direct messages.",
        authenticated: true,
        idempotent: true,
        input: Input::Body { schema: "SendGroupMessageRequest", required: true },
        success: (202, "Accepted", "Accepted for delivery"),
        errors: SEND_ERRORS,
    },
    Operation {
        method: "post",
        path: "/revoke-token",
        id: "revokeToken",
        summary: "Revoke the caller's token",
        description: "Revokes the token this request carries (with `{\"all\": true}`, every token of its user). The next request with a revoked token gets 401; a retry with the same Idempotency-Key gets the first response.",
        authenticated: true,
        idempotent: true,
        input: Input::Body { schema: "RevokeTokenRequest", required: false },
        success: (200, "Revoked", "Revoked"),
        errors: &[400, 401, 409, 413, 500, 503],
    },
    Operation {
        method: "get",
        path: "/get-new-messages",
        id: "getNewMessages",
        summary: "Read new messages",
        description: "Messages delivered to the caller that no earlier call returned, oldest first; moves the read marker past them. With `since` (a previous response's cursor) the call is repeatable.",
        authenticated: true,
        idempotent: false,
        input: Input::Query(new_messages_query),
        success: (200, "NewMessages", "New messages"),
        errors: QUERY_ERRORS,
    },
    Operation {
        method: "get",
        path: "/get-all-messages",
        id: "getAllMessages",
        summary: "Read the whole history",
        description: "The caller's history, sent and received, direct and group, paginated oldest first.",
        authenticated: true,
        idempotent: false,
        input: Input::Query(all_messages_query),
        success: (200, "History", "A page of the history"),
        errors: QUERY_ERRORS,
    },
    Operation {
        method: "get",
        path: "/health",
        id: "health",
        summary: "Liveness",
        description: "200 while the server runs.",
        authenticated: false,
        idempotent: false,
        input: Input::None,
        success: (200, "Health", "Up"),
        errors: &[],
    },
    Operation {
        method: "get",
        path: "/openapi.json",
        id: "openapi",
        summary: "This document",
        description: "The OpenAPI 3.1 document of the API (also committed as docs/openapi.json).",
        authenticated: false,
        idempotent: false,
        input: Input::None,
        success: (200, "", "The OpenAPI document"),
        errors: &[],
    },
];

fn user_id_param() -> Value {
    json!({
        "name": "user_id",
        "in": "query",
        "required": true,
        "description": "the caller (the token's user; anybody else is 403)",
        "schema": { "type": "string", "format": "uuid" },
    })
}

fn limit_param(limits: &Limits) -> Value {
    json!({
        "name": "limit",
        "in": "query",
        "required": false,
        "description": format!("page size, 1 to {} (the default)", limits.max_page_size),
        "schema": { "type": "integer", "minimum": 1, "maximum": limits.max_page_size },
    })
}

fn cursor_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "required": false,
        "description": description,
        "schema": { "type": "string" },
    })
}

fn new_messages_query(limits: &Limits) -> Vec<Value> {
    let max_wait = messaging_projections::MAX_LONG_POLL.as_secs();
    vec![
        user_id_param(),
        cursor_param(
            "since",
            "a cursor from an earlier response: return what followed it (repeatable)",
        ),
        limit_param(limits),
        json!({
            "name": "wait",
            "in": "query",
            "required": false,
            "description": format!(
                "long poll: wait up to this many seconds (0, the default, to {max_wait}) for a message when there is none yet"
            ),
            "schema": { "type": "integer", "minimum": 0, "maximum": max_wait },
        }),
    ]
}

fn all_messages_query(limits: &Limits) -> Vec<Value> {
    vec![
        user_id_param(),
        cursor_param(
            "cursor",
            "next_cursor of the previous page; absent for the first page",
        ),
        limit_param(limits),
    ]
}

/// The name of the shared response of an error status.
pub fn error_response_name(status: u16) -> &'static str {
    match status {
        400 => "InvalidRequest",
        401 => "Unauthenticated",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        413 => "PayloadTooLarge",
        429 => "RateLimited",
        503 => "Unavailable",
        _ => "Internal",
    }
}

/// `components.responses`: one problem response per error status.
pub fn error_responses() -> Map<String, Value> {
    let problem = |description: &str, extra_headers: Value| {
        let mut headers = json!({ "x-request-id": { "$ref": "#/components/headers/RequestId" } });
        if let (Some(headers), Some(extra)) = (headers.as_object_mut(), extra_headers.as_object()) {
            headers.extend(extra.clone());
        }
        json!({
            "description": description,
            "headers": headers,
            "content": { crate::PROBLEM_JSON: { "schema": schema_ref("Problem") } },
        })
    };
    let retry_after = json!({ "Retry-After": { "$ref": "#/components/headers/RetryAfter" } });
    let mut responses = Map::new();
    for (status, description, headers) in [
        (400, "invalid_request: malformed JSON, wrong types, missing fields, bad ids, cursors or limits", json!({})),
        (401, "unauthenticated: no, malformed, unknown or revoked bearer token", json!({ "WWW-Authenticate": { "$ref": "#/components/headers/WwwAuthenticate" } })),
        (403, "forbidden: acting as somebody else, or without the group role", json!({})),
        (404, "not_found: an id that names no user or group", json!({})),
        (409, "conflict: the Idempotency-Key was used with another request", json!({})),
        (413, "payload_too_large: the body or the message is over its limit", json!({})),
        (429, "rate_limited: too many sends by this user; retry after Retry-After seconds", retry_after.clone()),
        (500, "internal: a fault of the server (never a client mistake)", json!({})),
        (503, "unavailable: storage or queue temporarily failing; safe to retry", retry_after),
    ] {
        responses.insert(
            error_response_name(status).to_string(),
            problem(description, headers),
        );
    }
    responses
}

/// The path item entry of one operation.
pub fn operation(op: &Operation, limits: &Limits) -> Value {
    let mut parameters: Vec<Value> = Vec::new();
    if op.idempotent {
        parameters.push(json!({ "$ref": "#/components/parameters/IdempotencyKey" }));
    }
    let mut value = json!({
        "operationId": op.id,
        "summary": op.summary,
        "description": op.description,
    });
    match op.input {
        Input::None => {}
        Input::Query(params) => parameters.extend(params(limits)),
        Input::Body { schema, required } => {
            value["requestBody"] = json!({
                "required": required,
                "content": { "application/json": { "schema": schema_ref(schema) } },
            });
        }
    }
    if !parameters.is_empty() {
        value["parameters"] = Value::Array(parameters);
    }
    if !op.authenticated {
        value["security"] = json!([]);
    }
    let (status, schema, description) = op.success;
    let body_schema = if schema.is_empty() {
        json!({ "type": "object" })
    } else {
        schema_ref(schema)
    };
    let mut responses = Map::new();
    responses.insert(
        status.to_string(),
        json!({
            "description": description,
            "headers": { "x-request-id": { "$ref": "#/components/headers/RequestId" } },
            "content": { "application/json": { "schema": body_schema } },
        }),
    );
    for error in op.errors {
        responses.insert(
            error.to_string(),
            json!({ "$ref": format!("#/components/responses/{}", error_response_name(*error)) }),
        );
    }
    value["responses"] = Value::Object(responses);
    value
}
