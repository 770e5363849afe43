//! Read-model generations on disk: generation 0 is `read.sqlite3` (so existing data directories
//! keep their read models), generation N is `read-gN.sqlite3`, and the pointer is a row in
//! `generations.sqlite3`, written in a transaction conditional on its version, so that the
//! server and a `replay` process on the same data directory agree on it.

use crate::read_store::EmbeddedReadStore;
use crate::EmbeddedError;
use async_trait::async_trait;
use messaging_projections::{
    Dump, GenerationCatalog, GenerationMap, Projection, ReadStore, ReadStoreError,
};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The pointer's database file in the data directory.
const POINTER_FILE: &str = "generations.sqlite3";
/// The name of the pointer's row.
const READ_MODELS: &str = "read-models";
/// Waiting for the other process's transaction on the pointer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The generations of the embedded read models in one data directory.
pub struct EmbeddedCatalog {
    data_dir: PathBuf,
    pointer: Arc<Mutex<Connection>>,
    open: Mutex<HashMap<u32, Arc<EmbeddedReadStore>>>,
}

impl EmbeddedCatalog {
    /// The catalog of `data_dir`, reusing `generation_zero` (the `read.sqlite3` store that
    /// [`crate::Embedded::open`] opened) rather than opening that file twice.
    ///
    /// Blocking: opens the pointer's database.
    pub fn open(
        data_dir: &Path,
        generation_zero: Arc<EmbeddedReadStore>,
    ) -> Result<Self, EmbeddedError> {
        let conn = Connection::open(data_dir.join(POINTER_FILE))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS pointers (
                name    TEXT PRIMARY KEY,
                version INTEGER NOT NULL,
                map     TEXT NOT NULL
            ) WITHOUT ROWID;",
        )?;
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            pointer: Arc::new(Mutex::new(conn)),
            open: Mutex::new(HashMap::from([(0, generation_zero)])),
        })
    }

    /// The file holding `generation`.
    pub fn file_of(&self, generation: u32) -> PathBuf {
        match generation {
            0 => self.data_dir.join("read.sqlite3"),
            n => self.data_dir.join(format!("read-g{n}.sqlite3")),
        }
    }

    /// The embedded store of `generation` (opening it if needed), for tests that look inside.
    pub async fn store(&self, generation: u32) -> Result<Arc<EmbeddedReadStore>, ReadStoreError> {
        if let Some(store) = self.cached(generation) {
            return Ok(store);
        }
        let file = self.file_of(generation);
        let store = blocking(move || EmbeddedReadStore::open(&file)).await?;
        let store = Arc::new(store);
        let mut open = lock(&self.open);
        Ok(open.entry(generation).or_insert(store).clone())
    }

    fn cached(&self, generation: u32) -> Option<Arc<EmbeddedReadStore>> {
        lock(&self.open).get(&generation).cloned()
    }

    /// Runs `work` on the pointer's connection, off the async threads.
    async fn with_pointer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, EmbeddedError> + Send + 'static,
    ) -> Result<T, ReadStoreError> {
        let pointer = self.pointer.clone();
        blocking(move || work(&mut lock(&pointer))).await
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EmbeddedError> + Send + 'static,
) -> Result<T, ReadStoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ReadStoreError::Unavailable(format!("blocking task failed: {error}")))?
        .map_err(ReadStoreError::from)
}

fn decode(text: &str) -> Result<GenerationMap, EmbeddedError> {
    serde_json::from_str(text).map_err(|e| EmbeddedError::corrupt("generation pointer", e))
}

