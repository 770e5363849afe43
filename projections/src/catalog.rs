//! The generations port: where the pointer lives and how a generation's store is opened,
//! listed, dumped for comparison and dropped. The embedded adapter keeps a generation in a
//! file, the DynamoDB adapter in a set of tables named for it.

use crate::generation::{GenerationMap, Projection};
use crate::{ReadStore, ReadStoreError};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every row of one projection in one generation: a canonical key → a canonical value, so
/// that two generations of the same backend compare item by item.
pub type Dump = BTreeMap<String, String>;

/// The generations of the read models, and the pointer between them.
#[async_trait]
pub trait GenerationCatalog: Send + Sync {
    /// The current pointer (a fresh deployment's is [`GenerationMap::default`]).
    async fn load(&self) -> Result<GenerationMap, ReadStoreError>;

    /// Stores `map` with version `expected + 1` if the stored pointer still has version
    /// `expected`; `Ok(false)` if it changed meanwhile (another replay).
    async fn save(&self, map: &GenerationMap, expected: u64) -> Result<bool, ReadStoreError>;

    /// The read store of `generation`, creating its tables or file if missing. Opening the
    /// same generation twice gives stores over the same data.
    async fn open(&self, generation: u32) -> Result<Arc<dyn ReadStore>, ReadStoreError>;

    /// Every row of `projection` in `generation` (an admin read: a full scan).
    async fn dump(&self, generation: u32, projection: Projection) -> Result<Dump, ReadStoreError>;

    /// The generations that exist in storage.
    async fn existing(&self) -> Result<Vec<u32>, ReadStoreError>;

    /// Deletes a generation's data for good.
    async fn drop_generation(&self, generation: u32) -> Result<(), ReadStoreError>;
}
