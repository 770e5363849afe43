//! Conversions between the domain's unsigned numbers and SQLite's signed 64-bit integers.

use crate::EmbeddedError;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// A count or version as an SQLite integer; nothing real comes near `i64::MAX`, so saturating
/// only guards against a nonsensical input turning negative.
pub(crate) fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `limit` as an SQLite integer.
pub(crate) fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// An SQLite integer that the adapter only ever writes non-negative.
pub(crate) fn from_sql(value: i64) -> Result<u64, EmbeddedError> {
    u64::try_from(value).map_err(|_| EmbeddedError::corrupt("negative counter", value))
}

/// A duration in microseconds, the unit of [`messaging_events::Timestamp`].
pub(crate) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Parses a stored UUID-based id.
pub(crate) fn parse_uuid(what: &str, text: &str) -> Result<Uuid, EmbeddedError> {
    Uuid::from_str(text).map_err(|e| EmbeddedError::corrupt(what, e))
}

/// Parses stored JSON.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    text: &str,
) -> Result<T, EmbeddedError> {
    serde_json::from_str(text).map_err(|e| EmbeddedError::corrupt(what, e))
}

/// Serialises a value for storage; the domain types always serialise, so a failure is a bug
/// reported as corrupt data rather than a panic.
pub(crate) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String, EmbeddedError> {
    serde_json::to_string(value).map_err(|e| EmbeddedError::corrupt(what, e))
}
