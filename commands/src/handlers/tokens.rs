//! Bearer tokens after registration: authenticating a request, and `POST /revoke-token`.
//!
//! A token is valid while the claim `token:{hash}` exists and `token:{hash}:revoked` does not.
//! Both are point reads by key, made concurrently, so authenticating costs the same whatever
//! the number of tokens, users or events; and both are strongly consistent, so a revocation
//! holds from the very next request. Looking a secret up by its SHA-256 hash compares no
//! secret: the store's key comparison can at most leak a prefix of a hash, from which no token
//! can be derived.

use super::{back_off, contended, CommandHandlers, MAX_ATTEMPTS};
use crate::auth::{decode_token, hash_token, revoked_claim_key, token_claim_key};
use crate::idempotency::Idempotency;
use crate::CommandError;
use messaging_events::{
    AppendError, AppendRequest, Claim, Event, NewEvent, StreamId, UserId, MAX_ITEMS_PER_APPEND,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

/// Tokens revoked per append: each one is an event and a claim, plus one idempotency claim.
const TOKENS_PER_APPEND: usize = (MAX_ITEMS_PER_APPEND - 1) / 2;

/// `POST /revoke-token` body (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    /// Revoke every token of the caller, not only the one the request carries.
    #[serde(default)]
    pub all: bool,
}

/// 200 response of `POST /revoke-token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// How many tokens this request revoked.
    pub revoked: usize,
}

/// Whom a valid token belongs to, and which of the user's tokens it is (not a secret: the id
/// that `TokenIssued` and `TokenRevoked` carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The token's user.
    pub user: UserId,
    /// The token's id.
    pub token_id: Uuid,
}

/// A token as the claims know it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenRecord {
    user: UserId,
    token_id: Uuid,
    revoked: bool,
}

/// A token issued to a user and not revoked, as the user's stream tells.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiveToken {
    token_id: Uuid,
    hash: String,
}

impl CommandHandlers {
    /// Resolves a bearer token to its user; unknown, malformed and revoked tokens are 401.
    pub async fn authenticate(&self, bearer_token: &str) -> Result<UserId, CommandError> {
        Ok(self.identify(bearer_token).await?.user)
    }

    /// As [`Self::authenticate`], with the token's id: for a connection that must end when
    /// this very token is revoked (WebSocket connections on AWS).
    pub async fn identify(&self, bearer_token: &str) -> Result<TokenIdentity, CommandError> {
        let record = self.token_record(bearer_token).await?;
        if record.revoked {
            return Err(CommandError::Unauthenticated);
        }
        Ok(TokenIdentity {
            user: record.user,
            token_id: record.token_id,
        })
    }

    /// `POST /revoke-token`: revokes the token the request carries (or, with `all`, every
    /// token of its user). The revoked token is refused from the next request on; a retry with
    /// the same `Idempotency-Key` still gets the first response.
    pub async fn revoke_token(
        &self,
        bearer_token: &str,
        body: RevokeToken,
        idempotency_key: Option<&str>,
    ) -> Result<Revoked, CommandError> {
        let current = self.token_record(bearer_token).await?;
        let idem = Idempotency::new(
            &current.user.to_string(),
            "revoke-token",
            idempotency_key,
            &body,
        )?;
        // Before the revocation check: the retry of a successful revoke carries a token that
        // is revoked now, and must get the same answer.
        if let Some(done) = self.replayed(idem.as_ref()).await? {
            return Ok(done);
        }
        if current.revoked {
            return Err(CommandError::Unauthenticated);
        }
        let stream = StreamId::user(current.user);
        let mut total = 0;
        for _ in 0..MAX_ATTEMPTS {
            let (version, events) = self.read(&stream).await?;
            let live = live_tokens(&events);
            if total == 0 && !live.iter().any(|t| t.token_id == current.token_id) {
                // A concurrent request revoked it first.
                return Err(CommandError::Unauthenticated);
            }
            let mut targets = select_tokens(live, current.token_id, body.all);
            let rest = targets.split_off(targets.len().min(TOKENS_PER_APPEND));
            let response = Revoked {
                revoked: total + targets.len(),
            };
            let mut request = revocation(current.user, version, &targets);
            let last = rest.is_empty();
            if let (true, Some(idem)) = (last, idem.as_ref()) {
                request.claims.push(idem.claim(&response)?);
            }
            if request.item_count() == 0 {
                return Ok(response);
            }
            match self.deps.store.append(request).await {
                Ok(_) => {
                    total = response.revoked;
                    if last {
                        tracing::info!(user_id = %current.user, revoked = total, all = body.all, "tokens revoked");
                        return Ok(response);
                    }
                }
                Err(AppendError::ClaimTaken { key, existing }) => match idem.as_ref() {
                    Some(idem) if idem.claim_key == key => return idem.replay(existing),
                    // A revocation claim: another revocation won the race; read and decide again.
                    _ => back_off().await,
                },
                // Another append to the user's stream came first: read and decide again.
                Err(AppendError::Conflict { .. }) => back_off().await,
                Err(other) => return Err(other.into()),
            }
        }
        Err(contended())
    }

