//! A group's state and the decisions on creating it and changing its membership.

use super::DomainError;
use messaging_events::{Event, GroupId, UserId};
use std::collections::BTreeSet;

/// A group as folded from its stream (and stored as such in its snapshots).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupState {
    /// The admin, once the group is created.
    pub admin: Option<UserId>,
    /// Current members, the admin included.
    pub members: BTreeSet<UserId>,
}

impl GroupState {
    /// Folds the events of a `group-*` stream.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        events.into_iter().fold(Self::default(), evolve)
    }

    /// Whether the group exists.
    pub fn exists(&self) -> bool {
        self.admin.is_some()
    }

    /// Whether `user` is a member now.
    pub fn is_member(&self, user: UserId) -> bool {
        self.members.contains(&user)
    }
}

/// Applies one event.
pub fn evolve(mut state: GroupState, event: &Event) -> GroupState {
    match event {
        Event::GroupCreated { admin, members, .. } => {
            state.admin = Some(*admin);
            state.members = members.iter().copied().collect();
            state.members.insert(*admin);
        }
        Event::MemberAdded { user_id, .. } => {
            state.members.insert(*user_id);
        }
        Event::MemberRemoved { user_id, .. } => {
            state.members.remove(user_id);
        }
        _ => {}
    }
    state
}

/// Creates a group whose admin is `creator`; `members` may omit the creator and repeat users.
pub fn decide_create(
    state: &GroupState,
    group_id: GroupId,
    name: String,
    creator: UserId,
    members: &[UserId],
    max_members: usize,
) -> Result<Vec<Event>, DomainError> {
    if state.exists() {
        return Err(DomainError::GroupExists);
    }
    let mut all = vec![creator];
    let mut seen = BTreeSet::from([creator]);
    for member in members {
        if seen.insert(*member) {
            all.push(*member);
        }
    }
    if all.len() > max_members {
        return Err(DomainError::GroupFull(max_members));
    }
    Ok(vec![Event::GroupCreated {
        group_id,
        name,
        admin: creator,
        members: all,
    }])
}

/// `actor` adds `user`; only the admin may, and adding a member again is a no-op.
pub fn decide_add(
    state: &GroupState,
    group_id: GroupId,
    actor: UserId,
    user: UserId,
    max_members: usize,
) -> Result<Vec<Event>, DomainError> {
    let admin = state.admin.ok_or(DomainError::GroupNotFound)?;
    if actor != admin {
        return Err(DomainError::NotAdmin);
    }
    if state.is_member(user) {
        return Ok(Vec::new());
    }
    if state.members.len() >= max_members {
        return Err(DomainError::GroupFull(max_members));
    }
    Ok(vec![Event::MemberAdded {
        group_id,
        user_id: user,
        by: actor,
    }])
}

/// `actor` removes `user`: the admin may remove anyone but themselves, and anyone may leave.
/// Removing a non-member is a no-op.
pub fn decide_remove(
    state: &GroupState,
    group_id: GroupId,
    actor: UserId,
    user: UserId,
) -> Result<Vec<Event>, DomainError> {
    let admin = state.admin.ok_or(DomainError::GroupNotFound)?;
    if actor != admin && actor != user {
        return Err(DomainError::NotAdmin);
    }
    if user == admin {
        return Err(DomainError::AdminCannotLeave);
    }
    if !state.is_member(user) {
        return Ok(Vec::new());
    }
    Ok(vec![Event::MemberRemoved {
        group_id,
        user_id: user,
        by: actor,
    }])
}

