//! Test support: proves that a query is answered from an index, never by a scan or a sort,
//! so that its cost stays bounded by its limit whatever the table's size.

use crate::schema::{Schema, EVENTS, READ};
use rusqlite::Connection;

/// An in-memory `events.sqlite3` schema.
pub(crate) fn events_db() -> Connection {
    db(&EVENTS)
}

/// An in-memory `read.sqlite3` schema.
pub(crate) fn read_db() -> Connection {
    db(&READ)
}

fn db(schema: &Schema) -> Connection {
    let conn = Connection::open_in_memory().expect("in-memory database");
    conn.execute_batch(schema.ddl).expect("schema");
    conn
}

/// Fails unless every step of `sql`'s plan searches an index.
pub(crate) fn assert_indexed(conn: &Connection, sql: &str) {
    let mut plan = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let mut rows = plan.raw_query();
    let mut steps = Vec::new();
    while let Some(row) = rows.next().expect("plan row") {
        steps.push(row.get::<_, String>(3).expect("detail"));
    }
    assert!(!steps.is_empty(), "no plan for {sql}");
    for step in &steps {
        assert!(
            step.starts_with("SEARCH") && !step.contains("TEMP B-TREE"),
            "{sql}\nis not answered from an index: {steps:?}"
        );
    }
}
