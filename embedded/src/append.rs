//! The append transaction: checks, appends and claims, all or nothing.

use crate::convert::{from_json, from_sql, to_json, to_sql};
use crate::EmbeddedError;
use messaging_events::{
    AppendError, AppendRequest, NewEvent, RecordedEvent, StoredEvent, StreamId, Timestamp,
};
use rusqlite::{params, Connection, OptionalExtension};

/// Writes `request` inside the caller's transaction (savepoint); any error means the caller
/// rolls it back, so nothing of a refused request is written.
///
/// Version checks are evaluated before the appends, against the state the request found, as a
/// DynamoDB transaction evaluates every condition before writing anything.
pub(crate) fn append(
    conn: &Connection,
    request: &AppendRequest,
    now: Timestamp,
) -> Result<Vec<RecordedEvent>, AppendError> {
    for check in &request.checks {
        if current_version(conn, &check.stream)? != check.version {
            return Err(AppendError::Conflict {
                stream: check.stream.clone(),
            });
        }
    }
    let mut recorded = Vec::with_capacity(request.item_count());
    for append in &request.appends {
        if current_version(conn, &append.stream)? != append.expected_version {
            return Err(AppendError::Conflict {
                stream: append.stream.clone(),
            });
        }
        let mut version = append.expected_version;
        for new in &append.events {
            version += 1;
            insert_event(conn, &append.stream, version, new, now)?;
            recorded.push(RecordedEvent {
                stream: append.stream.clone(),
                version,
                event_id: new.event_id,
                recorded_at: now,
                event: new.event.clone(),
            });
        }
    }
    for claim in &request.claims {
        if let Some(existing) = claim_value(conn, &claim.key)? {
            return Err(AppendError::ClaimTaken {
                key: claim.key.clone(),
                existing,
            });
        }
        insert_claim(conn, &claim.key, &claim.value)?;
    }
    Ok(recorded)
}

const CURRENT_VERSION: &str =
    "SELECT version FROM events WHERE stream = ?1 ORDER BY version DESC LIMIT 1";

const CLAIM_VALUE: &str = "SELECT value FROM claims WHERE key = ?1";

/// The stream's highest version, 0 when empty: one lookup in the (stream, version) index.
pub(crate) fn current_version(conn: &Connection, stream: &StreamId) -> Result<u64, EmbeddedError> {
    let version: Option<i64> = conn
        .prepare_cached(CURRENT_VERSION)?
        .query_row(params![stream.as_str()], |row| row.get(0))
        .optional()?;
    version.map_or(Ok(0), from_sql)
}

/// The value stored under a claim.
pub(crate) fn claim_value(
    conn: &Connection,
    key: &str,
) -> Result<Option<serde_json::Value>, EmbeddedError> {
    let text: Option<String> = conn
        .prepare_cached(CLAIM_VALUE)?
        .query_row(params![key], |row| row.get(0))
        .optional()?;
    text.map(|text| from_json("claim value", &text)).transpose()
}

fn insert_event(
    conn: &Connection,
    stream: &StreamId,
    version: u64,
    new: &NewEvent,
    now: Timestamp,
) -> Result<(), EmbeddedError> {
    let stored = StoredEvent::encode(&new.event);
    let data = to_json("event data", &stored.data)?;
    conn.prepare_cached(
        "INSERT INTO events (stream, version, event_id, recorded_at, type, schema_version, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        stream.as_str(),
        to_sql(version),
        new.event_id.hyphenated().to_string(),
        now.micros(),
        stored.event_type,
        stored.schema_version,
        data,
    ])?;
    Ok(())
}

fn insert_claim(
    conn: &Connection,
    key: &str,
    value: &serde_json::Value,
) -> Result<(), EmbeddedError> {
    let value = to_json("claim value", value)?;
    conn.prepare_cached("INSERT INTO claims (key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_plan::{assert_indexed, events_db};

    #[test]
    fn condition_lookups_are_single_index_searches() {
        let conn = events_db();
        assert_indexed(&conn, CURRENT_VERSION);
        assert_indexed(&conn, CLAIM_VALUE);
    }
}
