//! Validated values: the only way to build one is `parse`, so a value that exists is valid.

use serde::{Deserialize, Serialize};

/// The configurable limits of the REST contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest message text in bytes of UTF-8.
    pub max_message_bytes: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Longest group name in characters.
    pub max_group_name_chars: usize,
    /// Most members in a group, the admin included.
    pub max_group_members: usize,
    /// Largest page of messages.
    pub max_page_size: usize,
    /// Longest display name in characters.
    pub max_display_name_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4096,
            max_body_bytes: 64 * 1024,
            max_group_name_chars: 128,
            max_group_members: 1000,
            max_page_size: 100,
            max_display_name_chars: 128,
        }
    }
}

/// The environment variables that override the limits, with their fields.
const LIMIT_VARIABLES: [&str; 5] = [
    "MESSAGING_MAX_MESSAGE_BYTES",
    "MESSAGING_MAX_BODY_BYTES",
    "MESSAGING_MAX_GROUP_NAME_CHARS",
    "MESSAGING_MAX_GROUP_MEMBERS",
    "MESSAGING_MAX_PAGE_SIZE",
];

/// A limit variable that is not a positive integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?}: {reason}")]
pub struct LimitError {
    /// The variable.
    pub name: &'static str,
    /// What it was set to.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl Limits {
    /// The defaults, overridden by the `MESSAGING_MAX_*` variables that `lookup` finds; the one
    /// reading of those variables that the local server and the Lambda functions share.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Limits, LimitError> {
        let defaults = Limits::default();
        let [message, body, group_name, group_members, page] = LIMIT_VARIABLES;
        let get = |name: &'static str, default: usize| -> Result<usize, LimitError> {
            let Some(value) = lookup(name).filter(|v| !v.trim().is_empty()) else {
                return Ok(default);
            };
            match value.trim().parse::<usize>() {
                // Zero would disable the endpoint the limit guards.
                Ok(0) => Err(LimitError {
                    name,
                    value,
                    reason: "must be greater than zero".into(),
                }),
                Ok(number) => Ok(number),
                Err(error) => Err(LimitError {
                    name,
                    reason: error.to_string(),
                    value,
                }),
            }
        };
        Ok(Limits {
            max_message_bytes: get(message, defaults.max_message_bytes)?,
            max_body_bytes: get(body, defaults.max_body_bytes)?,
            max_group_name_chars: get(group_name, defaults.max_group_name_chars)?,
            max_group_members: get(group_members, defaults.max_group_members)?,
            max_page_size: get(page, defaults.max_page_size)?,
            ..defaults
        })
    }
}

/// A value that breaks a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Empty or otherwise malformed.
    #[error("{0}")]
    Invalid(String),
    /// Longer than allowed.
    #[error("{0}")]
    TooLarge(String),
}

/// Message text: 1 to `max_message_bytes` bytes of UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    /// Validates a message text.
    pub fn parse(text: String, limits: &Limits) -> Result<Self, ValueError> {
        if text.is_empty() {
            return Err(ValueError::Invalid("message must not be empty".into()));
        }
        if text.len() > limits.max_message_bytes {
            return Err(ValueError::TooLarge(format!(
                "message is {} bytes; the limit is {}",
                text.len(),
                limits.max_message_bytes
            )));
        }
        Ok(Self(text))
    }

    /// The text.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Group name: 1 to `max_group_name_chars` characters, not only whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupName(String);

impl GroupName {
    /// Validates a group name.
    pub fn parse(name: String, limits: &Limits) -> Result<Self, ValueError> {
        if name.trim().is_empty() {
            return Err(ValueError::Invalid("group_name must not be empty".into()));
        }
        let chars = name.chars().count();
        if chars > limits.max_group_name_chars {
            return Err(ValueError::Invalid(format!(
                "group_name is {chars} characters; the limit is {}",
                limits.max_group_name_chars
            )));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Display name: 1 to `max_display_name_chars` characters, not only whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Validates a display name.
    pub fn parse(name: String, limits: &Limits) -> Result<Self, ValueError> {
        if name.trim().is_empty() {
            return Err(ValueError::Invalid("display_name must not be empty".into()));
        }
        let chars = name.chars().count();
        if chars > limits.max_display_name_chars {
            return Err(ValueError::Invalid(format!(
                "display_name is {chars} characters; the limit is {}",
                limits.max_display_name_chars
            )));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_text_is_one_to_4096_bytes() {
        let limits = Limits::default();
        assert!(MessageText::parse(String::new(), &limits).is_err());
        assert!(MessageText::parse("x".into(), &limits).is_ok());
        assert!(MessageText::parse("x".repeat(4096), &limits).is_ok());
        assert!(matches!(
            MessageText::parse("x".repeat(4097), &limits),
            Err(ValueError::TooLarge(_))
        ));
        // Bytes, not characters: 1366 three-byte characters are 4098 bytes.
        assert!(MessageText::parse("€".repeat(1366), &limits).is_err());
    }

    #[test]
    fn limits_come_from_variables_or_defaults() {
        assert_eq!(Limits::from_lookup(|_| None), Ok(Limits::default()));
        let set = Limits::from_lookup(|name| {
            (name == "MESSAGING_MAX_PAGE_SIZE").then(|| "7".to_string())
        })
        .expect("valid");
        assert_eq!(set.max_page_size, 7);
        for bad in ["0", "-1", "many"] {
            let error = Limits::from_lookup(|name| {
                (name == "MESSAGING_MAX_BODY_BYTES").then(|| bad.to_string())
            })
            .expect_err("refused");
            assert_eq!(error.name, "MESSAGING_MAX_BODY_BYTES");
        }
    }

    #[test]
    fn group_name_is_one_to_128_characters() {
        let limits = Limits::default();
        assert!(GroupName::parse("   ".into(), &limits).is_err());
        assert!(GroupName::parse("é".repeat(128), &limits).is_ok());
        assert!(GroupName::parse("a".repeat(129), &limits).is_err());
    }
}
