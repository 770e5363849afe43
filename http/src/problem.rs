//! RFC 9457 problem responses: the one shape every error of the API takes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use messaging_commands::CommandError;
use serde::Serialize;

/// The media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response: status, stable machine code and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `about:blank`: the status and `code` say everything a client needs.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase, as RFC 9457 asks for `about:blank`.
    pub title: String,
    /// The HTTP status, repeated in the body for clients that only keep bodies.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Stable machine-readable code (`invalid_request`, `not_found`, ...).
    pub code: &'static str,
    /// Seconds to wait before retrying, sent as the `Retry-After` header (429, 503).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with the given status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            retry_after: None,
        }
    }

    /// 429 `rate_limited`, retryable after `retry_after_secs`.
    pub fn rate_limited(retry_after_secs: u64) -> Problem {
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many messages sent; retry in {retry_after_secs} s"),
        );
        problem.retry_after = Some(retry_after_secs);
        problem
    }

    /// 400 `invalid_request`.
    pub fn invalid(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    /// 413 `payload_too_large`.
    pub fn too_large(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
    }

    /// 404 `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 500 `internal`, with a detail that reveals nothing of the server's insides.
    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle the request",
        )
    }

    /// A problem for a bare error status produced outside the handlers (router, layers).
    pub fn for_status(status: StatusCode) -> Problem {
        let (code, detail) = match status {
            StatusCode::BAD_REQUEST => ("invalid_request", "the request is malformed"),
            StatusCode::UNAUTHORIZED => ("unauthenticated", "a valid bearer token is required"),
            StatusCode::FORBIDDEN => ("forbidden", "not allowed"),
            StatusCode::NOT_FOUND => ("not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "this method is not allowed on this path; see the Allow header",
            ),
            StatusCode::CONFLICT => ("conflict", "the request conflicts with the current state"),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests; retry later"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "invalid_request",
                "unsupported content type; send application/json",
            ),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
                ("unavailable", "temporarily unavailable; retry later")
            }
            s if s.is_client_error() => ("invalid_request", "the request cannot be handled"),
            _ => ("internal", "the server failed to handle the request"),
        };
        Problem::new(status, code, detail)
    }

    /// The status as a [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<CommandError> for Problem {
    fn from(error: CommandError) -> Problem {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match &error {
            // The cause goes to the log, not to the client: it may name tables, files or keys.
            CommandError::Internal(_) => {
                tracing::error!(error = %error, "internal error");
                Problem::internal()
            }
            CommandError::Unavailable(_) => {
                tracing::warn!(error = %error, "unavailable");
                Problem::new(status, error.code(), "temporarily unavailable; retry later")
            }
            _ => Problem::new(status, error.code(), error.to_string()),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = match serde_json::to_vec(&self) {
            Ok(body) => body,
            Err(_) => br#"{"type":"about:blank","title":"Internal Server Error","status":500,"code":"internal"}"#.to_vec(),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        match self.retry_after {
            Some(secs) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            None if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            None => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use serde_json::Value;

    async fn parts(problem: Problem) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = problem.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn every_command_error_maps_to_its_status_and_code() {
        let cases = [
            (CommandError::Invalid("bad".into()), 400, "invalid_request"),
            (
                CommandError::TooLarge("big".into()),
                413,
                "payload_too_large",
            ),
            (CommandError::Unauthenticated, 401, "unauthenticated"),
            (CommandError::Forbidden("no".into()), 403, "forbidden"),
            (CommandError::NotFound("who".into()), 404, "not_found"),
            (CommandError::Conflict("again".into()), 409, "conflict"),
            (CommandError::Unavailable("busy".into()), 503, "unavailable"),
            (CommandError::Internal("oops".into()), 500, "internal"),
        ];
        for (error, status, code) in cases {
            let (got_status, headers, body) = parts(Problem::from(error)).await;
            assert_eq!(got_status.as_u16(), status);
            assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON);
            assert_eq!(body["status"], status);
            assert_eq!(body["code"], code);
            assert_eq!(body["type"], "about:blank");
            assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
            assert!(body["detail"].as_str().is_some());
        }
    }

    #[tokio::test]
    async fn client_errors_keep_their_detail_and_server_errors_hide_it() {
        let (_, _, body) = parts(CommandError::NotFound("unknown receiver_id".into()).into()).await;
        assert_eq!(body["detail"], "unknown receiver_id");
        let (_, _, body) =
            parts(CommandError::Internal("sqlite: disk I/O error at /x".into()).into()).await;
        assert!(!body["detail"].as_str().unwrap().contains("sqlite"));
        let (_, headers, body) =
            parts(CommandError::Unavailable("database is locked".into()).into()).await;
        assert!(!body["detail"].as_str().unwrap().contains("locked"));
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn unauthenticated_problems_challenge_for_a_bearer_token() {
        let (status, headers, _) = parts(CommandError::Unauthenticated.into()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[tokio::test]
    async fn rate_limited_problems_say_when_to_retry() {
        let (status, headers, body) = parts(Problem::rate_limited(7)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "7");
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(body["code"], "rate_limited");
        assert_eq!(body["status"], 429);
        assert!(body.get("retry_after").is_none());
    }

    #[tokio::test]
    async fn bare_statuses_get_stable_codes() {
        for (status, code) in [
            (StatusCode::NOT_FOUND, "not_found"),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request"),
            (StatusCode::IM_A_TEAPOT, "invalid_request"),
            (StatusCode::BAD_GATEWAY, "internal"),
        ] {
            let (got, _, body) = parts(Problem::for_status(status)).await;
            assert_eq!(got, status);
            assert_eq!(body["code"], code);
        }
    }
}
