use super::{Appended, CommandHandlers, MAX_ATTEMPTS};
use crate::auth::{encode_token, hash_token, new_token, token_claim_key, wrap_token};
use crate::idempotency::Idempotency;
use crate::{CommandError, Register, Registered};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use messaging_events::{AppendRequest, Claim, DisplayName, Event, NewEvent, StreamId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

/// What an idempotent registration stores: the token only wrapped with the client's key.
#[derive(Serialize, Deserialize)]
struct StoredRegistration {
    user_id: String,
    wrapped_token: String,
}

impl CommandHandlers {
    /// `POST /register`: a new user and their first token.
    pub async fn register(
        &self,
        body: Register,
        idempotency_key: Option<&str>,
    ) -> Result<Registered, CommandError> {
        let display_name = body
            .display_name
            .clone()
            .map(|name| DisplayName::parse(name, &self.deps.limits))
            .transpose()?
            .map(DisplayName::into_inner);
        let idem = Idempotency::new("anonymous", "register", idempotency_key, &body)?;
        let unwrap = |stored: StoredRegistration| -> Result<Registered, CommandError> {
            let key = idempotency_key.unwrap_or_default();
            let bytes: [u8; 32] = URL_SAFE_NO_PAD
                .decode(stored.wrapped_token)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| CommandError::Internal("stored token is malformed".into()))?;
            Ok(Registered {
                user_id: stored.user_id,
                token: encode_token(&wrap_token(&bytes, key)),
            })
        };
        if let Some(stored) = self.replayed(idem.as_ref()).await? {
            return unwrap(stored);
        }
        for _ in 0..MAX_ATTEMPTS {
            let user = UserId::new_random();
            let token = new_token();
            let token_hash = hash_token(&token);
            let token_id = Uuid::new_v4();
            let events = vec![
                NewEvent::new(Event::UserRegistered {
                    user_id: user,
                    display_name: display_name.clone(),
                }),
                NewEvent::new(Event::TokenIssued {
                    user_id: user,
                    token_id,
                    token_hash: token_hash.clone(),
                }),
            ];
            let mut request = AppendRequest::single(StreamId::user(user), 0, events);
            request.claims.push(Claim {
                key: token_claim_key(&token_hash),
                value: json!({ "user_id": user, "token_id": token_id }),
            });
            let stored = StoredRegistration {
                user_id: user.to_string(),
                wrapped_token: URL_SAFE_NO_PAD
                    .encode(wrap_token(&token, idempotency_key.unwrap_or_default())),
            };
            match self.commit(request, idem.as_ref(), &stored).await? {
                Appended::Committed(_) => {
                    tracing::info!(user_id = %user, "user registered");
                    return Ok(Registered {
                        user_id: user.to_string(),
                        token: encode_token(&token),
                    });
                }
                Appended::Replayed(stored) => return unwrap(stored),
                Appended::Retry => continue,
            }
        }
        Err(super::contended())
    }
}
