//! A lean HTTP/1.1 client: one kept-alive connection per worker, reconnected after an error.
//! One connection per task (no shared pool) keeps the client's cost per request close to
//! `wrk`'s, so that the server, not the client, is what gets measured.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, writing or reading failed.
    #[error("i/o: {0}")]
    Io(String),
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
}

impl HttpError {
    /// A short label for the error table.
    pub fn label(&self) -> &'static str {
        match self {
            HttpError::Io(_) => "io",
            HttpError::Timeout => "timeout",
        }
    }
}

/// Where the server is: `http://host:port` (TLS is out of scope for a local benchmark).
#[derive(Debug, Clone)]
pub struct Target {
    /// The resolved socket address.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
}

impl Target {
    /// Parses and resolves a base URL such as `http://127.0.0.1:8080`.
    pub async fn resolve(base_url: &str) -> anyhow::Result<Target> {
        let rest = base_url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("only http:// base URLs are supported: {base_url}"))?;
        let host = rest.trim_end_matches('/').to_string();
        if host.contains('/') {
            anyhow::bail!("the base URL must not have a path: {base_url}");
        }
        let with_port = if host.contains(':') {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{host} does not resolve"))?;
        Ok(Target { addr, host })
    }
}

/// An HTTP answer: status and whole body.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// One kept-alive connection to the target.
pub struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
}

impl Conn {
    /// A connection that connects on first use; requests time out after `timeout`.
    pub fn new(target: Target, timeout: Duration) -> Conn {
        Conn {
            target,
            sender: None,
            timeout,
        }
    }

    /// `GET path` with an optional `Authorization` header value.
    pub async fn get(&mut self, path: &str, auth: Option<&str>) -> Result<Reply, HttpError> {
        self.send(Method::GET, path, auth, None, self.timeout).await
    }

    /// `GET path` that may legitimately take up to `extra` longer (a long poll).
    pub async fn get_waiting(
        &mut self,
        path: &str,
        auth: Option<&str>,
        extra: Duration,
    ) -> Result<Reply, HttpError> {
        self.send(Method::GET, path, auth, None, self.timeout + extra)
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post(
        &mut self,
        path: &str,
        auth: Option<&str>,
        json: Bytes,
    ) -> Result<Reply, HttpError> {
        self.send(Method::POST, path, auth, Some(json), self.timeout)
            .await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        json: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Reply, HttpError> {
        let answer = tokio::time::timeout(timeout, self.exchange(method, path, auth, json)).await;
        let result = match answer {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout),
        };
        if result.is_err() {
            // The connection's state is unknown (maybe a half-read response): start afresh.
            self.sender = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        json: Option<Bytes>,
    ) -> Result<Reply, HttpError> {
        let io = |e: &dyn std::fmt::Display| HttpError::Io(e.to_string());
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.target.host);
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth);
        }
        if json.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(json.unwrap_or_default()))
            .map_err(|e| io(&e))?;
        let sender = self.ready_sender().await?;
        let response = sender.send_request(request).await.map_err(|e| io(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| io(&e))?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// The open connection, connecting (again) if there is none or it closed.
    async fn ready_sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, HttpError> {
        if let Some(sender) = &mut self.sender {
            if sender.ready().await.is_err() {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(self.target.addr)
                .await
                .map_err(|e| HttpError::Io(e.to_string()))?;
            // Small requests and replies: Nagle's algorithm would only add latency.
            stream
                .set_nodelay(true)
                .map_err(|e| HttpError::Io(e.to_string()))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| HttpError::Io(e.to_string()))?;
            tokio::spawn(async move {
                // Ends when the server closes or the sender is dropped; errors surface on
                // the next request.
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| HttpError::Io("no connection".into()))
    }
}
