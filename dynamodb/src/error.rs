//! Errors of the DynamoDB adapter, and how SDK failures map onto the ports' errors.

use crate::ItemError;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use messaging_events::{AppendError, StoreError};

/// Error codes that mean "try again later": throttling, capacity, service-side trouble, and
/// transactions that collided with another one on the same items.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottlingError",
    "ProvisionedThroughputExceededException",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflict",
    "TransactionConflictException",
    "TransactionInProgressException",
    "ReplicatedWriteConflictException",
];

/// A failure of a DynamoDB or DynamoDB Streams call, or of the data it returned.
#[derive(Debug, thiserror::Error)]
pub enum DynamoError {
    /// Temporary: throttling, 5xx, timeouts, connection failures. Retrying may succeed.
    #[error("{operation}: DynamoDB unavailable: {message}")]
    Unavailable {
        /// The API call that failed.
        operation: &'static str,
        /// What the SDK reported.
        message: String,
    },
    /// DynamoDB refused the request (validation, missing table, access denied): retrying the
    /// same request will not help.
    #[error("{operation} refused ({code}): {message}")]
    Refused {
        /// The API call that failed.
        operation: &'static str,
        /// The service's error code, or the kind of client-side failure.
        code: String,
        /// What the SDK reported.
        message: String,
    },
    /// An item this build cannot read.
    #[error("unreadable item: {0}")]
    Corrupt(String),
    /// A table or stream is not in the state this adapter needs.
    #[error("DynamoDB resources not ready: {0}")]
    Setup(String),
}

impl DynamoError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, DynamoError::Unavailable { .. })
    }

    /// The service's error code, when DynamoDB answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            DynamoError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Classifies any SDK failure: transient ones (throttling, 5xx, timeouts, dispatch and response
/// failures) become [`DynamoError::Unavailable`], the rest [`DynamoError::Refused`].
pub(crate) fn classify<E>(operation: &'static str, error: &SdkError<E>) -> DynamoError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = DisplayErrorContext(error).to_string();
    match error {
        SdkError::ServiceError(context) => {
            let code = context.err().code().unwrap_or("Unknown").to_string();
            let status = context.raw().status();
            if status.is_server_error()
                || status.as_u16() == 429
                || TRANSIENT_CODES.contains(&code.as_str())
            {
                DynamoError::Unavailable { operation, message }
            } else {
                DynamoError::Refused {
                    operation,
                    code,
                    message,
                }
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            DynamoError::Unavailable { operation, message }
        }
        // A request the SDK could not even build is a bug here, not a passing condition.
        SdkError::ConstructionFailure(_) => DynamoError::Refused {
            operation,
            code: "ConstructionFailure".into(),
            message,
        },
        _ => DynamoError::Unavailable { operation, message },
    }
}

impl From<ItemError> for DynamoError {
    fn from(error: ItemError) -> Self {
        DynamoError::Corrupt(error.0)
    }
}

impl From<DynamoError> for StoreError {
    fn from(error: DynamoError) -> Self {
        match error {
            DynamoError::Corrupt(message) => StoreError::Corrupt(message),
            // The port only knows "unavailable" and "corrupt": a refused request or a missing
            // table is an outage of the store as far as the caller can tell.
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<DynamoError> for AppendError {
    fn from(error: DynamoError) -> Self {
        AppendError::Store(error.into())
    }
}
