//! Opening SQLite connections with the settings durability depends on.

use crate::schema::Schema;
use crate::EmbeddedError;
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for a lock held by another connection before giving up with
/// `SQLITE_BUSY` (reported as unavailable, so the caller retries).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A writer's page cache, in KiB (a negative `cache_size` means KiB).
#[derive(Debug, Clone, Copy)]
pub(crate) enum CacheSize {
    /// For many small commits: SQLite walks the whole cache's hash table at the end of each
    /// write transaction, so a large cache costs every commit (a sixth of the send rate at
    /// 64 MiB).
    Small = -8_192,
    /// For large batches over random keys (projections, a replay rebuild), which spend their
    /// time re-reading index pages with a small one. 32 MiB, not 64: the server's resident
    /// memory stays under 150 MB through a 10-minute soak (155 MiB at 64).
    Large = -32_768,
}

/// Opens the single writing connection of a database file, creating the file and its tables.
pub(crate) fn open_writer(
    path: &Path,
    schema: &Schema,
    cache: CacheSize,
) -> Result<Connection, EmbeddedError> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(EmbeddedError::Setup(format!(
            "{}: journal_mode is {mode}, WAL is required",
            path.display()
        )));
    }
    // The writer touches index pages all over the file (random UUID keys).
    conn.pragma_update(None, "cache_size", cache as i64)?;
    // The checkpointer thread copies the log back instead (see `checkpointer`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // When the log starts over, its file is cut back to this (bytes), not left at its peak.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    migrate(&conn, path, schema)?;
    Ok(conn)
}

/// Opens the connection that checkpoints a file for its writer (see `checkpointer`).
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, EmbeddedError> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    Ok(conn)
}

/// Opens a connection that only reads; WAL lets it read while the writer commits.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, EmbeddedError> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<(), EmbeddedError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL syncs the WAL on every commit: an acknowledged write survives a power cut.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn migrate(conn: &Connection, path: &Path, schema: &Schema) -> Result<(), EmbeddedError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > schema.version {
        return Err(EmbeddedError::SchemaFromTheFuture {
            path: path.to_path_buf(),
            found,
            known: schema.version,
        });
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {} PRAGMA user_version = {}; COMMIT;",
        schema.ddl, schema.version
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    fn compile_options() -> Vec<String> {
        let conn = Connection::open_in_memory().expect("in-memory database");
        let mut statement = conn.prepare("PRAGMA compile_options").expect("prepare");
        let options = statement
            .query_map([], |row| row.get::<_, String>(0))
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows");
        options
    }

    /// `.cargo/config.toml` builds SQLite without the process-wide page-cache lock; a build that
    /// lost the setting (run from outside the workspace, a changed variable) would run but slower.
    #[test]
    fn sqlite_is_built_with_one_page_cache_per_connection_and_no_memory_statistics() {
        let options = compile_options();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "SQLite built with ENABLE_MEMORY_MANAGEMENT: {options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "SQLite built with memory statistics: {options:?}"
        );
    }
}
