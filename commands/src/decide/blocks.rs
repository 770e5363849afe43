//! Blocks live in the stream of the blocked user (`blocks-{blocked}`): every send by that user
//! pins the stream's version, so the processor decides against exactly the blocks that were
//! acknowledged before the message was accepted.

use super::DomainError;
use messaging_events::{Event, UserId};
use std::collections::BTreeSet;

/// Who currently blocks one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockersState {
    /// Users that block the stream's user.
    pub blockers: BTreeSet<UserId>,
}

impl BlockersState {
    /// Folds the events of a `blocks-*` stream.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        events.into_iter().fold(Self::default(), evolve)
    }

    /// Whether `user` blocks the stream's user.
    pub fn is_blocked_by(&self, user: UserId) -> bool {
        self.blockers.contains(&user)
    }
}

/// Applies one event.
pub fn evolve(mut state: BlockersState, event: &Event) -> BlockersState {
    match event {
        Event::UserBlocked { blocker, .. } => {
            state.blockers.insert(*blocker);
        }
        Event::UserUnblocked { blocker, .. } => {
            state.blockers.remove(blocker);
        }
        _ => {}
    }
    state
}

/// `blocker` blocks `blocked`; blocking again is a no-op.
pub fn decide_block(
    state: &BlockersState,
    blocker: UserId,
    blocked: UserId,
) -> Result<Vec<Event>, DomainError> {
    if blocker == blocked {
        return Err(DomainError::SelfBlock);
    }
    if state.is_blocked_by(blocker) {
        return Ok(Vec::new());
    }
    Ok(vec![Event::UserBlocked { blocker, blocked }])
}

/// `blocker` unblocks `blocked`; unblocking someone not blocked is a no-op.
pub fn decide_unblock(
    state: &BlockersState,
    blocker: UserId,
    blocked: UserId,
) -> Result<Vec<Event>, DomainError> {
    if blocker == blocked {
        return Err(DomainError::SelfBlock);
    }
    if !state.is_blocked_by(blocker) {
        return Ok(Vec::new());
    }
    Ok(vec![Event::UserUnblocked { blocker, blocked }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> (UserId, UserId, UserId) {
        (
            UserId::new_random(),
            UserId::new_random(),
            UserId::new_random(),
        )
    }

    #[test]
    fn given_no_blocks_when_a_blocks_b_then_a_block_is_recorded() {
        let (a, b, _) = users();
        let events = decide_block(&BlockersState::default(), a, b).expect("allowed");
        assert_eq!(
            events,
            vec![Event::UserBlocked {
                blocker: a,
                blocked: b
            }]
        );
    }

    #[test]
    fn given_a_blocks_b_when_a_blocks_b_again_then_nothing_is_recorded() {
        let (a, b, _) = users();
        let state = BlockersState::from_events(&[Event::UserBlocked {
            blocker: a,
            blocked: b,
        }]);
        assert_eq!(decide_block(&state, a, b), Ok(vec![]));
    }

    #[test]
    fn when_a_user_blocks_themselves_then_it_is_refused() {
        let (a, _, _) = users();
        assert_eq!(
            decide_block(&BlockersState::default(), a, a),
            Err(DomainError::SelfBlock)
        );
    }

    #[test]
    fn given_many_blockers_when_one_unblocks_then_the_others_remain() {
        let (a, b, c) = users();
        let state = BlockersState::from_events(&[
            Event::UserBlocked {
                blocker: a,
                blocked: b,
            },
            Event::UserBlocked {
                blocker: c,
                blocked: b,
            },
        ]);
        let unblock = decide_unblock(&state, a, b).expect("allowed");
        assert_eq!(
            unblock,
            vec![Event::UserUnblocked {
                blocker: a,
                blocked: b
            }]
        );
        let after = unblock.iter().fold(state, evolve);
        assert!(!after.is_blocked_by(a));
        assert!(after.is_blocked_by(c));
    }

    #[test]
    fn given_no_block_when_unblocking_then_nothing_is_recorded() {
        let (a, b, _) = users();
        assert_eq!(decide_unblock(&BlockersState::default(), a, b), Ok(vec![]));
    }
}
