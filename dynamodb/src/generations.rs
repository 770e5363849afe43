//! Read-model generations on DynamoDB: generation 0 is today's read tables (`{prefix}inbox`, …,
//! so existing deployments keep their data), generation N ≥ 1 is the same set of tables named
//! `{prefix}gN-inbox`, …, and the pointer is one item of the `{prefix}generations` table,
//! written with a condition on its version so that concurrent replays cannot both win.
//!
//! A generation exists when its inbox table exists (tables are created together and the inbox
//! is the first one [`crate::read_table_names`] lists). A prefix that is itself another
//! deployment's prefix plus `gN-` would be mistaken for one of its generations: give stacks
//! prefixes that do not extend one another.

use crate::read_tables::{
    create_keyed_table, key_attributes, BLOCKS, GROUPS, HISTORY, INBOX, MEMBERSHIPS, PENDING,
    READ_MARKERS, USERS,
};
use crate::ResourceNames;
use crate::{create_read_tables, read_table_names, AwsClients, DynamoReadStore, ReadError};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use messaging_projections::{
    Dump, GenerationCatalog, GenerationMap, Projection, ReadStore, ReadStoreError,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A DynamoDB item or key as the SDK holds it.
type Item = HashMap<String, AttributeValue>;

/// The suffix of the pointer's table under the prefix.
const GENERATIONS: &str = "generations";
/// The pointer table's hash key.
const NAME: &str = "name";
/// The pointer's item (one per deployment; the key leaves room for other pointers).
const READ_MODELS: &str = "read-models";
/// The pointer's version attribute (also inside the JSON, but this one is what conditions test).
const VERSION: &str = "version";
/// The pointer's `GenerationMap` as JSON text.
const MAP: &str = "map";
/// How long a dropped generation's tables may take to disappear (AWS deletes in the background).
const DELETE_TIMEOUT: Duration = Duration::from_secs(300);

/// The table holding the generation pointer.
pub fn generations_table(names: &ResourceNames) -> String {
    names.name(GENERATIONS)
}

/// The names of `generation`'s read tables: `names` itself for generation 0, names under
/// `{prefix}gN-` for the others (only their read tables are used).
pub fn generation_names(names: &ResourceNames, generation: u32) -> ResourceNames {
    match generation {
        0 => names.clone(),
        n => ResourceNames::new(format!("{}g{n}-", names.prefix)),
    }
}

/// Creates the pointer's table if it is missing and waits until it is usable. Idempotent, like
/// [`create_read_tables`]. A deployment without a pointer item has every read model in
/// generation 0, so nothing else needs writing.
pub async fn create_generations_table(
    clients: &AwsClients,
    names: &ResourceNames,
) -> Result<(), ReadError> {
    create_keyed_table(clients, &generations_table(names), NAME).await
}

/// The generations of the read models of one deployment (one prefix).
pub struct DynamoCatalog {
    clients: AwsClients,
    names: ResourceNames,
    pointer_table: String,
    /// Whether [`GenerationCatalog::open`] creates missing tables (see [`DynamoCatalog::serving`]).
    create_tables: bool,
    /// Stores already opened, so that every caller shares one per generation.
    open: Mutex<HashMap<u32, Arc<DynamoReadStore>>>,
}

impl DynamoCatalog {
    /// The catalog of the deployment named by `names`; opening a generation creates its tables
    /// if they are missing (replay, the local server, tests).
    pub fn new(clients: &AwsClients, names: &ResourceNames) -> Self {
        Self {
            clients: clients.clone(),
            names: names.clone(),
            pointer_table: generations_table(names),
            create_tables: true,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The catalog for the functions that serve requests: opening a generation trusts that its
    /// tables exist, which holds for every generation the pointer refers to (generation 0 is
    /// the stack's, and a replay creates a generation before it announces it). So a cold start
    /// makes no `DescribeTable` calls and the functions' roles need no table-management rights.
    pub fn serving(clients: &AwsClients, names: &ResourceNames) -> Self {
        Self {
            create_tables: false,
            ..Self::new(clients, names)
        }
    }

    /// The DynamoDB store of `generation` (opening it if needed), for callers that need more
    /// than the [`ReadStore`] port, e.g. its request count.
    pub async fn store(&self, generation: u32) -> Result<Arc<DynamoReadStore>, ReadStoreError> {
        if let Some(store) = lock(&self.open).get(&generation) {
            return Ok(store.clone());
        }
        let names = generation_names(&self.names, generation);
        if self.create_tables {
            create_read_tables(&self.clients, &names).await?;
        }
        let store = Arc::new(DynamoReadStore::new(&self.clients, &names));
        // Another task may have opened it meanwhile; keep the first so that all share one.
        Ok(lock(&self.open).entry(generation).or_insert(store).clone())
    }

    fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.clients.dynamodb
    }

    fn pointer_key(&self) -> Item {
        HashMap::from([(NAME.to_string(), AttributeValue::S(READ_MODELS.into()))])
    }

    /// Every item of table `name`, in pages; consistent, so that a dump taken after a write
    /// has it.
    async fn scan_all(&self, name: &str) -> Result<Vec<Item>, ReadError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client()
                .scan()
                .table_name(name)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| ReadError::request("dynamodb.Scan", e))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Waits until table `name` is gone, so that a generation of the same number can be
    /// created again right away (AWS refuses to create a table while one of its name is
    /// still being deleted).
    async fn wait_until_deleted(&self, name: &str) -> Result<(), ReadError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match self.client().describe_table().table_name(name).send().await {
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    return Ok(())
                }
                Err(error) => return Err(ReadError::request("dynamodb.DescribeTable", error)),
                Ok(_) if started.elapsed() > DELETE_TIMEOUT => {
                    return Err(ReadError::Resource {
                        resource: name.to_string(),
                        detail: format!("still there {DELETE_TIMEOUT:?} after its deletion"),
                    })
                }
                Ok(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map is only ever inserted into or removed from whole; a panic elsewhere cannot
    // leave it half-updated.
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The read tables (suffixes) holding `projection`.
fn tables(projection: Projection) -> &'static [&'static str] {
    match projection {
        Projection::Users => &[USERS],
        Projection::Blocks => &[BLOCKS],
        Projection::Groups => &[GROUPS, MEMBERSHIPS],
        Projection::Inbox => &[INBOX],
        Projection::History => &[HISTORY],
        Projection::ReadMarkers => &[READ_MARKERS],
        Projection::Pending => &[PENDING],
    }
}

/// The generation a table name of this deployment belongs to, if it is a generation's inbox.
fn generation_of(prefix: &str, table: &str) -> Option<u32> {
    let rest = table.strip_prefix(prefix)?;
    if rest == INBOX {
        return Some(0);
    }
    let digits = rest
        .strip_prefix('g')?
        .strip_suffix(INBOX)?
        .strip_suffix('-')?;
    let generation: u32 = digits.parse().ok()?;
    // Only the spelling generation_names produces ("g1-", not "g01-" or "g+1-"), so that a
    // listed generation can be dropped by its number.
    (generation > 0 && generation.to_string() == digits).then_some(generation)
}

/// The text of a key attribute, as it appears in a dump key.
fn key_text(item: &Item, attribute: &str) -> Result<String, ReadError> {
    match item.get(attribute) {
        Some(AttributeValue::S(text)) | Some(AttributeValue::N(text)) => Ok(text.clone()),
        Some(other) => Err(ReadError::corrupt(
            "read-model key",
            format!("{attribute} is {other:?}"),
        )),
        None => Err(ReadError::corrupt(
            "read-model key",
            format!("{attribute} is missing"),
        )),
    }
}

/// One item as a dump entry: "table/hash[/range]" → the whole item as JSON with sorted keys.
///
/// Every attribute is kept: the read store writes nothing that depends on the time of the
/// write or the order of writes (see `read_store::writes`: items are built from the change
/// alone, and conditional writes keep the same winner whatever the order), so two generations
/// projected from the same events hold byte-identical items.
fn dump_entry(
    table: &str,
    (hash, range): (&str, Option<&str>),
    item: Item,
) -> Result<(String, String), ReadError> {
    let mut key = format!("{table}/{}", key_text(&item, hash)?);
    if let Some(range) = range {
        key.push('/');
        key.push_str(&key_text(&item, range)?);
    }
    // A BTreeMap at the top, whatever serde_json's map type is built as, so that attribute
    // order does not depend on the SDK's HashMap; the attributes are scalars (JSON is stored
    // as text), so there are no nested maps to order.
    let value: BTreeMap<String, serde_json::Value> =
        serde_dynamo::from_item(item).map_err(|e| ReadError::corrupt("read-model item", e))?;
    let value =
        serde_json::to_string(&value).map_err(|e| ReadError::corrupt("read-model item", e))?;
    Ok((key, value))
}

#[async_trait]
impl GenerationCatalog for DynamoCatalog {
    async fn load(&self) -> Result<GenerationMap, ReadStoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(&self.pointer_table)
            .set_key(Some(self.pointer_key()))
            // The pointer decides where writes go: a stale read could miss a new generation.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| ReadError::request("dynamodb.GetItem", e))?;
        let Some(item) = output.item else {
            return Ok(GenerationMap::default());
        };
        let text = match item.get(MAP) {
            Some(AttributeValue::S(text)) => text,
            _ => {
                return Err(ReadError::corrupt("generation pointer", "no map text").into());
            }
        };
        let mut map: GenerationMap =
            serde_json::from_str(text).map_err(|e| ReadError::corrupt("generation pointer", e))?;
        map.version = match item.get(VERSION) {
            Some(AttributeValue::N(number)) => number
                .parse()
                .map_err(|e| ReadError::corrupt("generation pointer version", e))?,
            _ => {
                return Err(ReadError::corrupt("generation pointer", "no version number").into());
            }
        };
        Ok(map)
    }

    async fn save(&self, map: &GenerationMap, expected: u64) -> Result<bool, ReadStoreError> {
        let mut stored = map.clone();
        stored.version = expected + 1;
        let text = serde_json::to_string(&stored)
            .map_err(|e| ReadError::corrupt("generation pointer", e))?;
        let mut item = self.pointer_key();
        item.insert(
            VERSION.into(),
            AttributeValue::N(stored.version.to_string()),
        );
        item.insert(MAP.into(), AttributeValue::S(text));
        // No item counts as version 0 (a fresh deployment), as in `load`.
        let condition = if expected == 0 {
            "attribute_not_exists(#v) OR #v = :expected"
        } else {
            "#v = :expected"
        };
        let result = self
            .client()
            .put_item()
            .table_name(&self.pointer_table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(ReadError::request("dynamodb.PutItem", error).into()),
        }
    }

    async fn open(&self, generation: u32) -> Result<Arc<dyn ReadStore>, ReadStoreError> {
        let store: Arc<dyn ReadStore> = self.store(generation).await?;
        Ok(store)
    }

    async fn dump(&self, generation: u32, projection: Projection) -> Result<Dump, ReadStoreError> {
        let names = generation_names(&self.names, generation);
        let mut dump = Dump::new();
        for table in tables(projection) {
            let keys = key_attributes(table).ok_or_else(|| {
                ReadStoreError::Corrupt(format!("no key schema for read table {table}"))
            })?;
            for item in self.scan_all(&names.name(table)).await? {
                let (key, value) = dump_entry(table, keys, item)?;
                dump.insert(key, value);
            }
        }
        Ok(dump)
    }

    async fn existing(&self) -> Result<Vec<u32>, ReadStoreError> {
        let mut found = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = self
                .client()
                .list_tables()
                .set_exclusive_start_table_name(start)
                .send()
                .await
                .map_err(|e| ReadError::request("dynamodb.ListTables", e))?;
            found.extend(
                page.table_names()
                    .iter()
                    .filter_map(|table| generation_of(&self.names.prefix, table)),
            );
            match page.last_evaluated_table_name {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    async fn drop_generation(&self, generation: u32) -> Result<(), ReadStoreError> {
        lock(&self.open).remove(&generation);
        let tables = read_table_names(&generation_names(&self.names, generation));
        for table in &tables {
            match self.client().delete_table().table_name(table).send().await {
                Ok(_) => {}
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) => {}
                Err(error) => return Err(ReadError::request("dynamodb.DeleteTable", error).into()),
            }
        }
        // AWS deletes tables in the background; the tables go together, so waiting for each
        // in turn takes about as long as the slowest.
        for table in &tables {
            self.wait_until_deleted(table).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tables_are_recognised_by_their_inbox() {
        let prefix = "app-";
        assert_eq!(generation_of(prefix, "app-inbox"), Some(0));
        assert_eq!(generation_of(prefix, "app-g12-inbox"), Some(12));
        assert_eq!(generation_of(prefix, "app-g12-history"), None);
        assert_eq!(generation_of(prefix, "app-g01-inbox"), None);
        assert_eq!(generation_of(prefix, "app-g+1-inbox"), None);
        assert_eq!(generation_of(prefix, "app-g0-inbox"), None);
        assert_eq!(generation_of(prefix, "app-events"), None);
        assert_eq!(generation_of(prefix, "other-inbox"), None);
    }

    #[test]
    fn generation_names_keep_generation_zero_as_it_was() {
        let names = ResourceNames::new("app-");
        assert_eq!(generation_names(&names, 0).name(INBOX), "app-inbox");
        assert_eq!(generation_names(&names, 3).name(INBOX), "app-g3-inbox");
        for generation in [0, 1, 7, 123] {
            let inbox = generation_names(&names, generation).name(INBOX);
            assert_eq!(generation_of("app-", &inbox), Some(generation));
        }
    }

    #[test]
    fn a_dump_entry_is_keyed_by_table_and_key_and_sorted() {
        let item = HashMap::from([
            ("user".to_string(), AttributeValue::S("u1".into())),
            ("position".to_string(), AttributeValue::N("7".into())),
            ("message".to_string(), AttributeValue::S("{}".into())),
        ]);
        let (key, value) = dump_entry(INBOX, ("user", Some("position")), item).expect("an entry");
        assert_eq!(key, "inbox/u1/7");
        assert_eq!(value, r#"{"message":"{}","position":7,"user":"u1"}"#);
    }
}
