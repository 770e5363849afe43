//! Request extractors whose every rejection is a problem response with a useful detail.

use crate::problem::Problem;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use messaging_events::UserId;
use serde::de::DeserializeOwned;

/// The name of the header that makes a POST safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest accepted `Idempotency-Key`: a UUID or a hash fits many times over.
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// A JSON request body that must be present.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// A JSON request body that may be absent (an empty body means `None`).
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

/// A query string deserialised into `T`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

/// The user a valid `Authorization: Bearer <token>` header belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated(pub UserId);

/// The raw bearer token of a well-formed `Authorization` header, not yet checked against the
/// store (for `/revoke-token`, which must recognise its own idempotent retries).
#[derive(Debug, Clone)]
pub struct BearerToken(pub String);

/// The optional `Idempotency-Key` header.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    /// The key as the command handlers take it.
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Problem> {
        let (content_type, body) = read_body(req, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(Problem::invalid(
                "a JSON request body is required (Content-Type: application/json)",
            ));
        }
        check_json_content_type(content_type.as_deref())?;
        parse_json(&body).map(ApiJson)
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Problem> {
        let (content_type, body) = read_body(req, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        check_json_content_type(content_type.as_deref())?;
        parse_json(&body).map(|value| OptionalJson(Some(value)))
    }
}

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                // axum prefixes its own wording; the serde part is what helps the client.
                let reason = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Err(Problem::invalid(format!("invalid query string: {reason}")))
            }
        }
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = bearer_token(&parts.headers)?;
        let user = state.handlers.authenticate(token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(user));
        Ok(Authenticated(user))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        bearer_token(&parts.headers).map(|token| BearerToken(token.to_string()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        idempotency_key(&parts.headers).map(IdempotencyKey)
    }
}

/// Buffers the body within the body limit, keeping the content type for the JSON check.
async fn read_body(req: Request, state: &AppState) -> Result<(Option<String>, Bytes), Problem> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    match Bytes::from_request(req, state).await {
        Ok(body) => Ok((content_type, body)),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(Problem::too_large(format!(
                "the request body exceeds the limit of {} bytes",
                state.limits.max_body_bytes
            )))
        }
        Err(rejection) => Err(Problem::invalid(format!(
            "the request body could not be read: {}",
            rejection.body_text()
        ))),
    }
}

/// Accepts `application/json` and `application/*+json`, with any parameters.
fn check_json_content_type(content_type: Option<&str>) -> Result<(), Problem> {
    let Some(content_type) = content_type else {
        return Err(Problem::invalid(
            "missing Content-Type; send the body as application/json",
        ));
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(Problem::invalid(format!(
            "unsupported Content-Type {content_type:?}; send the body as application/json"
        )))
    }
}

/// Parses a request body, which must be a JSON object: serde would also read a struct from an
/// array of its fields in order (`["a", "b", "hi"]`), which no client means and the contract
/// does not allow.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Err(Problem::invalid(
            "invalid request body: expected a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Data => Problem::invalid(format!("invalid request body: {error}")),
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::invalid(format!("malformed JSON: {error}"))
            }
        }
    })
}

/// The token of exactly one well-formed `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, Problem> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Problem::unauthenticated(
            "send exactly one Authorization: Bearer <token> header",
        ));
    };
    bearer_token_of(value)
}

/// The token of one `Authorization` header value, which must be `Bearer <token>` (also read
/// by the WebSocket upgrade, which takes the header or a subprotocol).
pub fn bearer_token_of(value: &HeaderValue) -> Result<&str, Problem> {
    let malformed = || Problem::unauthenticated("the Authorization header must be Bearer <token>");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    // The scheme is case-insensitive (RFC 9110); the token is one word.
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(malformed());
    }
    Ok(token)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Problem::invalid("send at most one Idempotency-Key header"));
    }
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Problem::invalid("Idempotency-Key must be non-empty printable ASCII without spaces")
        })?;
    if key.len() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(Problem::invalid(format!(
            "Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY_CHARS} characters"
        )));
    }
    Ok(Some(key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn bearer_tokens_are_taken_from_one_well_formed_header() {
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer abc")])).unwrap(),
            "abc"
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "bearer  abc ")])).unwrap(),
            "abc"
        );
        for bad in [
            vec![],
            vec![("authorization", "Basic abc")],
            vec![("authorization", "Bearer")],
            vec![("authorization", "Bearer ")],
            vec![("authorization", "Bearer a b")],
            vec![("authorization", "abc")],
            vec![("authorization", "Bearer a"), ("authorization", "Bearer b")],
        ] {
            let problem = bearer_token(&headers(&bad)).unwrap_err();
            assert_eq!(problem.status, 401, "{bad:?}");
            assert_eq!(problem.code, "unauthenticated");
        }
    }

    #[test]
    fn idempotency_keys_are_optional_but_must_be_sane() {
        assert_eq!(idempotency_key(&headers(&[])).unwrap(), None);
        assert_eq!(
            idempotency_key(&headers(&[("idempotency-key", "k-1")])).unwrap(),
            Some("k-1".into())
        );
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_CHARS + 1);
        for bad in [
            vec![("idempotency-key", "")],
            vec![("idempotency-key", "a b")],
            vec![("idempotency-key", long.as_str())],
            vec![("idempotency-key", "a"), ("idempotency-key", "b")],
        ] {
            let problem = idempotency_key(&headers(&bad)).unwrap_err();
            assert_eq!(problem.status, 400);
            assert_eq!(problem.code, "invalid_request");
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(check_json_content_type(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let problem = check_json_content_type(bad).unwrap_err();
            assert_eq!(problem.status, 400);
            assert!(problem.detail.contains("application/json"));
        }
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    #[test]
    fn a_struct_is_read_from_an_object_only() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Flag {
            #[serde(default)]
            all: bool,
        }
        assert!(parse_json::<Flag>(br#" {"all": true}"#).is_ok());
        let problem = parse_json::<Flag>(b"[true]").unwrap_err();
        assert_eq!(problem.status, 400);
        assert!(problem.detail.contains("JSON object"), "{}", problem.detail);
    }

    #[test]
    fn json_failures_say_what_is_wrong() {
        let cases = [
            (r#"{"name": "a", "count": 1"#, "malformed JSON"),
            (r#"{"name": "a" "count": 1}"#, "malformed JSON"),
            (r#"{"name": "a"}"#, "missing field `count`"),
            (r#"{"name": 5, "count": 1}"#, "invalid type"),
            (r#"[1, 2]"#, "invalid"),
            (r#"["a", 1]"#, "expected a JSON object"),
            (r#""a""#, "expected a JSON object"),
        ];
        for (body, expected) in cases {
            let problem = parse_json::<Body>(body.as_bytes()).unwrap_err();
            assert_eq!(problem.status, 400);
            assert_eq!(problem.code, "invalid_request");
            assert!(
                problem.detail.contains(expected),
                "{body}: {}",
                problem.detail
            );
        }
    }
}
