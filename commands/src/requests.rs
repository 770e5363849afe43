//! Request and response bodies of the REST contract. Ids arrive as strings and are parsed by
//! the handlers, so that a malformed id is a 400 with a clear message, not a decoding error.

use messaging_projections::MessageView;
use serde::{Deserialize, Serialize};

/// `POST /register` body (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// A name to show; optional.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// `POST /register` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The new user's id.
    pub user_id: String,
    /// The bearer token; shown once, stored only as a hash.
    pub token: String,
}

/// `POST /send-message` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendMessage {
    pub sender_id: String,
    pub receiver_id: String,
    pub message: String,
}

/// `POST /send-group-message` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendGroupMessage {
    pub sender_id: String,
    pub group_id: String,
    pub message: String,
}

/// 202 response of both sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The accepted message's id.
    pub message_id: String,
}

/// `POST /block-user` and `POST /unblock-user` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockUser {
    pub user_id: String,
    pub blocked_user_id: String,
}

/// `POST /create-group` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateGroup {
    pub group_name: String,
    pub creator_id: String,
    #[serde(default)]
    pub members: Vec<String>,
}

/// 201 response of `POST /create-group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreatedResponse {
    pub group_id: String,
}

/// `POST /add-user-to-group` and `POST /remove-user-from-group` body: `user_id` is the member
/// added or removed; the caller is the token's user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupMember {
    pub group_id: String,
    pub user_id: String,
}

/// 200 response of commands that return nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Always `"ok"`.
    pub status: String,
}

impl Done {
    /// The one value.
    pub fn ok() -> Self {
        Self {
            status: "ok".into(),
        }
    }
}

/// `GET /get-new-messages` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GetNewMessages {
    pub user_id: String,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
}

/// `GET /get-new-messages` response (before JSON shaping of the messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessages {
    /// Newly delivered messages, oldest first.
    pub messages: Vec<MessageView>,
    /// Pass as `since` to repeat this call or to continue after it.
    pub cursor: String,
}

/// `GET /get-all-messages` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GetAllMessages {
    pub user_id: String,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
}
