//! The whole event table as an [`EventLog`] for replay: a parallel `Scan`, one segment per
//! `Segment` of `TotalSegments`, resumable from the last key DynamoDB evaluated.
//!
//! The request path never scans; only replay (an admin operation) reads the table this way.

use crate::error::classify;
use crate::{AwsClients, DynamoError, EventItem, ResourceNames};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use messaging_events::{EventLog, LogPage, RecordedEvent, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A DynamoDB item or key as the SDK holds it.
type Item = HashMap<String, AttributeValue>;

/// How many segments a replay reads in parallel unless told otherwise: enough to keep a few
/// requests in flight, few enough not to eat an on-demand table's burst capacity.
pub const DEFAULT_SEGMENTS: u32 = 4;

/// DynamoDB's bound on `TotalSegments`.
const MAX_SEGMENTS: u32 = 1_000_000;

/// The event table read as a log, in `segments` parallel parts.
#[derive(Debug, Clone)]
pub struct DynamoEventLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
    segments: u32,
}

/// A position in a segment: the `LastEvaluatedKey` of the previous page. The event table's key
/// is (`stream`, `version`), so that is all a position holds; it is JSON so that it can be
/// checkpointed in the generation pointer as an opaque string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    stream: String,
    version: u64,
}

impl Position {
    fn encode(key: &Item) -> Result<String, DynamoError> {
        let stream = key.get("stream").and_then(|value| value.as_s().ok());
        let version = key
            .get("version")
            .and_then(|value| value.as_n().ok())
            .and_then(|text| text.parse::<u64>().ok());
        let (Some(stream), Some(version)) = (stream, version) else {
            return Err(DynamoError::Corrupt(format!(
                "the scan's last evaluated key is not an event key: {key:?}"
            )));
        };
        let position = Position {
            stream: stream.clone(),
            version,
        };
        serde_json::to_string(&position)
            .map_err(|e| DynamoError::Corrupt(format!("encoding a log position: {e}")))
    }

    fn decode(text: &str) -> Result<Item, StoreError> {
        let position: Position = serde_json::from_str(text)
            .map_err(|_| StoreError::Corrupt(format!("not an event log position: {text:?}")))?;
        Ok(HashMap::from([
            ("stream".to_string(), AttributeValue::S(position.stream)),
            (
                "version".to_string(),
                AttributeValue::N(position.version.to_string()),
            ),
        ]))
    }
}

impl DynamoEventLog {
    /// The log of the event table named by `names`, read in `segments` parallel segments
    /// (clamped to DynamoDB's 1..=1,000,000; see [`DEFAULT_SEGMENTS`]).
    pub fn new(clients: &AwsClients, names: &ResourceNames, segments: u32) -> Self {
        Self {
            client: clients.dynamodb.clone(),
            table: names.events_table(),
            segments: segments.clamp(1, MAX_SEGMENTS),
        }
    }
}

/// The recorded event of a scanned item; an item that does not decode is reported with its key,
/// so that an operator can find it.
fn decode(item: Item) -> Result<RecordedEvent, DynamoError> {
    let key = item_key(&item);
    serde_dynamo::from_item::<_, EventItem>(item)
        .map_err(|e| e.to_string())
        .and_then(|item| item.into_recorded().map_err(|e| e.to_string()))
        .map_err(|detail| DynamoError::Corrupt(format!("event {key}: {detail}")))
}

/// `stream/version` of an item, as far as it has them.
fn item_key(item: &Item) -> String {
    let part = |name: &str| match item.get(name) {
        Some(AttributeValue::S(text)) | Some(AttributeValue::N(text)) => text.clone(),
        Some(other) => format!("{other:?}"),
        None => "?".to_string(),
    };
    format!("{}/{}", part("stream"), part("version"))
}

#[async_trait]
impl EventLog for DynamoEventLog {
    fn segments(&self) -> u32 {
        self.segments
    }

    /// DynamoDB's `ItemCount`, which AWS refreshes only about every six hours: good for a
    /// progress estimate, not for checking completeness.
    async fn estimated_count(&self) -> Result<Option<u64>, StoreError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| classify("DescribeTable", &e))?;
        Ok(described
            .table()
            .and_then(|table| table.item_count())
            .and_then(|count| u64::try_from(count).ok()))
    }

    async fn read_page(
        &self,
        segment: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, StoreError> {
        if segment >= self.segments {
            return Err(StoreError::Unavailable(format!(
                "segment {segment} of a log read in {} segments",
                self.segments
            )));
        }
        let start = after.map(Position::decode).transpose()?;
        // DynamoDB refuses a Limit of 0 and caps a page at 1 MB whatever the limit.
        let limit = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        let page = self
            .client
            .scan()
            .table_name(&self.table)
            // A consistent read so that every event acknowledged before the scan reached its
            // part of the table is in the page (replay relies on that, see projections::replay).
            .consistent_read(true)
            .segment(i32::try_from(segment).unwrap_or(i32::MAX))
            .total_segments(i32::try_from(self.segments).unwrap_or(i32::MAX))
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify("Scan", &e))?;
        let next = match page.last_evaluated_key {
            Some(key) if !key.is_empty() => Some(Position::encode(&key)?),
            _ => None,
        };
        let events = page
            .items
            .unwrap_or_default()
            .into_iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LogPage { events, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_round_trips_through_its_text() {
        let key = HashMap::from([
            ("stream".to_string(), AttributeValue::S("user-1".into())),
            ("version".to_string(), AttributeValue::N("42".into())),
        ]);
        let text = Position::encode(&key).expect("encodes");
        assert_eq!(Position::decode(&text).expect("decodes"), key);
    }

    #[test]
    fn a_foreign_position_is_refused() {
        assert!(matches!(
            Position::decode("12"),
            Err(StoreError::Corrupt(_))
        ));
        let key = HashMap::from([("id".to_string(), AttributeValue::S("x".into()))]);
        assert!(Position::encode(&key).is_err());
    }

    #[test]
    fn an_undecodable_item_names_its_key() {
        let item = HashMap::from([
            ("stream".to_string(), AttributeValue::S("reads-7".into())),
            ("version".to_string(), AttributeValue::N("3".into())),
        ]);
        let error = decode(item).expect_err("refused");
        assert!(error.to_string().contains("reads-7/3"), "{error}");
    }
}
