//! The JSON shapes of the GET responses: messages with RFC 3339 times.

use messaging_commands::NewMessages;
use messaging_events::{GroupId, MessageId, UserId};
use messaging_projections::{HistoryPage, MessageView};
use serde::Serialize;

/// A message as the REST contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageJson {
    /// The message's id.
    pub message_id: MessageId,
    /// Who sent it.
    pub sender_id: UserId,
    /// The recipient of a direct message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_id: Option<UserId>,
    /// The group of a group message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// The text.
    pub message: String,
    /// Acceptance time, RFC 3339 in UTC.
    pub sent_at: String,
}

impl From<MessageView> for MessageJson {
    fn from(view: MessageView) -> MessageJson {
        MessageJson {
            message_id: view.message_id,
            sender_id: view.sender_id,
            receiver_id: view.receiver_id,
            group_id: view.group_id,
            message: view.message,
            sent_at: view.sent_at.to_rfc3339(),
        }
    }
}

/// `GET /get-new-messages` response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewMessagesJson {
    /// Newly delivered messages, oldest first.
    pub messages: Vec<MessageJson>,
    /// Pass as `since` to repeat the call or continue after it.
    pub cursor: String,
}

impl From<NewMessages> for NewMessagesJson {
    fn from(new: NewMessages) -> NewMessagesJson {
        NewMessagesJson {
            messages: new.messages.into_iter().map(MessageJson::from).collect(),
            cursor: new.cursor,
        }
    }
}

/// `GET /get-all-messages` response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryJson {
    /// A page of the user's history, oldest first.
    pub messages: Vec<MessageJson>,
    /// Where the next page starts; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl From<HistoryPage> for HistoryJson {
    fn from(page: HistoryPage) -> HistoryJson {
        HistoryJson {
            messages: page.messages.into_iter().map(MessageJson::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_events::Timestamp;
    use serde_json::json;

    fn view(receiver: Option<UserId>, group: Option<GroupId>) -> MessageView {
        MessageView {
            message_id: MessageId::new_random(),
            sender_id: UserId::new_random(),
            receiver_id: receiver,
            group_id: group,
            message: "hi".into(),
            sent_at: Timestamp(1_500_000),
        }
    }

    #[test]
    fn direct_messages_show_the_receiver_and_an_rfc3339_time() {
        let receiver = UserId::new_random();
        let v = view(Some(receiver), None);
        let got = serde_json::to_value(MessageJson::from(v.clone())).unwrap();
        assert_eq!(
            got,
            json!({
                "message_id": v.message_id.to_string(),
                "sender_id": v.sender_id.to_string(),
                "receiver_id": receiver.to_string(),
                "message": "hi",
                "sent_at": "1970-01-01T00:00:01.5Z",
            })
        );
    }

    #[test]
    fn group_messages_show_the_group_and_the_last_page_a_null_cursor() {
        let group = GroupId::new_random();
        let page = HistoryPage {
            messages: vec![view(None, Some(group))],
            next_cursor: None,
        };
        let got = serde_json::to_value(HistoryJson::from(page)).unwrap();
        assert_eq!(got["next_cursor"], serde_json::Value::Null);
        assert_eq!(got["messages"][0]["group_id"], group.to_string());
        assert!(got["messages"][0].get("receiver_id").is_none());
    }
}
