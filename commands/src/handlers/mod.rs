//! Command handlers: validate, authorise, read the streams a decision needs, decide, append
//! (with optimistic concurrency and idempotency) and enqueue.

mod blocks;
mod groups;
mod messages;
mod reads;
mod register;
mod tokens;

use crate::decide::GroupState;
use crate::group_snapshots::{self, KnownVersions};
use crate::idempotency::Idempotency;
use crate::CommandError;
use messaging_events::{
    AppendError, AppendRequest, Clock, Event, EventStore, GroupId, Limits, RecordedEvent, StreamId,
    UserId, WorkQueue,
};
use messaging_projections::{Queries, ReadStore};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

pub use tokens::{RevokeToken, Revoked, TokenIdentity};

/// How often a command re-reads and re-decides after losing an optimistic-concurrency race.
const MAX_ATTEMPTS: usize = 64;

/// Everything the handlers need, built once by the driver.
#[derive(Clone)]
pub struct Dependencies {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The read models (for the GET endpoints).
    pub read: Arc<dyn ReadStore>,
    /// Work for the direct-message processor.
    pub direct_queue: Arc<dyn WorkQueue>,
    /// Work for the group-message processor.
    pub group_queue: Arc<dyn WorkQueue>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Input limits.
    pub limits: Limits,
    /// How a send hands its accepted message to a processor.
    pub dispatch: Dispatch,
}

/// How accepted messages reach a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// Enqueue, and answer once the enqueue is done: a Lambda function is frozen once it has
    /// answered, so nothing may be left running.
    Enqueue,
    /// Answer once the event is durable and enqueue in a background task. Only for
    /// long-running processes: the event alone is the promise (the sweep re-enqueues accepted
    /// work that no queue holds, at startup too), and the answer waits for one commit, not two.
    EnqueueInBackground,
    /// Enqueue nothing: a consumer of the event store's change feed hands every accepted
    /// message to the processor (the embedded server, where the feed is as durable as a queue
    /// and reading it costs no writes).
    ChangeFeed,
}

/// The handlers of every endpoint of the REST contract, independent of HTTP.
#[derive(Clone)]
pub struct CommandHandlers {
    deps: Dependencies,
    queries: Queries,
    /// Where group streams had got to when last seen, to start loading from their snapshots.
    known_groups: Arc<KnownVersions>,
}

/// The result of one append attempt.
enum Appended<T> {
    /// Written (possibly nothing, for a no-op without idempotency key).
    Committed(Vec<RecordedEvent>),
    /// A stream moved since it was read: read and decide again.
    Retry,
    /// The idempotency key was used by a request that completed first.
    Replayed(T),
}

impl CommandHandlers {
    /// Handlers over the given ports.
    pub fn new(deps: Dependencies) -> Self {
        let queries = Queries::new(deps.read.clone());
        Self {
            deps,
            queries,
            known_groups: Arc::default(),
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> &Limits {
        &self.deps.limits
    }

    /// Whether a user is registered (its stream has an event).
    async fn user_exists(&self, user: UserId) -> Result<bool, CommandError> {
        Ok(self
            .deps
            .store
            .stream_version(&StreamId::user(user))
            .await?
            > 0)
    }

    /// Fails with 404 unless every user exists.
    async fn require_users(&self, users: &[UserId]) -> Result<(), CommandError> {
        for user in users {
            if !self.user_exists(*user).await? {
                return Err(CommandError::NotFound(format!("user {user} not found")));
            }
        }
        Ok(())
    }

    /// The current version of a stream and its newest event.
    async fn head(&self, stream: &StreamId) -> Result<(u64, Option<Event>), CommandError> {
        Ok(match self.deps.store.last_event(stream).await? {
            Some(last) => (last.version, Some(last.event)),
            None => (0, None),
        })
    }

    /// A whole stream's events and its version.
    async fn read(&self, stream: &StreamId) -> Result<(u64, Vec<Event>), CommandError> {
        let events = self.deps.store.read_stream(stream, 0, None).await?;
        let version = events.last().map_or(0, |e| e.version);
        Ok((version, events.into_iter().map(|e| e.event).collect()))
    }

    /// A group's current state and version, loaded from its latest snapshot.
    async fn group(&self, group: GroupId) -> Result<(u64, GroupState), CommandError> {
        let mut known = self.known_groups.get(group);
        if known == 0 {
            // Once per group and process: where the stream is, so that even the first load
            // starts from a snapshot instead of the group's first event.
            known = self
                .deps
                .store
                .stream_version(&StreamId::group(group))
                .await?;
        }
        let (version, state) =
            group_snapshots::load(self.deps.store.as_ref(), group, known, None).await?;
        self.known_groups.saw(group, version);
        Ok((version, state))
    }

    /// The response stored for an idempotency key, if the request ran already.
    async fn replayed<T: DeserializeOwned>(
        &self,
        idem: Option<&Idempotency>,
    ) -> Result<Option<T>, CommandError> {
        let Some(idem) = idem else { return Ok(None) };
        match self.deps.store.get_claim(&idem.claim_key).await? {
            Some(stored) => idem.replay(stored).map(Some),
            None => Ok(None),
        }
    }

    /// Appends `request` together with the idempotency record of `response`.
    async fn commit<T: Serialize + DeserializeOwned>(
        &self,
        mut request: AppendRequest,
        idem: Option<&Idempotency>,
        response: &T,
    ) -> Result<Appended<T>, CommandError> {
        if let Some(idem) = idem {
            request.claims.push(idem.claim(response)?);
        }
        if request.item_count() == 0 {
            return Ok(Appended::Committed(Vec::new()));
        }
        match self.deps.store.append(request).await {
            Ok(recorded) => Ok(Appended::Committed(recorded)),
            Err(AppendError::Conflict { .. }) => {
                back_off().await;
                Ok(Appended::Retry)
            }
            // Only the append that takes a group's stream to the snapshot's version takes it.
            Err(AppendError::ClaimTaken { key, .. }) if group_snapshots::is_snapshot_key(&key) => {
                back_off().await;
                Ok(Appended::Retry)
            }
            Err(AppendError::ClaimTaken { key, existing })
                if idem.is_some_and(|i| i.claim_key == key) =>
            {
                let idem = idem.ok_or_else(|| CommandError::Internal("no idempotency".into()))?;
                idem.replay(existing).map(Appended::Replayed)
            }
            Err(other) => Err(other.into()),
        }
    }
}

/// Parses an id field, naming the field in the error.
fn parse_user(field: &str, text: &str) -> Result<UserId, CommandError> {
    UserId::parse(text).ok_or_else(|| CommandError::Invalid(format!("{field} is not a valid id")))
}

/// The caller may only act as themselves.
fn require_self(actor: UserId, claimed: UserId, field: &str) -> Result<(), CommandError> {
    if actor == claimed {
        Ok(())
    } else {
        Err(CommandError::Forbidden(format!(
            "{field} must be the authenticated user"
        )))
    }
}

/// A short random pause after a lost race, so that contenders spread out instead of
/// colliding again in lockstep.
async fn back_off() {
    let micros = rand::random_range(0..2_000u64);
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}

/// The error after every attempt lost a concurrency race.
fn contended() -> CommandError {
    CommandError::Unavailable("too much contention; retry".into())
}
