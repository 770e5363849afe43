//! The JSON Schemas (draft 2020-12, as OpenAPI 3.1 uses) of the bodies the API reads and
//! writes. Limits come from [`Limits::default`], the contract's defaults; the field names are
//! checked against the real request and response types by this crate's tests.

use messaging_events::Limits;
use serde_json::{json, Map, Value};

/// Every problem `code` the API answers with (see `problem.rs` and `CommandError::code`).
pub const PROBLEM_CODES: &[&str] = &[
    "invalid_request",
    "unauthenticated",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "payload_too_large",
    "rate_limited",
    "unavailable",
    "internal",
];

/// A `$ref` to a schema of `components.schemas`.
pub fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn id(description: &str) -> Value {
    json!({ "type": "string", "format": "uuid", "description": description })
}

/// A message text: the limit is in bytes of UTF-8, which JSON Schema cannot say; `maxLength`
/// (characters) is the upper bound for ASCII, and longer texts get a 413.
fn message_text(limits: &Limits) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": limits.max_message_bytes,
        "description": format!(
            "1 to {} bytes of UTF-8 (more is 413 payload_too_large)",
            limits.max_message_bytes
        ),
    })
}

/// A name that must contain something besides white space.
fn name(max_chars: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": max_chars,
        "pattern": "\\S",
        "description": description,
    })
}

/// `schema`, or `null` (an `Option` field: `null` means absent).
fn nullable(mut schema: Value) -> Value {
    schema["type"] = json!([schema["type"].clone(), "null"]);
    schema
}

fn object(required: &[&str], properties: Value, closed: bool, description: &str) -> Value {
    let mut schema = json!({
        "type": "object",
        "description": description,
        "required": required,
        "properties": properties,
    });
    if closed {
        schema["additionalProperties"] = json!(false);
    }
    schema
}

