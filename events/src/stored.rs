use crate::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema version every event is written with today.
///
/// History: version 1 stored `UserRegistered` with a `name` field; version 2 renamed it to
/// `display_name`. Old items stay as they were written and are upcast when read.
pub const CURRENT_SCHEMA_VERSION: u32 = 2;

/// An event as it sits in storage: its type, the schema version it was written with, and its
/// data. Adapters persist these three fields; [`StoredEvent::decode`] upcasts old versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event's variant name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The schema version the data was written with.
    pub schema_version: u32,
    /// The variant's fields.
    pub data: Value,
}

/// An event in storage that cannot be read by this build.
#[derive(Debug, thiserror::Error)]
pub enum UpcastError {
    /// Written by a newer build than this one.
    #[error(
        "event {event_type} has schema version {version}, newer than {CURRENT_SCHEMA_VERSION}"
    )]
    FromTheFuture { event_type: String, version: u32 },
    /// The data does not match the event type.
    #[error("event {event_type} cannot be decoded: {source}")]
    Malformed {
        event_type: String,
        source: serde_json::Error,
    },
}

impl StoredEvent {
    /// Encodes an event at the current schema version.
    pub fn encode(event: &Event) -> StoredEvent {
        let tagged = serde_json::to_value(event).unwrap_or(Value::Null);
        let data = match tagged {
            Value::Object(mut map) => map.remove("data").unwrap_or(Value::Null),
            _ => Value::Null,
        };
        StoredEvent {
            event_type: event.type_name().to_string(),
            schema_version: CURRENT_SCHEMA_VERSION,
            data,
        }
    }

    /// Decodes the event, upcasting older schema versions first.
    pub fn decode(&self) -> Result<Event, UpcastError> {
        if self.schema_version > CURRENT_SCHEMA_VERSION {
            return Err(UpcastError::FromTheFuture {
                event_type: self.event_type.clone(),
                version: self.schema_version,
            });
        }
        let data = upcast(&self.event_type, self.schema_version, self.data.clone());
        let tagged = serde_json::json!({ "type": self.event_type, "data": data });
        serde_json::from_value(tagged).map_err(|source| UpcastError::Malformed {
            event_type: self.event_type.clone(),
            source,
        })
    }
}

/// Decodes an event whose data is kept as JSON text (the embedded store's rows). Data at the
/// current schema version is parsed once, straight into the event, rather than into a
/// [`Value`] that is then copied, re-wrapped and deserialized again (a read's largest cost
/// after the database itself); older data goes through [`StoredEvent::decode`]'s upcasts.
pub fn decode_json(
    event_type: &str,
    schema_version: u32,
    data: &str,
) -> Result<Event, UpcastError> {
    let malformed = |source| UpcastError::Malformed {
        event_type: event_type.to_string(),
        source,
    };
    if schema_version != CURRENT_SCHEMA_VERSION {
        let data = serde_json::from_str(data).map_err(malformed)?;
        return StoredEvent {
            event_type: event_type.to_string(),
            schema_version,
            data,
        }
        .decode();
    }
    let tag = serde_json::to_string(event_type).map_err(malformed)?;
    serde_json::from_str(&format!("{{\"type\":{tag},\"data\":{data}}}")).map_err(malformed)
}

/// Brings data written with `version` up to [`CURRENT_SCHEMA_VERSION`], one step at a time.
fn upcast(event_type: &str, mut version: u32, mut data: Value) -> Value {
    while version < CURRENT_SCHEMA_VERSION {
        data = match (version, event_type) {
            (1, "UserRegistered") => rename_field(data, "name", "display_name"),
            _ => data,
        };
        version += 1;
    }
    data
}

fn rename_field(mut data: Value, from: &str, to: &str) -> Value {
    if let Value::Object(map) = &mut data {
        if let Some(value) = map.remove(from) {
            map.insert(to.to_string(), value);
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MessageId, Timestamp, UserId};
    use serde_json::json;

    #[test]
    fn every_event_round_trips_through_storage() {
        let user = UserId::new_random();
        let events = vec![
            Event::UserRegistered {
                user_id: user,
                display_name: Some("Ada".into()),
            },
            Event::DirectMessageSent {
                message_id: MessageId::new_random(),
                sender: user,
                receiver: UserId::new_random(),
                text: "hi".into(),
                sent_at: Timestamp(42),
                blocks_version: 3,
            },
            Event::MessagesRead {
                user_id: user,
                up_to: 7,
            },
        ];
        for event in events {
            let stored = StoredEvent::encode(&event);
            assert_eq!(stored.event_type, event.type_name());
            assert_eq!(stored.decode().expect("decodes"), event);
        }
    }

    #[test]
    fn events_kept_as_json_text_decode_as_the_stored_form_does() {
        let event = Event::DirectMessageSent {
            message_id: MessageId::new_random(),
            sender: UserId::new_random(),
            receiver: UserId::new_random(),
            text: "quotes \" and \\ stay".into(),
            sent_at: Timestamp(42),
            blocks_version: 3,
        };
        let stored = StoredEvent::encode(&event);
        let text = serde_json::to_string(&stored.data).expect("json");
        let decoded = decode_json(&stored.event_type, stored.schema_version, &text);
        assert_eq!(decoded.expect("decodes"), event);
    }

    #[test]
    fn json_text_of_an_old_version_is_upcast_and_bad_text_is_malformed() {
        let user = UserId::new_random();
        let old = json!({ "user_id": user, "name": "Grace" }).to_string();
        assert_eq!(
            decode_json("UserRegistered", 1, &old).expect("upcasts"),
            Event::UserRegistered {
                user_id: user,
                display_name: Some("Grace".into())
            }
        );
        let current = CURRENT_SCHEMA_VERSION;
        assert!(matches!(
            decode_json("UserRegistered", current, "{\"user_id\": 1}"),
            Err(UpcastError::Malformed { .. })
        ));
        assert!(matches!(
            decode_json("UserRegistered", current, "} not json"),
            Err(UpcastError::Malformed { .. })
        ));
        assert!(matches!(
            decode_json("UserRegistered", current + 1, "{}"),
            Err(UpcastError::FromTheFuture { .. })
        ));
    }

    #[test]
    fn given_a_version_1_registration_when_read_then_the_name_becomes_display_name() {
        let user = UserId::new_random();
        let old = StoredEvent {
            event_type: "UserRegistered".into(),
            schema_version: 1,
            data: json!({ "user_id": user, "name": "Grace" }),
        };
        assert_eq!(
            old.decode().expect("upcasts"),
            Event::UserRegistered {
                user_id: user,
                display_name: Some("Grace".into())
            }
        );
    }

    #[test]
    fn an_event_from_a_newer_schema_is_refused_not_misread() {
        let future = StoredEvent {
            event_type: "UserRegistered".into(),
            schema_version: CURRENT_SCHEMA_VERSION + 1,
            data: json!({}),
        };
        assert!(matches!(
            future.decode(),
            Err(UpcastError::FromTheFuture { .. })
        ));
    }
}
