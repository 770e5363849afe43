//! The write side: command handlers (validate, authorise, decide, append, enqueue), the pure
//! decisions they use, and the processors that decide delivery of accepted messages.

mod auth;
mod decide;
mod error;
mod group_snapshots;
mod handlers;
mod idempotency;
mod inbox_ends;
mod inbox_locks;
mod processor;
mod requests;
mod sweep;

pub use auth::{hash_token, new_token};
pub use decide::{blocks, delivery, group, BlockersState, DomainError, GroupState};
pub use error::CommandError;
pub use handlers::{CommandHandlers, Dependencies, Dispatch, RevokeToken, Revoked, TokenIdentity};
pub use processor::{ProcessError, Processor};
pub use requests::{
    Accepted, BlockUser, CreateGroup, Done, GetAllMessages, GetNewMessages, GroupCreatedResponse,
    GroupMember, NewMessages, Register, Registered, SendGroupMessage, SendMessage,
};
pub use sweep::{Sweeper, SWEEP_PAGE};

#[cfg(test)]
mod memory_store;
#[cfg(test)]
mod tests;
