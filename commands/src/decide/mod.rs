//! Pure decisions: state is folded from events with `evolve`, and `decide_*` turns a state and
//! a command into the events to append, or a domain error. No I/O here.

pub mod blocks;
pub mod delivery;
pub mod group;

pub use blocks::BlockersState;
pub use group::GroupState;

/// A command that the current state refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A user tried to block themselves.
    #[error("a user cannot block themselves")]
    SelfBlock,
    /// The group does not exist.
    #[error("group not found")]
    GroupNotFound,
    /// The group exists already (a reused id).
    #[error("group exists already")]
    GroupExists,
    /// Only the group's admin may do this.
    #[error("only the group admin may do this")]
    NotAdmin,
    /// Only members may do this.
    #[error("only group members may do this")]
    NotAMember,
    /// The admin cannot leave or be removed.
    #[error("the group admin cannot be removed from the group")]
    AdminCannotLeave,
    /// The group would exceed its size limit.
    #[error("a group has at most {0} members")]
    GroupFull(usize),
}

impl From<DomainError> for crate::CommandError {
    fn from(error: DomainError) -> Self {
        use crate::CommandError as E;
        let text = error.to_string();
        match error {
            DomainError::SelfBlock => E::Invalid(text),
            DomainError::GroupNotFound => E::NotFound(text),
            DomainError::GroupExists | DomainError::AdminCannotLeave => E::Conflict(text),
            DomainError::NotAdmin | DomainError::NotAMember => E::Forbidden(text),
            DomainError::GroupFull(_) => E::Invalid(text),
        }
    }
}
