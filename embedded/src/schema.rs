//! The tables of the two database files. `user_version` records which schema a file has, so a
//! later build can migrate it and an older build refuses a file it does not understand.

/// A database file's schema: its version and the statements that create it.
pub(crate) struct Schema {
    /// Stored in `PRAGMA user_version`.
    pub version: i64,
    /// Idempotent DDL (`IF NOT EXISTS`).
    pub ddl: &'static str,
}

/// `events.sqlite3`: the write side (events, claims), the change-feed checkpoints and the queues.
pub(crate) const EVENTS: Schema = Schema {
    version: 1,
    ddl: "
-- seq is the feed's position: rowids from MAX(seq) + 1, never reused since events are never
-- deleted, so AUTOINCREMENT (a sqlite_sequence update per event) would add nothing. Files made
-- before this had it; both behave the same.
CREATE TABLE IF NOT EXISTS events (
    seq            INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_id       TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE IF NOT EXISTS claims (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer TEXT PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue_messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL
);
-- Receive walks a queue in id order and skips the few in-flight messages at its head.
CREATE INDEX IF NOT EXISTS queue_messages_by_queue ON queue_messages (queue, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id            INTEGER PRIMARY KEY,
    queue         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    receive_count INTEGER NOT NULL,
    reason        TEXT    NOT NULL,
    dead_at       INTEGER NOT NULL
);
",
};

/// `read.sqlite3`: the read models, written only by projectors.
pub(crate) const READ: Schema = Schema {
    version: 1,
    ddl: "
CREATE TABLE IF NOT EXISTS inbox (
    user     TEXT    NOT NULL,
    position INTEGER NOT NULL,
    message  TEXT    NOT NULL,
    PRIMARY KEY (user, position)
);
CREATE TABLE IF NOT EXISTS history (
    user     TEXT NOT NULL,
    sort_key TEXT NOT NULL,
    message  TEXT NOT NULL,
    PRIMARY KEY (user, sort_key)
);
CREATE TABLE IF NOT EXISTS read_markers (
    user  TEXT PRIMARY KEY,
    up_to INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    user         TEXT PRIMARY KEY,
    display_name TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS \"groups\" (
    group_id TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    admin    TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memberships (
    group_id TEXT    NOT NULL,
    user     TEXT    NOT NULL,
    member   INTEGER NOT NULL,
    version  INTEGER NOT NULL,
    PRIMARY KEY (group_id, user)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    blocker TEXT    NOT NULL,
    blocked TEXT    NOT NULL,
    active  INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked)
) WITHOUT ROWID;
-- accepted_at and work are NULL for a message settled before its Pending arrived.
CREATE TABLE IF NOT EXISTS pending (
    message_id  TEXT PRIMARY KEY,
    accepted_at INTEGER,
    settled     INTEGER NOT NULL,
    work        TEXT
);
-- The re-enqueue sweep reads only unsettled work, oldest first; settled rows stay out of it.
CREATE INDEX IF NOT EXISTS pending_unsettled ON pending (accepted_at) WHERE settled = 0;
",
};
