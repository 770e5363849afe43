//! Applying read-model changes. Every statement is idempotent (insert-or-ignore, max, or a
//! version guard), so a redelivered or reordered batch leaves the same rows.

use crate::convert::{to_json, to_sql};
use crate::EmbeddedError;
use messaging_projections::ReadModelChange;
use rusqlite::{params, Connection};

/// Applies `changes` in order inside the caller's transaction.
pub(super) fn apply_all(
    conn: &Connection,
    changes: &[ReadModelChange],
) -> Result<(), EmbeddedError> {
    for change in changes {
        apply(conn, change)?;
    }
    Ok(())
}

fn apply(conn: &Connection, change: &ReadModelChange) -> Result<(), EmbeddedError> {
    match change {
        ReadModelChange::InboxEntry { user, entry } => execute(
            conn,
            "INSERT OR IGNORE INTO inbox (user, position, message) VALUES (?1, ?2, ?3)",
            params![
                user.to_string(),
                to_sql(entry.position),
                to_json("inbox message", &entry.message)?
            ],
        ),
        ReadModelChange::HistoryEntry { user, entry } => execute(
            conn,
            "INSERT OR IGNORE INTO history (user, sort_key, message) VALUES (?1, ?2, ?3)",
            params![
                user.to_string(),
                entry.sort_key,
                to_json("history message", &entry.message)?
            ],
        ),
        ReadModelChange::ReadMarker { user, up_to } => execute(
            conn,
            "INSERT INTO read_markers (user, up_to) VALUES (?1, ?2)
             ON CONFLICT (user) DO UPDATE SET up_to = max(up_to, excluded.up_to)",
            params![user.to_string(), to_sql(*up_to)],
        ),
        ReadModelChange::User { user, display_name } => execute(
            conn,
            "INSERT OR IGNORE INTO users (user, display_name) VALUES (?1, ?2)",
            params![user.to_string(), display_name],
        ),
        ReadModelChange::Group { group, name, admin } => execute(
            conn,
            "INSERT OR IGNORE INTO \"groups\" (group_id, name, admin) VALUES (?1, ?2, ?3)",
            params![group.to_string(), name, admin.to_string()],
        ),
        ReadModelChange::Membership {
            group,
            user,
            member,
            version,
        } => execute(
            conn,
            "INSERT INTO memberships (group_id, user, member, version) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (group_id, user) DO UPDATE
             SET member = excluded.member, version = excluded.version
             WHERE excluded.version > memberships.version",
            params![group.to_string(), user.to_string(), member, to_sql(*version)],
        ),
        ReadModelChange::Block {
            blocker,
            blocked,
            active,
            version,
        } => execute(
            conn,
            "INSERT INTO blocks (blocker, blocked, active, version) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (blocker, blocked) DO UPDATE
             SET active = excluded.active, version = excluded.version
             WHERE excluded.version > blocks.version",
            params![blocker.to_string(), blocked.to_string(), active, to_sql(*version)],
        ),
        // Ignored when a row exists, settled or not: a Settled that overtook its Pending wins.
        ReadModelChange::Pending { work } => execute(
            conn,
            "INSERT OR IGNORE INTO pending (message_id, accepted_at, settled, work)
             VALUES (?1, ?2, 0, ?3)",
            params![
                work.message_id.to_string(),
                work.accepted_at.micros(),
                to_json("pending work", work)?
            ],
        ),
        // Settling forgets the work, so the row is the same whichever of the two came first.
        ReadModelChange::Settled { message_id } => execute(
            conn,
            "INSERT INTO pending (message_id, accepted_at, settled, work) VALUES (?1, NULL, 1, NULL)
             ON CONFLICT (message_id) DO UPDATE SET settled = 1, accepted_at = NULL, work = NULL",
            params![message_id.to_string()],
        ),
    }
}

fn execute(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<(), EmbeddedError> {
    conn.prepare_cached(sql)?.execute(params)?;
    Ok(())
}
