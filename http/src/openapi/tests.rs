//! The document against the real types: every request schema's fields are the fields the
//! handlers deserialise (and exactly the required ones are required), every response schema's
//! fields are what the handlers serialise, and every error is a problem document.

use super::document;
use crate::views::{HistoryJson, MessageJson, NewMessagesJson};
use crate::Problem;
use axum::http::StatusCode;
use messaging_commands::{
    Accepted, BlockUser, CreateGroup, Done, GetAllMessages, GetNewMessages, GroupCreatedResponse,
    GroupMember, Register, Registered, RevokeToken, Revoked, SendGroupMessage, SendMessage,
};
use messaging_events::{MessageId, Timestamp, UserId};
use messaging_projections::MessageView;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

fn schema(name: &str) -> Value {
    document()["components"]["schemas"][name].clone()
}

fn names(value: &Value) -> BTreeSet<String> {
    match value {
        Value::Object(map) => map.keys().cloned().collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// A value for each property that the real type accepts.
fn sample(property: &str) -> Value {
    match property {
        "message" => json!("hi"),
        "group_name" => json!("g"),
        "display_name" => json!("n"),
        "members" => json!([]),
        "all" => json!(true),
        _ => json!(UserId::new_random().to_string()),
    }
}

/// `T` accepts an object with exactly the schema's required properties, and refuses it
/// without any one of them; every documented property is a field of `T`.
fn request_matches<T: DeserializeOwned + Serialize>(name: &str) {
    let schema = schema(name);
    let properties = names(&schema["properties"]);
    let required = names(&schema["required"]);
    let full: Map<String, Value> = properties.iter().map(|p| (p.clone(), sample(p))).collect();
    let parsed: T = serde_json::from_value(Value::Object(full.clone()))
        .unwrap_or_else(|e| panic!("{name}: the documented properties are refused: {e}"));
    let back = names(&serde_json::to_value(&parsed).unwrap());
    assert_eq!(back, properties, "{name}: documented vs real fields");
    let minimal: Map<String, Value> = full
        .iter()
        .filter(|(k, _)| required.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_json::from_value::<T>(Value::Object(minimal.clone()))
        .unwrap_or_else(|e| panic!("{name}: the required properties alone are refused: {e}"));
    for field in &required {
        let mut without = minimal.clone();
        without.remove(field);
        assert!(
            serde_json::from_value::<T>(Value::Object(without)).is_err(),
            "{name}: {field} is documented as required but is optional"
        );
    }
    if schema["additionalProperties"] == json!(false) {
        let mut extra = full;
        extra.insert("unexpected".into(), json!(1));
        assert!(
            serde_json::from_value::<T>(Value::Object(extra)).is_err(),
            "{name}: documented as closed but accepts unknown fields"
        );
    }
}

#[test]
fn request_schemas_are_the_types_the_handlers_read() {
    request_matches::<Register>("RegisterRequest");
    request_matches::<SendMessage>("SendMessageRequest");
    request_matches::<SendGroupMessage>("SendGroupMessageRequest");
    request_matches::<BlockUser>("BlockRequest");
    request_matches::<CreateGroup>("CreateGroupRequest");
    request_matches::<GroupMember>("GroupMemberRequest");
    request_matches::<RevokeToken>("RevokeTokenRequest");
}

/// The serialised `value` has every required property and nothing undocumented.
fn response_matches(name: &str, value: impl Serialize) {
    let schema = schema(name);
    let got = names(&serde_json::to_value(value).unwrap());
    let properties = names(&schema["properties"]);
    let required = names(&schema["required"]);
    assert!(
        got.is_subset(&properties),
        "{name}: undocumented fields {:?}",
        got.difference(&properties).collect::<Vec<_>>()
    );
    assert!(
        required.is_subset(&got),
        "{name}: required but absent {:?}",
        required.difference(&got).collect::<Vec<_>>()
    );
}

fn message(direct: bool) -> MessageJson {
    MessageJson::from(MessageView {
        message_id: MessageId::new_random(),
        sender_id: UserId::new_random(),
        receiver_id: direct.then(UserId::new_random),
        group_id: (!direct).then(messaging_events::GroupId::new_random),
        message: "hi".into(),
        sent_at: Timestamp(1),
    })
}

#[test]
fn response_schemas_are_the_types_the_handlers_write() {
    response_matches(
        "Registered",
        Registered {
            user_id: "u".into(),
            token: "t".into(),
        },
    );
    response_matches(
        "Accepted",
        Accepted {
            message_id: "m".into(),
        },
    );
    response_matches("Done", Done::ok());
    response_matches(
        "GroupCreated",
        GroupCreatedResponse {
            group_id: "g".into(),
        },
    );
    response_matches("Revoked", Revoked { revoked: 1 });
    response_matches("Message", message(true));
    response_matches("Message", message(false));
    response_matches(
        "NewMessages",
        NewMessagesJson {
            messages: vec![],
            cursor: "c".into(),
        },
    );
    response_matches(
        "History",
        HistoryJson {
            messages: vec![],
            next_cursor: None,
        },
    );
    response_matches(
        "Problem",
        Problem::new(StatusCode::BAD_REQUEST, "invalid_request", "x"),
    );
}

#[test]
fn query_parameters_are_the_fields_the_handlers_read() {
    let doc = document();
    for (path, sample) in [
        (
            "/get-new-messages",
            serde_json::to_value(GetNewMessages::default()).unwrap(),
        ),
        (
            "/get-all-messages",
            serde_json::to_value(GetAllMessages::default()).unwrap(),
        ),
    ] {
        let documented: BTreeSet<String> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        let mut read = names(&sample);
        if path == "/get-new-messages" {
            // The long poll's `wait`, read by the route itself (routes.rs `LongPoll`).
            read.insert("wait".into());
        }
        assert_eq!(documented, read, "{path}");
    }
}

#[test]
fn every_error_response_is_a_problem_document() {
    let doc = document();
    let shared = &doc["components"]["responses"];
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let code: u16 = status.parse().unwrap();
                let response = match response["$ref"].as_str() {
                    Some(reference) => {
                        &shared[reference.trim_start_matches("#/components/responses/")]
                    }
                    None => response,
                };
                let content = names(&response["content"]);
                if code >= 400 {
                    seen += 1;
                    assert_eq!(
                        content,
                        BTreeSet::from([crate::PROBLEM_JSON.to_string()]),
                        "{method} {path} {status}"
                    );
                    assert_eq!(
                        response["content"][crate::PROBLEM_JSON]["schema"]["$ref"],
                        "#/components/schemas/Problem"
                    );
                }
                assert!(
                    response["headers"].get("x-request-id").is_some(),
                    "{method} {path} {status}: every response carries x-request-id"
                );
            }
        }
    }
    assert!(seen > 40, "{seen} error responses");
    let codes = names(&doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]);
    for code in [
        "invalid_request",
        "unauthenticated",
        "rate_limited",
        "internal",
    ] {
        assert!(codes.contains(code), "{code}");
    }
}
