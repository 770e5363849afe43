//! Failures of the read-model tables and the work queues, and their mapping onto the ports'
//! error types.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use messaging_events::QueueError;
use messaging_projections::ReadStoreError;
use std::error::Error as StdError;

/// A failure of the read tables or the queues.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A DynamoDB or SQS request failed (network, throttling after the SDK's retries, or a
    /// service error).
    #[error("{operation} failed: {detail}")]
    Request {
        /// The operation, e.g. `dynamodb.Query`.
        operation: &'static str,
        /// The SDK's description, with the service's error code when there is one.
        detail: String,
    },
    /// A table or queue did not become usable.
    #[error("{resource} is not usable: {detail}")]
    Resource {
        /// The table or queue name.
        resource: String,
        /// Why.
        detail: String,
    },
    /// Stored data this build cannot read.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it could not be read.
        detail: String,
    },
}

impl ReadError {
    /// A failed SDK call; the message keeps the whole error chain (the bare `Display` of an
    /// `SdkError` is just "service error").
    pub(crate) fn request<E>(operation: &'static str, error: E) -> ReadError
    where
        E: StdError + ProvideErrorMetadata,
    {
        let detail = match error.code() {
            Some(code) => format!("{code}: {}", DisplayErrorContext(&error)),
            None => DisplayErrorContext(&error).to_string(),
        };
        ReadError::Request { operation, detail }
    }

    /// Data that does not decode.
    pub(crate) fn corrupt(what: &'static str, detail: impl ToString) -> ReadError {
        ReadError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}

impl From<ReadError> for ReadStoreError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Corrupt { .. } => ReadStoreError::Corrupt(error.to_string()),
            ReadError::Request { .. } | ReadError::Resource { .. } => {
                ReadStoreError::Unavailable(error.to_string())
            }
        }
    }
}

impl From<ReadError> for QueueError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Corrupt { .. } => QueueError::Malformed(error.to_string()),
            ReadError::Request { .. } | ReadError::Resource { .. } => {
                QueueError::Unavailable(error.to_string())
            }
        }
    }
}
