use super::{contended, parse_user, require_self, Appended, CommandHandlers, MAX_ATTEMPTS};
use crate::decide::group::{decide_add, decide_create, decide_remove, GroupState};
use crate::group_snapshots::snapshots_for;
use crate::idempotency::Idempotency;
use crate::{CommandError, CreateGroup, Done, GroupCreatedResponse, GroupMember};
use messaging_events::{AppendRequest, Event, GroupId, GroupName, NewEvent, StreamId, UserId};

/// Which membership change.
#[derive(Clone, Copy)]
enum MembershipCommand {
    Add,
    Remove,
}

impl CommandHandlers {
    /// `POST /create-group`: a new group whose admin is the caller (201).
    pub async fn create_group(
        &self,
        actor: UserId,
        body: CreateGroup,
        idempotency_key: Option<&str>,
    ) -> Result<GroupCreatedResponse, CommandError> {
        let creator = parse_user("creator_id", &body.creator_id)?;
        require_self(actor, creator, "creator_id")?;
        let name = GroupName::parse(body.group_name.clone(), &self.deps.limits)?.into_inner();
        let max = self.deps.limits.max_group_members;
        if body.members.len() > max {
            return Err(CommandError::Invalid(format!(
                "a group has at most {max} members"
            )));
        }
        let members = body
            .members
            .iter()
            .map(|m| parse_user("members", m))
            .collect::<Result<Vec<_>, _>>()?;
        let idem = Idempotency::new(&actor.to_string(), "create-group", idempotency_key, &body)?;
        if let Some(done) = self.replayed(idem.as_ref()).await? {
            return Ok(done);
        }
        let group_id = GroupId::new_random();
        let events = decide_create(
            &GroupState::default(),
            group_id,
            name,
            creator,
            &members,
            max,
        )?;
        if let Some(Event::GroupCreated { members, .. }) = events.first() {
            self.require_users(members).await?;
        }
        let response = GroupCreatedResponse {
            group_id: group_id.to_string(),
        };
        let request = AppendRequest::single(
            StreamId::group(group_id),
            0,
            events.into_iter().map(NewEvent::new).collect(),
        );
        match self.commit(request, idem.as_ref(), &response).await? {
            Appended::Committed(recorded) => {
                if let Some(last) = recorded.last() {
                    self.known_groups.saw(group_id, last.version);
                }
                tracing::info!(%group_id, creator_id = %creator, "group created");
                Ok(response)
            }
            Appended::Replayed(done) => Ok(done),
            // A fresh random id cannot be taken; treat it as the bug it would be.
            Appended::Retry => Err(CommandError::Internal("group id collision".into())),
        }
    }

    /// `POST /add-user-to-group`: the admin adds `user_id`.
    pub async fn add_user_to_group(
        &self,
        actor: UserId,
        body: GroupMember,
        idempotency_key: Option<&str>,
    ) -> Result<Done, CommandError> {
        self.change_membership(actor, body, idempotency_key, MembershipCommand::Add)
            .await
    }

    /// `POST /remove-user-from-group`: the admin removes `user_id`, or a member leaves.
    pub async fn remove_user_from_group(
        &self,
        actor: UserId,
        body: GroupMember,
        idempotency_key: Option<&str>,
    ) -> Result<Done, CommandError> {
        self.change_membership(actor, body, idempotency_key, MembershipCommand::Remove)
            .await
    }

    async fn change_membership(
        &self,
        actor: UserId,
        body: GroupMember,
        idempotency_key: Option<&str>,
        command: MembershipCommand,
    ) -> Result<Done, CommandError> {
        let group_id = GroupId::parse(&body.group_id)
            .ok_or_else(|| CommandError::Invalid("group_id is not a valid id".into()))?;
        let user = parse_user("user_id", &body.user_id)?;
        let endpoint = match command {
            MembershipCommand::Add => "add-user-to-group",
            MembershipCommand::Remove => "remove-user-from-group",
        };
        let idem = Idempotency::new(&actor.to_string(), endpoint, idempotency_key, &body)?;
        if let Some(done) = self.replayed(idem.as_ref()).await? {
            return Ok(done);
        }
        let stream = StreamId::group(group_id);
        let mut checked_user = false;
        for _ in 0..MAX_ATTEMPTS {
            let (version, state) = self.group(group_id).await?;
            let max = self.deps.limits.max_group_members;
            let new_events = match command {
                MembershipCommand::Add => decide_add(&state, group_id, actor, user, max)?,
                MembershipCommand::Remove => decide_remove(&state, group_id, actor, user)?,
            };
            // Authorisation first, so that a non-admin learns nothing about other users.
            if !checked_user {
                self.require_users(&[user]).await?;
                checked_user = true;
            }
            let reached = version + new_events.len() as u64;
            let request = if new_events.is_empty() {
                AppendRequest::default()
            } else {
                let snapshots = snapshots_for(group_id, &state, version, &new_events);
                AppendRequest {
                    claims: snapshots,
                    ..AppendRequest::single(
                        stream.clone(),
                        version,
                        new_events.into_iter().map(NewEvent::new).collect(),
                    )
                }
            };
            match self.commit(request, idem.as_ref(), &Done::ok()).await? {
                Appended::Committed(_) => {
                    self.known_groups.saw(group_id, reached);
                    tracing::info!(%group_id, user_id = %user, actor = %actor, endpoint, "membership changed");
                    return Ok(Done::ok());
                }
                Appended::Replayed(done) => return Ok(done),
                Appended::Retry => continue,
            }
        }
        Err(contended())
    }
}
