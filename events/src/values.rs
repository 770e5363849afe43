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
    fn group_name_is_one_to_128_characters() {
        let limits = Limits::default();
        assert!(GroupName::parse("   ".into(), &limits).is_err());
        assert!(GroupName::parse("é".repeat(128), &limits).is_ok());
        assert!(GroupName::parse("a".repeat(129), &limits).is_err());
    }
}