/// Whether `sender` may send to the group now.
pub fn decide_send(state: &GroupState, sender: UserId) -> Result<(), DomainError> {
    if !state.exists() {
        return Err(DomainError::GroupNotFound);
    }
    if !state.is_member(sender) {
        return Err(DomainError::NotAMember);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Given {
        group: GroupId,
        admin: UserId,
        member: UserId,
        outsider: UserId,
        state: GroupState,
    }

    fn given_a_group_with_one_member() -> Given {
        let group = GroupId::new_random();
        let admin = UserId::new_random();
        let member = UserId::new_random();
        let created = decide_create(
            &GroupState::default(),
            group,
            "g".into(),
            admin,
            &[member],
            1000,
        )
        .expect("created");
        Given {
            group,
            admin,
            member,
            outsider: UserId::new_random(),
            state: GroupState::from_events(&created),
        }
    }

    #[test]
    fn when_created_then_the_creator_is_admin_and_member_once() {
        let creator = UserId::new_random();
        let other = UserId::new_random();
        let events = decide_create(
            &GroupState::default(),
            GroupId::new_random(),
            "g".into(),
            creator,
            &[other, creator, other],
            1000,
        )
        .expect("created");
        let state = GroupState::from_events(&events);
        assert_eq!(state.admin, Some(creator));
        assert_eq!(state.members, BTreeSet::from([creator, other]));
        match &events[0] {
            Event::GroupCreated { members, .. } => assert_eq!(members, &vec![creator, other]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn when_created_over_the_size_limit_then_refused() {
        let members: Vec<UserId> = (0..3).map(|_| UserId::new_random()).collect();
        let result = decide_create(
            &GroupState::default(),
            GroupId::new_random(),
            "g".into(),
            UserId::new_random(),
            &members,
            3,
        );
        assert_eq!(result, Err(DomainError::GroupFull(3)));
    }

    #[test]
    fn given_a_group_when_a_non_admin_adds_then_forbidden() {
        let g = given_a_group_with_one_member();
        assert_eq!(
            decide_add(&g.state, g.group, g.member, g.outsider, 1000),
            Err(DomainError::NotAdmin)
        );
    }

    #[test]
    fn given_a_group_when_the_admin_adds_then_the_user_is_a_member() {
        let g = given_a_group_with_one_member();
        let events = decide_add(&g.state, g.group, g.admin, g.outsider, 1000).expect("added");
        assert!(events.iter().fold(g.state, evolve).is_member(g.outsider));
    }

    #[test]
    fn given_a_member_when_added_again_then_nothing_changes() {
        let g = given_a_group_with_one_member();
        assert_eq!(
            decide_add(&g.state, g.group, g.admin, g.member, 1000),
            Ok(vec![])
        );
    }

    #[test]
    fn given_a_full_group_when_adding_then_refused() {
        let g = given_a_group_with_one_member();
        assert_eq!(
            decide_add(&g.state, g.group, g.admin, g.outsider, 2),
            Err(DomainError::GroupFull(2))
        );
    }

    #[test]
    fn given_a_member_when_they_leave_then_they_are_no_longer_a_member() {
        let g = given_a_group_with_one_member();
        let events = decide_remove(&g.state, g.group, g.member, g.member).expect("left");
        assert!(!events.iter().fold(g.state, evolve).is_member(g.member));
    }

    #[test]
    fn given_a_member_when_another_member_removes_them_then_forbidden() {
        let mut g = given_a_group_with_one_member();
        g.state.members.insert(g.outsider);
        assert_eq!(
            decide_remove(&g.state, g.group, g.outsider, g.member),
            Err(DomainError::NotAdmin)
        );
    }

    #[test]
    fn when_the_admin_would_leave_then_refused() {
        let g = given_a_group_with_one_member();
        assert_eq!(
            decide_remove(&g.state, g.group, g.admin, g.admin),
            Err(DomainError::AdminCannotLeave)
        );
    }

    #[test]
    fn given_no_group_then_every_membership_command_is_not_found() {
        let nobody = UserId::new_random();
        let state = GroupState::default();
        let group = GroupId::new_random();
        assert_eq!(
            decide_add(&state, group, nobody, nobody, 10),
            Err(DomainError::GroupNotFound)
        );
        assert_eq!(
            decide_remove(&state, group, nobody, nobody),
            Err(DomainError::GroupNotFound)
        );
        assert_eq!(decide_send(&state, nobody), Err(DomainError::GroupNotFound));
    }

    #[test]
    fn only_members_may_send() {
        let g = given_a_group_with_one_member();
        assert_eq!(decide_send(&g.state, g.member), Ok(()));
        assert_eq!(
            decide_send(&g.state, g.outsider),
            Err(DomainError::NotAMember)
        );
    }
}
