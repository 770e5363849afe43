//! The event table's item format, shared by the event store, the stream poller and the
//! projector Lambda (which receives the same items as stream `NewImage`s).

use messaging_events::{RecordedEvent, StoredEvent, StreamId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event as a DynamoDB item: key (`stream`, `version`), metadata, and the event's data as
/// JSON text (so the stored form is exactly [`StoredEvent`], whatever the schema version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventItem {
    /// Partition key.
    pub stream: String,
    /// Sort key: the event's version in its stream.
    pub version: u64,
    /// The id given at append.
    pub event_id: String,
    /// When it was appended, microseconds since the epoch.
    pub recorded_at: i64,
    /// The event's variant name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The schema version it was written with.
    pub schema_version: u32,
    /// The variant's fields as JSON text.
    pub data: String,
}

/// An item that is not a readable event.
#[derive(Debug, thiserror::Error)]
#[error("unreadable event item: {0}")]
pub struct ItemError(pub String);

impl EventItem {
    /// The item for a recorded event.
    pub fn from_recorded(event: &RecordedEvent) -> EventItem {
        let stored = StoredEvent::encode(&event.event);
        EventItem {
            stream: event.stream.0.clone(),
            version: event.version,
            event_id: event.event_id.to_string(),
            recorded_at: event.recorded_at.micros(),
            event_type: stored.event_type,
            schema_version: stored.schema_version,
            data: stored.data.to_string(),
        }
    }

    /// The recorded event of an item, upcasting old schema versions.
    pub fn into_recorded(self) -> Result<RecordedEvent, ItemError> {
        let data: Value = serde_json::from_str(&self.data).map_err(|e| ItemError(e.to_string()))?;
        let event = StoredEvent {
            event_type: self.event_type,
            schema_version: self.schema_version,
            data,
        }
        .decode()
        .map_err(|e| ItemError(e.to_string()))?;
        Ok(RecordedEvent {
            stream: StreamId(self.stream),
            version: self.version,
            event_id: self
                .event_id
                .parse()
                .map_err(|e: uuid::Error| ItemError(e.to_string()))?,
            recorded_at: Timestamp(self.recorded_at),
            event,
        })
    }

    /// Decodes any serde_dynamo item (SDK attribute maps, Lambda stream images).
    pub fn from_item(item: serde_dynamo::Item) -> Result<EventItem, ItemError> {
        serde_dynamo::from_item(item).map_err(|e| ItemError(e.to_string()))
    }

    /// Encodes as a serde_dynamo item.
    pub fn to_item(&self) -> Result<serde_dynamo::Item, ItemError> {
        serde_dynamo::to_item(self).map_err(|e| ItemError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_events::{Event, UserId};

    #[test]
    fn an_event_round_trips_through_its_item() {
        let user = UserId::new_random();
        let recorded = RecordedEvent {
            stream: StreamId::user(user),
            version: 1,
            event_id: uuid::Uuid::new_v4(),
            recorded_at: Timestamp(1_700_000_000_000_000),
            event: Event::UserRegistered {
                user_id: user,
                display_name: Some("Ada".into()),
            },
        };
        let item = EventItem::from_recorded(&recorded)
            .to_item()
            .expect("encodes");
        let back = EventItem::from_item(item)
            .expect("decodes")
            .into_recorded()
            .expect("readable");
        assert_eq!(back, recorded);
    }
}
