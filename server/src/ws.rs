//! `GET /ws`: WebSocket push of the local server.
//!
//! The bearer token is checked at the upgrade, before anything is switched: from the
//! `Authorization: Bearer <token>` header, or, for browsers (which cannot set headers on a
//! WebSocket), from the subprotocol list: `new WebSocket(url, ["messaging.v1", "bearer." + token])`.
//! The server then selects `messaging.v1` (never echoing the token). A missing or wrong token
//! is refused with the usual 401 problem and no upgrade.
//!
//! Each message delivered to the user is pushed as one text frame holding the very JSON object
//! the GET endpoints return, as soon as the projector applied it. Pushing is a notification
//! only: it does not move the read marker, `get-new-messages` still returns the message, and a
//! message may be pushed twice (the projector is at-least-once): deduplicate by `message_id`.
//! A connection that falls [`CHANNEL_CAPACITY`](crate::hub::CHANNEL_CAPACITY) messages behind
//! is closed with code 1013 ("try again later"): reconnect and re-sync with `get-new-messages`.
//! When the server stops, every connection gets a close frame with code 1001 ("going away").
//!
//! The token is checked again before every push and, while idle, every
//! `MESSAGING_WS_RECHECK_SECS` ([`crate::Config::ws_recheck`]): once it is revoked the
//! connection is closed with code 1008 ("policy violation") and pushes nothing more, as a
//! revoked token's next request gets 401.

use crate::hub::{Hub, Subscription};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use messaging_commands::{CommandError, CommandHandlers};
use messaging_http::{AppState, Problem};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The subprotocol the server selects.
pub const SUBPROTOCOL: &str = "messaging.v1";
/// The prefix of the subprotocol entry that carries a browser's token.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "bearer.";
/// Longest a push may take before the connection is deemed dead and dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping the server waits for its WebSocket connections to close.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// How long a closing connection waits for the client's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Read buffer of a connection: clients send nothing but control frames.
const READ_BUFFER: usize = 4 * 1024;
/// Largest frame a client may send.
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
/// Bytes a connection may hold unsent before pushes fail (a stuck client).
const MAX_WRITE_BUFFER: usize = 256 * 1024;

/// Close code: the server goes away.
const GOING_AWAY: u16 = 1001;
/// Close code: try again later (the connection lagged; re-sync).
const TRY_AGAIN_LATER: u16 = 1013;
/// Close code: policy violation (the token was revoked).
const POLICY_VIOLATION: u16 = 1008;

#[derive(Clone)]
struct WsState {
    app: AppState,
    hub: Hub,
    recheck: Duration,
}

/// The `/ws` route over the API's handlers (for authentication) and the hub; an idle
/// connection's token is checked again every `recheck` (a push checks it first anyway).
pub fn ws_router(app: AppState, hub: Hub, recheck: Duration) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .with_state(WsState { app, hub, recheck })
}

async fn upgrade(
    State(state): State<WsState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = match token(&headers) {
        Ok(token) => token,
        Err(problem) => return problem.into_response(),
    };
    let user = match state.app.handlers.authenticate(&token).await {
        Ok(user) => user,
        Err(error) => return Problem::from(error).into_response(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return Problem::invalid(format!(
                "not a WebSocket upgrade: {}",
                rejection.body_text()
            ))
            .into_response()
        }
    };
    if state.hub.is_stopping() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is stopping",
        )
        .into_response();
    }
    // Subscribed before the switch, so that nothing projected meanwhile is missed.
    let subscription = state.hub.subscribe(user);
    let hub = state.hub.clone();
    let credentials = Credentials {
        handlers: state.app.handlers.clone(),
        token,
        recheck: state.recheck,
    };
    tracing::debug!(user_id = %user, "WebSocket connection opened");
    upgrade
        .protocols([SUBPROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| connection(socket, subscription, hub, credentials))
}