#[async_trait]
impl GenerationCatalog for EmbeddedCatalog {
    async fn load(&self) -> Result<GenerationMap, ReadStoreError> {
        self.with_pointer(|conn| {
            let row: Option<(i64, String)> = conn
                .query_row(
                    "SELECT version, map FROM pointers WHERE name = ?1",
                    params![READ_MODELS],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            match row {
                None => Ok(GenerationMap::default()),
                Some((version, text)) => {
                    let mut map = decode(&text)?;
                    map.version = u64::try_from(version)
                        .map_err(|e| EmbeddedError::corrupt("pointer version", e))?;
                    Ok(map)
                }
            }
        })
        .await
    }

    async fn save(&self, map: &GenerationMap, expected: u64) -> Result<bool, ReadStoreError> {
        let mut stored = map.clone();
        stored.version = expected + 1;
        let text = serde_json::to_string(&stored)
            .map_err(|e| ReadStoreError::Corrupt(format!("encoding the pointer: {e}")))?;
        let (expected, next) = (
            i64::try_from(expected).unwrap_or(i64::MAX),
            i64::try_from(stored.version).unwrap_or(i64::MAX),
        );
        self.with_pointer(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let found: Option<i64> = tx
                .query_row(
                    "SELECT version FROM pointers WHERE name = ?1",
                    params![READ_MODELS],
                    |row| row.get(0),
                )
                .optional()?;
            if found.unwrap_or(0) != expected {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO pointers (name, version, map) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET version = ?2, map = ?3",
                params![READ_MODELS, next, text],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn open(&self, generation: u32) -> Result<Arc<dyn ReadStore>, ReadStoreError> {
        let store: Arc<dyn ReadStore> = self.store(generation).await?;
        Ok(store)
    }

    async fn dump(&self, generation: u32, projection: Projection) -> Result<Dump, ReadStoreError> {
        let file = self.file_of(generation);
        blocking(move || dump(&file, projection)).await
    }

    async fn existing(&self) -> Result<Vec<u32>, ReadStoreError> {
        let dir = self.data_dir.clone();
        blocking(move || {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(|source| EmbeddedError::File {
                path: dir.clone(),
                source,
            })? {
                let entry = entry.map_err(|source| EmbeddedError::File {
                    path: dir.clone(),
                    source,
                })?;
                if let Some(generation) = entry.file_name().to_str().and_then(generation_of) {
                    found.push(generation);
                }
            }
            found.sort_unstable();
            Ok(found)
        })
        .await
    }

    async fn drop_generation(&self, generation: u32) -> Result<(), ReadStoreError> {
        lock(&self.open).remove(&generation);
        let file = self.file_of(generation);
        blocking(move || {
            for suffix in ["", "-wal", "-shm"] {
                let path = PathBuf::from(format!("{}{suffix}", file.display()));
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(EmbeddedError::File { path, source }),
                }
            }
            Ok(())
        })
        .await
    }
}

/// The generation a read-model file name holds, if it is one.
fn generation_of(file_name: &str) -> Option<u32> {
    if file_name == "read.sqlite3" {
        return Some(0);
    }
    file_name
        .strip_prefix("read-g")?
        .strip_suffix(".sqlite3")?
        .parse()
        .ok()
}

/// The tables of a projection, each with its number of primary-key columns (listed first).
fn tables(projection: Projection) -> &'static [(&'static str, usize)] {
    match projection {
        Projection::Users => &[("users", 1)],
        Projection::Blocks => &[("blocks", 2)],
        Projection::Groups => &[("\"groups\"", 1), ("memberships", 2)],
        Projection::Inbox => &[("inbox", 2)],
        Projection::History => &[("history", 2)],
        Projection::ReadMarkers => &[("read_markers", 1)],
        Projection::Pending => &[("pending", 1)],
    }
}

/// Every row of a projection: "table/key/key" → the other columns as a JSON array.
fn dump(file: &Path, projection: Projection) -> Result<Dump, EmbeddedError> {
    let conn = crate::connection::open_reader(file)?;
    let mut rows = BTreeMap::new();
    for (table, key_columns) in tables(projection) {
        let mut statement = conn.prepare(&format!("SELECT * FROM {table}"))?;
        let columns = statement.column_count();
        let mut query = statement.query([])?;
        while let Some(row) = query.next()? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                values.push(json_of(row.get_ref(index)?));
            }
            let rest = values.split_off(*key_columns);
            let key = std::iter::once(table.trim_matches('"').to_string())
                .chain(values.iter().map(|value| match value {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                }))
                .collect::<Vec<_>>()
                .join("/");
            rows.insert(key, serde_json::Value::Array(rest).to_string());
        }
    }
    Ok(rows)
}

fn json_of(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(n) => n.into(),
        ValueRef::Real(x) => x.into(),
        ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned().into(),
        ValueRef::Blob(bytes) => format!("{bytes:?}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_files_are_recognised() {
        assert_eq!(generation_of("read.sqlite3"), Some(0));
        assert_eq!(generation_of("read-g12.sqlite3"), Some(12));
        assert_eq!(generation_of("read-g12.sqlite3-wal"), None);
        assert_eq!(generation_of("events.sqlite3"), None);
        assert_eq!(generation_of("generations.sqlite3"), None);
    }
}
