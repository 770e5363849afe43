//! `Idempotency-Key` support: the first response to a key is stored as a claim in the same
//! atomic append as the command's events, so a retry finds either nothing (and runs the
//! command) or the complete outcome (and gets the same response).

use crate::auth::hex;
use crate::CommandError;
use messaging_events::Claim;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Longest accepted key.
const MAX_KEY_LEN: usize = 255;

/// The idempotency record of one request.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// Claim key: scope (caller and endpoint) plus a hash of the client's key.
    pub claim_key: String,
    /// Hash of the request body: the same key with another body is a client error.
    fingerprint: String,
}

impl Idempotency {
    /// The record for `key` sent by `scope` (a user id, or the endpoint for anonymous calls).
    pub fn new(
        scope: &str,
        endpoint: &str,
        key: Option<&str>,
        body: &impl Serialize,
    ) -> Result<Option<Self>, CommandError> {
        let Some(key) = key else { return Ok(None) };
        if key.is_empty()
            || key.len() > MAX_KEY_LEN
            || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(CommandError::Invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters"
            )));
        }
        let body = serde_json::to_vec(body).map_err(|e| CommandError::Internal(e.to_string()))?;
        Ok(Some(Self {
            claim_key: format!("idem:{scope}:{endpoint}:{}", hex(&Sha256::digest(key))),
            fingerprint: hex(&Sha256::digest(&body)),
        }))
    }

    /// The claim that stores `response` for this key.
    pub fn claim(&self, response: &impl Serialize) -> Result<Claim, CommandError> {
        let response =
            serde_json::to_value(response).map_err(|e| CommandError::Internal(e.to_string()))?;
        Ok(Claim {
            key: self.claim_key.clone(),
            value: json!({ "fingerprint": self.fingerprint, "response": response }),
        })
    }

    /// The stored response, if `stored` is this key's record for the same request.
    pub fn replay<T: DeserializeOwned>(&self, stored: Value) -> Result<T, CommandError> {
        if stored.get("fingerprint").and_then(Value::as_str) != Some(self.fingerprint.as_str()) {
            return Err(CommandError::Conflict(
                "Idempotency-Key was already used with a different request".into(),
            ));
        }
        let response = stored.get("response").cloned().unwrap_or(Value::Null);
        serde_json::from_value(response).map_err(|e| CommandError::Internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_response_replays_for_the_same_body_only() {
        let idem = Idempotency::new("u", "send", Some("k1"), &json!({"a": 1}))
            .expect("valid")
            .expect("present");
        let claim = idem.claim(&json!({"message_id": "m"})).expect("claim");
        let same: Value = idem.replay(claim.value.clone()).expect("same request");
        assert_eq!(same, json!({"message_id": "m"}));

        let other = Idempotency::new("u", "send", Some("k1"), &json!({"a": 2}))
            .expect("valid")
            .expect("present");
        assert_eq!(other.claim_key, idem.claim_key);
        assert!(matches!(
            other.replay::<Value>(claim.value),
            Err(CommandError::Conflict(_))
        ));
    }

    #[test]
    fn keys_are_scoped_by_caller_and_endpoint() {
        let body = json!({});
        let a = Idempotency::new("u1", "send", Some("k"), &body)
            .expect("ok")
            .expect("some");
        let b = Idempotency::new("u2", "send", Some("k"), &body)
            .expect("ok")
            .expect("some");
        let c = Idempotency::new("u1", "block", Some("k"), &body)
            .expect("ok")
            .expect("some");
        assert_ne!(a.claim_key, b.claim_key);
        assert_ne!(a.claim_key, c.claim_key);
    }

    #[test]
    fn malformed_keys_are_refused() {
        let body = json!({});
        assert!(Idempotency::new("u", "e", Some(""), &body).is_err());
        assert!(Idempotency::new("u", "e", Some("\u{7}"), &body).is_err());
        assert!(Idempotency::new("u", "e", Some(&"k".repeat(256)), &body).is_err());
        assert!(Idempotency::new("u", "e", None, &body)
            .expect("ok")
            .is_none());
    }
}