    /// The claims of a token: whom it belongs to and whether it is revoked (two point reads,
    /// concurrently).
    async fn token_record(&self, bearer_token: &str) -> Result<TokenRecord, CommandError> {
        let token = decode_token(bearer_token).ok_or(CommandError::Unauthenticated)?;
        let hash = hash_token(&token);
        let (issued_key, revoked_key) = (token_claim_key(&hash), revoked_claim_key(&hash));
        let (issued, revoked) = tokio::join!(
            self.deps.store.get_claim(&issued_key),
            self.deps.store.get_claim(&revoked_key)
        );
        let issued = issued?.ok_or(CommandError::Unauthenticated)?;
        let (user, token_id) = token_owner(&issued)?;
        Ok(TokenRecord {
            user,
            token_id,
            revoked: revoked?.is_some(),
        })
    }
}

/// The owner and id stored in a `token:{hash}` claim.
fn token_owner(claim: &Value) -> Result<(UserId, Uuid), CommandError> {
    let user = claim
        .get("user_id")
        .and_then(Value::as_str)
        .and_then(UserId::parse)
        .ok_or_else(|| CommandError::Internal("token record without a user".into()))?;
    let token_id = claim
        .get("token_id")
        .and_then(Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| CommandError::Internal("token record without an id".into()))?;
    Ok((user, token_id))
}

/// The tokens a user's stream shows as issued and not revoked, oldest first.
fn live_tokens(events: &[Event]) -> Vec<LiveToken> {
    let mut live: Vec<LiveToken> = Vec::new();
    for event in events {
        match event {
            Event::TokenIssued {
                token_id,
                token_hash,
                ..
            } => live.push(LiveToken {
                token_id: *token_id,
                hash: token_hash.clone(),
            }),
            Event::TokenRevoked { token_id, .. } => live.retain(|t| t.token_id != *token_id),
            _ => {}
        }
    }
    live
}

/// What a revoke request revokes: the current token (first, so that it is in the first
/// append), and with `all` every other live token too.
fn select_tokens(live: Vec<LiveToken>, current: Uuid, all: bool) -> Vec<LiveToken> {
    let (mut chosen, others): (Vec<_>, Vec<_>) =
        live.into_iter().partition(|t| t.token_id == current);
    if all {
        chosen.extend(others);
    }
    chosen
}

/// The append that revokes `tokens`: a `TokenRevoked` event each on the user's stream (at the
/// version read) and the claims that make authentication refuse them.
fn revocation(user: UserId, version: u64, tokens: &[LiveToken]) -> AppendRequest {
    let events = tokens
        .iter()
        .map(|t| {
            NewEvent::new(Event::TokenRevoked {
                user_id: user,
                token_id: t.token_id,
            })
        })
        .collect();
    let mut request = AppendRequest::single(StreamId::user(user), version, events);
    if tokens.is_empty() {
        request.appends.clear();
    }
    request.claims = tokens
        .iter()
        .map(|t| Claim {
            key: revoked_claim_key(&t.hash),
            value: json!({ "user_id": user, "token_id": t.token_id }),
        })
        .collect();
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(user: UserId, id: Uuid, hash: &str) -> Event {
        Event::TokenIssued {
            user_id: user,
            token_id: id,
            token_hash: hash.into(),
        }
    }

    #[test]
    fn live_tokens_are_those_issued_and_not_revoked() {
        let user = UserId::new_random();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let events = vec![
            Event::UserRegistered {
                user_id: user,
                display_name: None,
            },
            issued(user, a, "ha"),
            issued(user, b, "hb"),
            Event::TokenRevoked {
                user_id: user,
                token_id: a,
            },
            issued(user, c, "hc"),
        ];
        let ids: Vec<Uuid> = live_tokens(&events).iter().map(|t| t.token_id).collect();
        assert_eq!(ids, vec![b, c]);
    }

    #[test]
    fn one_revokes_the_current_token_and_all_revokes_every_live_one_current_first() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let live: Vec<LiveToken> = [a, b, c]
            .iter()
            .map(|id| LiveToken {
                token_id: *id,
                hash: id.to_string(),
            })
            .collect();
        let one: Vec<Uuid> = select_tokens(live.clone(), b, false)
            .iter()
            .map(|t| t.token_id)
            .collect();
        assert_eq!(one, vec![b]);
        let all: Vec<Uuid> = select_tokens(live, b, true)
            .iter()
            .map(|t| t.token_id)
            .collect();
        assert_eq!(all, vec![b, a, c]);
    }

    #[test]
    fn a_revocation_appends_an_event_and_a_claim_per_token_within_the_item_limit() {
        let user = UserId::new_random();
        let tokens: Vec<LiveToken> = (0..TOKENS_PER_APPEND)
            .map(|i| LiveToken {
                token_id: Uuid::new_v4(),
                hash: format!("h{i}"),
            })
            .collect();
        let request = revocation(user, 7, &tokens);
        assert_eq!(request.appends[0].expected_version, 7);
        assert_eq!(request.appends[0].events.len(), TOKENS_PER_APPEND);
        assert_eq!(request.claims[0].key, revoked_claim_key("h0"));
        // Room for the idempotency claim.
        assert!(request.item_count() < MAX_ITEMS_PER_APPEND);
        assert_eq!(revocation(user, 7, &[]).item_count(), 0);
    }

    #[test]
    fn token_claims_name_their_owner() {
        let user = UserId::new_random();
        let id = Uuid::new_v4();
        let claim = json!({ "user_id": user, "token_id": id });
        assert_eq!(token_owner(&claim).unwrap(), (user, id));
        for broken in [
            json!({}),
            json!({ "user_id": user }),
            json!({ "token_id": id }),
        ] {
            assert!(matches!(
                token_owner(&broken),
                Err(CommandError::Internal(_))
            ));
        }
    }
}