/// `components.schemas`.
pub fn components(limits: &Limits) -> Map<String, Value> {
    let mut schemas = Map::new();
    let mut add = |name: &str, schema: Value| {
        schemas.insert(name.to_string(), schema);
    };
    add(
        "Problem",
        object(
            &["type", "title", "status", "detail", "code"],
            json!({
                "type": { "type": "string", "description": "always about:blank: status and code say it all" },
                "title": { "type": "string", "description": "the status's reason phrase" },
                "status": { "type": "integer", "minimum": 400, "maximum": 599, "description": "the HTTP status" },
                "detail": { "type": "string", "description": "what went wrong with this request" },
                "code": { "type": "string", "enum": PROBLEM_CODES, "description": "stable machine-readable code" },
            }),
            false,
            "An RFC 9457 problem document: the body of every error response.",
        ),
    );
    add(
        "RegisterRequest",
        object(
            &[],
            json!({ "display_name": nullable(name(limits.max_display_name_chars, "a name to show (null: none)")) }),
            true,
            "The optional body of POST /register.",
        ),
    );
    add(
        "Registered",
        object(
            &["user_id", "token"],
            json!({
                "user_id": id("the new user's id"),
                "token": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_-]{43}$",
                    "description": "the bearer token (256 random bits, base64url): shown once, stored only as a hash",
                },
            }),
            false,
            "A new user and their token.",
        ),
    );
    add(
        "SendMessageRequest",
        object(
            &["sender_id", "receiver_id", "message"],
            json!({
                "sender_id": id("the caller (the token's user)"),
                "receiver_id": id("the recipient"),
                "message": message_text(limits),
            }),
            false,
            "A direct message.",
        ),
    );
    add(
        "SendGroupMessageRequest",
        object(
            &["sender_id", "group_id", "message"],
            json!({
                "sender_id": id("the caller (the token's user), a member of the group"),
                "group_id": id("the group"),
                "message": message_text(limits),
            }),
            false,
            "A group message.",
        ),
    );
    add(
        "Accepted",
        object(
            &["message_id"],
            json!({ "message_id": id("the accepted message's id") }),
            false,
            "A message durably accepted for asynchronous delivery.",
        ),
    );
    add(
        "BlockRequest",
        object(
            &["user_id", "blocked_user_id"],
            json!({
                "user_id": id("the caller (the token's user)"),
                "blocked_user_id": id("the user to block or unblock (not the caller)"),
            }),
            false,
            "Who blocks (or unblocks) whom.",
        ),
    );
    add(
        "CreateGroupRequest",
        object(
            &["group_name", "creator_id"],
            json!({
                "group_name": name(limits.max_group_name_chars, "the group's name"),
                "creator_id": id("the caller (the token's user), who becomes the admin and a member"),
                "members": {
                    "type": "array",
                    "items": { "type": "string", "format": "uuid" },
                    "maxItems": limits.max_group_members,
                    "default": [],
                    "description": format!(
                        "other members; with the creator at most {} in all",
                        limits.max_group_members
                    ),
                },
            }),
            false,
            "A new group.",
        ),
    );
    add(
        "GroupCreated",
        object(
            &["group_id"],
            json!({ "group_id": id("the new group's id") }),
            false,
            "The created group.",
        ),
    );
    add(
        "GroupMemberRequest",
        object(
            &["group_id", "user_id"],
            json!({
                "group_id": id("the group"),
                "user_id": id("the member added or removed (the caller's own id to leave)"),
            }),
            false,
            "A membership change, made by the group's admin (or by a member leaving).",
        ),
    );
    add(
        "Done",
        object(
            &["status"],
            json!({ "status": { "const": "ok" } }),
            false,
            "The command was applied.",
        ),
    );
    add(
        "RevokeTokenRequest",
        object(
            &[],
            json!({
                "all": {
                    "type": "boolean",
                    "default": false,
                    "description": "revoke every token of the caller, not only the one this request carries",
                },
            }),
            true,
            "The optional body of POST /revoke-token.",
        ),
    );
    add(
        "Revoked",
        object(
            &["revoked"],
            json!({ "revoked": { "type": "integer", "minimum": 0, "description": "how many tokens this request revoked" } }),
            false,
            "Tokens revoked; they are refused from the next request on.",
        ),
    );
    add(
        "Message",
        json!({
            "type": "object",
            "description": "A message: direct ones carry receiver_id, group ones group_id.",
            "required": ["message_id", "sender_id", "message", "sent_at"],
            "properties": {
                "message_id": id("the message's id"),
                "sender_id": id("who sent it"),
                "receiver_id": id("the recipient of a direct message"),
                "group_id": id("the group of a group message"),
                "message": { "type": "string" },
                "sent_at": { "type": "string", "format": "date-time", "description": "acceptance time, RFC 3339 UTC" },
            },
            "oneOf": [
                { "required": ["receiver_id"], "not": { "required": ["group_id"] } },
                { "required": ["group_id"], "not": { "required": ["receiver_id"] } },
            ],
        }),
    );
    add(
        "NewMessages",
        object(
            &["messages", "cursor"],
            json!({
                "messages": { "type": "array", "items": schema_ref("Message"), "description": "newly delivered messages, oldest first" },
                "cursor": { "type": "string", "description": "pass as since= to repeat this call, or continue after it" },
            }),
            false,
            "Messages delivered since the read marker (which moves past them).",
        ),
    );
    add(
        "History",
        object(
            &["messages", "next_cursor"],
            json!({
                "messages": { "type": "array", "items": schema_ref("Message"), "description": "a page of the history, oldest first" },
                "next_cursor": { "type": ["string", "null"], "description": "where the next page starts; null on the last page" },
            }),
            false,
            "A page of the caller's whole history, sent and received.",
        ),
    );
    add(
        "Health",
        object(
            &["status"],
            json!({ "status": { "const": "ok" } }),
            false,
            "The server is up.",
        ),
    );
    schemas
}