/// The bearer token of the upgrade request: the `Authorization` header, else a
/// `bearer.<token>` subprotocol.
fn token(headers: &HeaderMap) -> Result<String, Problem> {
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    match (authorization.next(), authorization.next()) {
        (Some(value), None) => messaging_http::bearer_token_of(value).map(str::to_string),
        (Some(_), Some(_)) => Err(Problem::unauthenticated(
            "send at most one Authorization header",
        )),
        (None, _) => headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .find_map(|protocol| protocol.trim().strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
            .filter(|token| !token.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                Problem::unauthenticated(
                    "send Authorization: Bearer <token>, or (browsers) the subprotocols \
                     messaging.v1 and bearer.<token>",
                )
            }),
    }
}

/// What a connection needs to check its token again.
struct Credentials {
    handlers: CommandHandlers,
    token: String,
    /// How often to check while idle.
    recheck: Duration,
}

impl Credentials {
    /// `None` while the token is valid, else the close frame to send.
    async fn refusal(&self) -> Option<(u16, &'static str)> {
        match self.handlers.authenticate(&self.token).await {
            Ok(_) => None,
            Err(CommandError::Unauthenticated) => Some((POLICY_VIOLATION, "token revoked")),
            Err(error) => {
                tracing::warn!(%error, "could not check a WebSocket connection's token");
                Some((TRY_AGAIN_LATER, "could not check the token: reconnect"))
            }
        }
    }
}

/// Pushes the user's deliveries until the client leaves, the connection breaks or lags, the
/// token is revoked, or the server stops.
async fn connection(
    mut socket: WebSocket,
    mut subscription: Subscription,
    hub: Hub,
    credentials: Credentials,
) {
    let _guard = hub.connection_guard();
    let mut stop = hub.stopping();
    let every = credentials.recheck;
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            pushed = subscription.recv() => match pushed {
                Ok(json) => {
                    if let Some((code, reason)) = credentials.refusal().await {
                        tracing::info!(code, reason, "closing a WebSocket connection");
                        close(socket, code, reason).await;
                        return;
                    }
                    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(json))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "WebSocket push failed; dropping the connection");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("WebSocket push timed out; dropping the connection");
                            return;
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "WebSocket client lagged; closing it so that it re-syncs");
                    close(socket, TRY_AGAIN_LATER, "lagged: re-sync with GET /get-new-messages").await;
                    return;
                }
                Err(RecvError::Closed) => {
                    close(socket, GOING_AWAY, "server shutting down").await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                // Pings are answered by the protocol layer; a close is answered on the next
                // read, which then ends the stream.
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::debug!(%error, "WebSocket connection broke");
                    return;
                }
                None => return,
            },
            _ = recheck.tick() => {
                if let Some((code, reason)) = credentials.refusal().await {
                    tracing::info!(code, reason, "closing an idle WebSocket connection");
                    close(socket, code, reason).await;
                    return;
                }
            }
            () = stopped(&mut stop) => {
                close(socket, GOING_AWAY, "server shutting down").await;
                return;
            }
        }
    }
}

/// Resolves once the server is stopping (holding no borrow of the flag).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Sends a close frame and waits briefly for the client's.
async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let closing = async {
        if socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = socket.recv().await {}
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_token_comes_from_the_header_or_a_bearer_subprotocol() {
        assert_eq!(
            token(&headers(&[("authorization", "Bearer abc")])).unwrap(),
            "abc"
        );
        assert_eq!(
            token(&headers(&[(
                "sec-websocket-protocol",
                "messaging.v1, bearer.abc-_1"
            )]))
            .unwrap(),
            "abc-_1"
        );
        for bad in [
            vec![],
            vec![("authorization", "Basic abc")],
            vec![("authorization", "Bearer a"), ("authorization", "Bearer b")],
            vec![("sec-websocket-protocol", "messaging.v1")],
            vec![("sec-websocket-protocol", "messaging.v1, bearer.")],
        ] {
            let problem = token(&headers(&bad)).unwrap_err();
            assert_eq!(problem.status, 401, "{bad:?}");
        }
    }
}
