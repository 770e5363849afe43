//! The OpenAPI 3.1 document of the REST contract, built from the route list in [`paths`] and
//! the schemas in [`schemas`] (limits from [`Limits::default`]). It is served at
//! `GET /openapi.json` and committed as `docs/openapi.json`; tests keep the three in step with
//! the router and with the real request and response types.

pub mod paths;
pub mod schemas;

use messaging_events::Limits;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The document.
pub fn document() -> Value {
    let limits = Limits::default();
    let mut paths = Map::new();
    for op in paths::OPERATIONS {
        let item = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        item[op.method] = paths::operation(op, &limits);
    }
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "messaging",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Event-sourced messaging backend: 1:1 messages, groups and blocking over REST.",
            "description": concat!(
                "Every call but /register, /health and /openapi.json carries `Authorization: Bearer <token>`; ",
                "ids in bodies and queries that name the caller must be the token's user (else 403). ",
                "Every error is an RFC 9457 `application/problem+json` document with a stable `code`. ",
                "POSTs accept an `Idempotency-Key`. Every response carries `x-request-id`. ",
                "Limits shown are the defaults (configurable with MESSAGING_MAX_*); sends are rate-limited ",
                "per user (MESSAGING_RATE_LIMIT_PER_MINUTE, default 600)."
            ),
            "license": { "name": "UNLICENSED", "identifier": "LicenseRef-UNLICENSED" },
        },
        "security": [{ "bearerAuth": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token POST /register returned",
                },
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": false,
                    "description": "makes the POST safe to retry: a retry with the same key returns the same response and writes nothing new",
                    "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" },
                },
            },
            "headers": {
                "RequestId": {
                    "description": "the request's id (the client's x-request-id if sane, else a new UUID); log lines carry it too",
                    "required": true,
                    "schema": { "type": "string", "minLength": 1 },
                },
                "RetryAfter": {
                    "description": "seconds to wait before retrying",
                    "required": true,
                    "schema": { "type": "string", "pattern": "^[0-9]+$" },
                },
                "WwwAuthenticate": {
                    "description": "the Bearer challenge",
                    "required": true,
                    "schema": { "type": "string" },
                },
            },
            "responses": paths::error_responses(),
            "schemas": schemas::components(&limits),
        },
    })
}

/// The document as served and committed: pretty JSON with a final newline.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text = serde_json::to_string_pretty(&document())
            .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
        text.push('\n');
        text
    })
}

/// `(METHOD, path)` of every documented operation.
pub fn routes() -> Vec<(String, String)> {
    paths::OPERATIONS
        .iter()
        .map(|op| (op.method.to_ascii_uppercase(), op.path.to_string()))
        .collect()
}

#[cfg(test)]
mod tests;
