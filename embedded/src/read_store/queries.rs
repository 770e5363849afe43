//! The read-model queries: each one walks a primary-key (or partial) index and stops at its
//! limit, so its cost never grows with a user's history.

use crate::convert::{from_json, from_sql, limit_to_sql, parse_uuid, to_sql};
use crate::EmbeddedError;
use messaging_events::{GroupId, Timestamp, UserId};
use messaging_projections::{HistoryEntry, InboxEntry, PendingWork};
use rusqlite::{params, Connection, OptionalExtension};

const INBOX_AFTER: &str = "SELECT position, message FROM inbox
     WHERE user = ?1 AND position > ?2 ORDER BY position LIMIT ?3";
const HISTORY_AFTER: &str = "SELECT sort_key, message FROM history
     WHERE user = ?1 AND sort_key > ?2 ORDER BY sort_key LIMIT ?3";
const READ_MARKER: &str = "SELECT up_to FROM read_markers WHERE user = ?1";
const GROUP_EXISTS: &str = "SELECT 1 FROM \"groups\" WHERE group_id = ?1";
const GROUP_MEMBERS: &str = "SELECT user FROM memberships WHERE group_id = ?1 AND member = 1";
const BLOCKED_BY: &str = "SELECT blocked FROM blocks WHERE blocker = ?1 AND active = 1";
const PENDING_BEFORE: &str =
    "SELECT work FROM pending WHERE settled = 0 AND accepted_at < ?1 ORDER BY accepted_at LIMIT ?2";

pub(super) fn inbox_after(
    conn: &Connection,
    user: UserId,
    after: u64,
    limit: usize,
) -> Result<Vec<InboxEntry>, EmbeddedError> {
    let rows = conn
        .prepare_cached(INBOX_AFTER)?
        .query_map(
            params![user.to_string(), to_sql(after), limit_to_sql(limit)],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(position, message)| {
            Ok(InboxEntry {
                position: from_sql(position)?,
                message: from_json("inbox message", &message)?,
            })
        })
        .collect()
}

pub(super) fn history_after(
    conn: &Connection,
    user: UserId,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<HistoryEntry>, EmbeddedError> {
    // Every sort key is non-empty, so "" sorts before all of them.
    let rows = conn
        .prepare_cached(HISTORY_AFTER)?
        .query_map(
            params![user.to_string(), after.unwrap_or(""), limit_to_sql(limit)],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(sort_key, message)| {
            Ok(HistoryEntry {
                sort_key,
                message: from_json("history message", &message)?,
            })
        })
        .collect()
}

pub(super) fn read_marker(conn: &Connection, user: UserId) -> Result<Option<u64>, EmbeddedError> {
    let up_to: Option<i64> = conn
        .prepare_cached(READ_MARKER)?
        .query_row(params![user.to_string()], |row| row.get(0))
        .optional()?;
    up_to.map(from_sql).transpose()
}

pub(super) fn group_members(
    conn: &Connection,
    group: GroupId,
) -> Result<Option<Vec<UserId>>, EmbeddedError> {
    let group = group.to_string();
    let exists = conn.prepare_cached(GROUP_EXISTS)?.exists(params![group])?;
    if !exists {
        return Ok(None);
    }
    let users = conn
        .prepare_cached(GROUP_MEMBERS)?
        .query_map(params![group], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    users
        .iter()
        .map(|user| user_id(user))
        .collect::<Result<_, _>>()
        .map(Some)
}

pub(super) fn blocked_by(conn: &Connection, blocker: UserId) -> Result<Vec<UserId>, EmbeddedError> {
    let users = conn
        .prepare_cached(BLOCKED_BY)?
        .query_map(params![blocker.to_string()], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    users.iter().map(|user| user_id(user)).collect()
}

pub(super) fn pending_before(
    conn: &Connection,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<PendingWork>, EmbeddedError> {
    let works = conn
        .prepare_cached(PENDING_BEFORE)?
        .query_map(params![before.micros(), limit_to_sql(limit)], |row| {
            row.get::<_, Option<String>>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    works
        .into_iter()
        .map(|work| {
            let work = work.ok_or_else(|| EmbeddedError::corrupt("pending work", "missing"))?;
            from_json("pending work", &work)
        })
        .collect()
}

fn user_id(text: &str) -> Result<UserId, EmbeddedError> {
    parse_uuid("user id", text).map(UserId)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_plan::{assert_indexed, read_db};

    #[test]
    fn every_query_searches_an_index() {
        let conn = read_db();
        for sql in [
            INBOX_AFTER,
            HISTORY_AFTER,
            READ_MARKER,
            GROUP_EXISTS,
            GROUP_MEMBERS,
            BLOCKED_BY,
            PENDING_BEFORE,
        ] {
            assert_indexed(&conn, sql);
        }
    }
}
