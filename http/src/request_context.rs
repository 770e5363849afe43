//! Per-request context: the request id every response carries, and the tracing span that ties
//! a request's log lines together.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::field::{display, Empty};
use tracing::Instrument;
use uuid::Uuid;

/// The header carrying the request id, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-chosen request id that is echoed; anything longer is replaced.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// Middleware: adopts a sane client `x-request-id` or makes one, runs the request inside a
/// span that carries it, logs the outcome and echoes the id on the response.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|value| is_sane_request_id(value.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id);
    req.headers_mut().insert(X_REQUEST_ID, request_id.clone());

    let span = tracing::info_span!(
        "request",
        request_id = %String::from_utf8_lossy(request_id.as_bytes()),
        method = %req.method(),
        path = %req.uri().path(),
        status = Empty,
        user_id = Empty,
    );
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("status", display(status.as_u16()));
    let latency_us = started.elapsed().as_micros() as u64;
    span.in_scope(|| {
        // Successes stay at debug so that the default `info` costs nothing per request under
        // load; client errors are worth seeing, server errors always are.
        if status.is_server_error() {
            tracing::error!(latency_us, "request failed");
        } else if status.is_client_error() {
            tracing::info!(latency_us, "request refused");
        } else {
            tracing::debug!(latency_us, "request handled");
        }
    });
    response.headers_mut().insert(X_REQUEST_ID, request_id);
    response
}

fn is_sane_request_id(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_CHARS
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let id = Uuid::new_v4().hyphenated().to_string();
    // A hyphenated UUID is always a valid header value; the fallback only satisfies the types.
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_echoed_only_when_sane() {
        assert!(is_sane_request_id(b"abc-123"));
        assert!(!is_sane_request_id(b""));
        assert!(!is_sane_request_id(b"a b"));
        assert!(!is_sane_request_id("é".as_bytes()));
        assert!(!is_sane_request_id(&[b'a'; MAX_REQUEST_ID_CHARS + 1]));
    }

    #[test]
    fn generated_request_ids_are_uuids() {
        let id = new_request_id();
        assert!(Uuid::parse_str(id.to_str().unwrap()).is_ok());
    }
}
