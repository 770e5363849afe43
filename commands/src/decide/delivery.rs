//! The processors' decision: who receives an accepted message, judged against the blocks and
//! the membership pinned at acceptance.

use super::{BlockersState, GroupState};
use messaging_events::{RejectionReason, UserId};

/// What happens to an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Deliver to these recipients; `withheld` recipients block the sender.
    To {
        recipients: Vec<UserId>,
        withheld: u32,
    },
    /// Deliver to nobody.
    Rejected(RejectionReason),
}

/// A direct message from `sender` to `receiver`, with the sender's blockers at acceptance.
pub fn decide_direct(blockers: &BlockersState, receiver: UserId) -> Delivery {
    if blockers.is_blocked_by(receiver) {
        Delivery::Rejected(RejectionReason::Blocked)
    } else {
        Delivery::To {
            recipients: vec![receiver],
            withheld: 0,
        }
    }
}

/// A group message: every member at acceptance but the sender, minus those who block the
/// sender. A sender who was not a member at acceptance reaches nobody.
pub fn decide_group(group: &GroupState, blockers: &BlockersState, sender: UserId) -> Delivery {
    if !group.is_member(sender) {
        return Delivery::Rejected(RejectionReason::NotAMember);
    }
    let mut withheld = 0;
    let recipients = group
        .members
        .iter()
        .copied()
        .filter(|member| *member != sender)
        .filter(|member| {
            let blocked = blockers.is_blocked_by(*member);
            withheld += u32::from(blocked);
            !blocked
        })
        .collect();
    Delivery::To {
        recipients,
        withheld,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn given_the_receiver_blocks_the_sender_then_the_direct_message_is_rejected() {
        let receiver = UserId::new_random();
        let blockers = BlockersState {
            blockers: BTreeSet::from([receiver]),
        };
        assert_eq!(
            decide_direct(&blockers, receiver),
            Delivery::Rejected(RejectionReason::Blocked)
        );
    }

    #[test]
    fn given_someone_else_blocks_the_sender_then_the_direct_message_is_delivered() {
        let receiver = UserId::new_random();
        let blockers = BlockersState {
            blockers: BTreeSet::from([UserId::new_random()]),
        };
        assert_eq!(
            decide_direct(&blockers, receiver),
            Delivery::To {
                recipients: vec![receiver],
                withheld: 0
            }
        );
    }

    #[test]
    fn a_group_message_reaches_members_but_the_sender_and_those_blocking_them() {
        let (sender, a, b, c) = (
            UserId::new_random(),
            UserId::new_random(),
            UserId::new_random(),
            UserId::new_random(),
        );
        let group = GroupState {
            admin: Some(sender),
            members: BTreeSet::from([sender, a, b, c]),
        };
        let blockers = BlockersState {
            blockers: BTreeSet::from([b]),
        };
        let Delivery::To {
            recipients,
            withheld,
        } = decide_group(&group, &blockers, sender)
        else {
            panic!("expected a delivery");
        };
        assert_eq!(
            recipients.into_iter().collect::<BTreeSet<_>>(),
            BTreeSet::from([a, c])
        );
        assert_eq!(withheld, 1);
    }

    #[test]
    fn a_group_message_from_a_non_member_is_rejected() {
        let group = GroupState {
            admin: Some(UserId::new_random()),
            members: BTreeSet::new(),
        };
        assert_eq!(
            decide_group(&group, &BlockersState::default(), UserId::new_random()),
            Delivery::Rejected(RejectionReason::NotAMember)
        );
    }
}
