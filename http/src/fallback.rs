//! Responses the router makes by itself (unknown path, wrong method, errors of layers), kept in
//! the problem format like every other error.

use crate::problem::{Problem, PROBLEM_JSON};
use axum::extract::Request;
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The router's fallback: no endpoint has this path.
pub async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(format!("there is no endpoint at {}", uri.path()))
}

/// Middleware: turns any error response that is not a problem yet into one, keeping its
/// status and headers (`Allow` on a 405, for instance).
pub async fn problem_guard(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&response) {
        return response;
    }
    let mut problem = Problem::for_status(status);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = response
            .headers()
            .get(header::ALLOW)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        problem.detail = format!("{method} is not allowed on {path}; allowed: {allowed}");
    }
    let (mut parts, _) = response.into_parts();
    let fresh = problem.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in fresh.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, body)
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == PROBLEM_JSON.as_bytes())
}
