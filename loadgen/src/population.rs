//! The users and groups the load runs on, created through the API before the load starts.

use crate::http::{Conn, Target};
use anyhow::Context;
use bytes::Bytes;
use rand::seq::index::sample;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How many setup requests run at once.
const SETUP_CONCURRENCY: usize = 32;

/// A registered user.
#[derive(Debug, Clone)]
pub struct User {
    /// The user id.
    pub id: String,
    /// The `Authorization` header value.
    pub auth: String,
}

/// A group and its members (indices into [`Population::users`]).
#[derive(Debug, Clone)]
pub struct Group {
    /// The group id.
    pub id: String,
    /// Members, the creator first.
    pub members: Vec<u32>,
}

/// Everybody the load uses.
#[derive(Debug)]
pub struct Population {
    /// Registered users.
    pub users: Vec<User>,
    /// Groups of 10 members.
    pub groups10: Vec<Group>,
    /// Groups of 100 members.
    pub groups100: Vec<Group>,
}

#[derive(Deserialize)]
struct Registered {
    user_id: String,
    token: String,
}

#[derive(Deserialize)]
struct GroupCreated {
    group_id: String,
}

impl Population {
    /// Registers `users` users, then creates the groups from random members.
    pub async fn create(
        target: &Target,
        users: usize,
        groups10: usize,
        groups100: usize,
    ) -> anyhow::Result<Population> {
        let users = register_all(target, users).await?;
        let users = Arc::new(users);
        let groups10 = create_groups(target, &users, groups10, 10).await?;
        let groups100 = create_groups(target, &users, groups100, 100).await?;
        let users = Arc::try_unwrap(users).unwrap_or_else(|shared| (*shared).clone());
        Ok(Population {
            users,
            groups10,
            groups100,
        })
    }
}

async fn register_all(target: &Target, count: usize) -> anyhow::Result<Vec<User>> {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..SETUP_CONCURRENCY.min(count) {
        let target = target.clone();
        // Worker w registers users w, w + N, w + 2N, ...
        let mine = (worker..count).step_by(SETUP_CONCURRENCY).count();
        tasks.spawn(async move {
            let mut conn = Conn::new(target, Duration::from_secs(30));
            let mut users = Vec::with_capacity(mine);
            for _ in 0..mine {
                let reply = conn
                    .post("/register", None, Bytes::from_static(b"{}"))
                    .await
                    .context("POST /register")?;
                anyhow::ensure!(
                    reply.status == 201,
                    "POST /register answered {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
                let registered: Registered =
                    serde_json::from_slice(&reply.body).context("POST /register body")?;
                users.push(User {
                    id: registered.user_id,
                    auth: format!("Bearer {}", registered.token),
                });
            }
            Ok::<_, anyhow::Error>(users)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("registration task")??);
    }
    Ok(all)
}

async fn create_groups(
    target: &Target,
    users: &Arc<Vec<User>>,
    count: usize,
    size: usize,
) -> anyhow::Result<Vec<Group>> {
    let mut rng = rand::rng();
    let plans: Vec<Vec<u32>> = (0..count)
        .map(|_| {
            sample(&mut rng, users.len(), size)
                .into_iter()
                .map(|i| i as u32)
                .collect()
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    let mut groups = Vec::with_capacity(count);
    for (n, members) in plans.into_iter().enumerate() {
        let target = target.clone();
        let users = users.clone();
        tasks.spawn(async move {
            let mut conn = Conn::new(target, Duration::from_secs(30));
            let creator = &users[members[0] as usize];
            let others: Vec<&str> = members[1..]
                .iter()
                .map(|&i| users[i as usize].id.as_str())
                .collect();
            let body = serde_json::json!({
                "group_name": format!("load group {n} of {size}"),
                "creator_id": creator.id,
                "members": others,
            });
            let reply = conn
                .post(
                    "/create-group",
                    Some(&creator.auth),
                    Bytes::from(body.to_string()),
                )
                .await
                .context("POST /create-group")?;
            anyhow::ensure!(
                reply.status == 201,
                "POST /create-group answered {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            let created: GroupCreated =
                serde_json::from_slice(&reply.body).context("POST /create-group body")?;
            Ok::<_, anyhow::Error>(Group {
                id: created.group_id,
                members,
            })
        });
        // Bound the concurrency of group creation like registration.
        while tasks.len() >= SETUP_CONCURRENCY {
            if let Some(joined) = tasks.join_next().await {
                groups.push(joined.context("group task")??);
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        groups.push(joined.context("group task")??);
    }
    Ok(groups)
}
