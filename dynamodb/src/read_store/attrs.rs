//! Building and reading DynamoDB attribute values of the read tables. Messages and work are
//! JSON text attributes, as in the SQLite adapter, so one row is one attribute to decode.

use crate::ReadError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

/// A DynamoDB item or key.
pub(super) type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub(super) fn n(value: impl Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A JSON text attribute.
pub(super) fn json<T: Serialize>(
    what: &'static str,
    value: &T,
) -> Result<AttributeValue, ReadError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| ReadError::corrupt(what, e))
}

/// The string attribute `name` of `item`.
pub(super) fn get_s<'a>(
    item: &'a Item,
    name: &str,
    what: &'static str,
) -> Result<&'a str, ReadError> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => Ok(text),
        Some(_) => Err(ReadError::corrupt(what, format!("{name} is not a string"))),
        None => Err(ReadError::corrupt(what, format!("{name} is missing"))),
    }
}

/// The number attribute `name` of `item`.
pub(super) fn get_n<T: FromStr>(
    item: &Item,
    name: &str,
    what: &'static str,
) -> Result<T, ReadError> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => text
            .parse()
            .map_err(|_| ReadError::corrupt(what, format!("{name} = {text} is out of range"))),
        Some(_) => Err(ReadError::corrupt(what, format!("{name} is not a number"))),
        None => Err(ReadError::corrupt(what, format!("{name} is missing"))),
    }
}

/// The JSON text attribute `name` of `item`, decoded.
pub(super) fn get_json<T: DeserializeOwned>(
    item: &Item,
    name: &str,
    what: &'static str,
) -> Result<T, ReadError> {
    serde_json::from_str(get_s(item, name, what)?).map_err(|e| ReadError::corrupt(what, e))
}

/// The UUID-based id in string attribute `name` of `item`.
pub(super) fn get_id<T>(
    item: &Item,
    name: &str,
    what: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, ReadError> {
    let text = get_s(item, name, what)?;
    parse(text).ok_or_else(|| ReadError::corrupt(what, format!("{name} = {text:?} is not an id")))
}
