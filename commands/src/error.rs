use messaging_events::{AppendError, QueueError, StoreError, ValueError};
use messaging_projections::{QueryError, ReadStoreError};

/// Why a command or query was refused. Each variant maps to one HTTP status and problem code;
/// only `Unavailable` and `Internal` are the server's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Malformed or out-of-range input (400 `invalid_request`).
    #[error("{0}")]
    Invalid(String),
    /// A value over its size limit (413 `payload_too_large`).
    #[error("{0}")]
    TooLarge(String),
    /// Missing, unknown or revoked token (401 `unauthenticated`).
    #[error("a valid bearer token is required")]
    Unauthenticated,
    /// Acting as somebody else or without the right role (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// An id that names nothing (404 `not_found`).
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the current state or a reused idempotency key (409 `conflict`).
    #[error("{0}")]
    Conflict(String),
    /// Storage or queue temporarily failing (503 `unavailable`); safe to retry.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data (500 `internal`).
    #[error("internal error: {0}")]
    Internal(String),
}

impl CommandError {
    /// The stable machine-readable problem code.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Invalid(_) => "invalid_request",
            CommandError::TooLarge(_) => "payload_too_large",
            CommandError::Unauthenticated => "unauthenticated",
            CommandError::Forbidden(_) => "forbidden",
            CommandError::NotFound(_) => "not_found",
            CommandError::Conflict(_) => "conflict",
            CommandError::Unavailable(_) => "unavailable",
            CommandError::Internal(_) => "internal",
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            CommandError::Invalid(_) => 400,
            CommandError::TooLarge(_) => 413,
            CommandError::Unauthenticated => 401,
            CommandError::Forbidden(_) => 403,
            CommandError::NotFound(_) => 404,
            CommandError::Conflict(_) => 409,
            CommandError::Unavailable(_) => 503,
            CommandError::Internal(_) => 500,
        }
    }
}

impl From<ValueError> for CommandError {
    fn from(error: ValueError) -> Self {
        match error {
            ValueError::Invalid(text) => CommandError::Invalid(text),
            ValueError::TooLarge(text) => CommandError::TooLarge(text),
        }
    }
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(text) => CommandError::Unavailable(text),
            StoreError::Corrupt(text) => CommandError::Internal(text),
        }
    }
}

impl From<QueueError> for CommandError {
    fn from(error: QueueError) -> Self {
        CommandError::Unavailable(error.to_string())
    }
}

impl From<ReadStoreError> for CommandError {
    fn from(error: ReadStoreError) -> Self {
        match error {
            ReadStoreError::Unavailable(text) => CommandError::Unavailable(text),
            ReadStoreError::Corrupt(text) => CommandError::Internal(text),
        }
    }
}

impl From<QueryError> for CommandError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::BadCursor => CommandError::Invalid("malformed cursor".into()),
            QueryError::Store(e) => e.into(),
        }
    }
}

impl From<AppendError> for CommandError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Conflict { stream } => {
                CommandError::Conflict(format!("concurrent update of {stream}; retry"))
            }
            AppendError::ClaimTaken { key, .. } => {
                CommandError::Conflict(format!("{key} exists already"))
            }
            AppendError::Invalid(text) => CommandError::Invalid(text),
            AppendError::Store(e) => e.into(),
        }
    }
}
