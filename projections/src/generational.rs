//! The read store the server and the functions use: it routes each query to the live
//! generation of its projection and each change to the live generation and, while a replay
//! builds one, to the generation under construction too (so that events appended during a
//! rebuild are in the new generation when it is switched to). It re-reads the pointer at most
//! once per refresh interval, so a switch made by `replay` in another process takes effect
//! within that interval, with no restart.

use crate::catalog::GenerationCatalog;
use crate::generation::{GenerationMap, Projection};
use crate::{HistoryEntry, InboxEntry, PendingWork, ReadModelChange, ReadStore, ReadStoreError};
use async_trait::async_trait;
use messaging_events::{GroupId, Timestamp, UserId};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The pointer and the stores of every generation it refers to, as loaded at one time.
struct Snapshot {
    map: GenerationMap,
    stores: BTreeMap<u32, Arc<dyn ReadStore>>,
    loaded_at: Instant,
}

/// A read store over the generations of a [`GenerationCatalog`].
pub struct GenerationalReadStore {
    catalog: Arc<dyn GenerationCatalog>,
    refresh: Duration,
    snapshot: RwLock<Arc<Snapshot>>,
    reloading: tokio::sync::Mutex<()>,
}

impl GenerationalReadStore {
    /// Loads the pointer and opens the generations it refers to.
    pub async fn open(
        catalog: Arc<dyn GenerationCatalog>,
        refresh: Duration,
    ) -> Result<Self, ReadStoreError> {
        let snapshot = load(catalog.as_ref(), &BTreeMap::new()).await?;
        Ok(Self {
            catalog,
            refresh,
            snapshot: RwLock::new(Arc::new(snapshot)),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The pointer as this store last loaded it.
    pub fn generations(&self) -> GenerationMap {
        self.current().map.clone()
    }

    /// Re-reads the pointer now (tests, and after this process switched it).
    pub async fn reload(&self) -> Result<(), ReadStoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        let previous = self.current();
        let fresh = load(self.catalog.as_ref(), &previous.stores).await?;
        self.replace(fresh);
        Ok(())
    }

    fn current(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(snapshot) => snapshot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, fresh: Snapshot) {
        let fresh = Arc::new(fresh);
        match self.snapshot.write() {
            Ok(mut snapshot) => *snapshot = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    /// The snapshot to serve from, re-reading the pointer if it is older than the interval.
    async fn fresh(&self) -> Arc<Snapshot> {
        let snapshot = self.current();
        if snapshot.loaded_at.elapsed() < self.refresh {
            return snapshot;
        }
        let _one_at_a_time = self.reloading.lock().await;
        let snapshot = self.current();
        if snapshot.loaded_at.elapsed() < self.refresh {
            return snapshot;
        }
        match load(self.catalog.as_ref(), &snapshot.stores).await {
            Ok(fresh) => {
                if fresh.map != snapshot.map {
                    tracing::info!(
                        from = snapshot.map.version,
                        to = fresh.map.version,
                        "read-model generations changed"
                    );
                }
                self.replace(fresh);
                self.current()
            }
            Err(error) => {
                // Serving from the last known generations beats failing every query while the
                // pointer is unreadable; try again at the next interval.
                tracing::warn!(%error, "re-reading the read-model generations failed");
                self.replace(Snapshot {
                    map: snapshot.map.clone(),
                    stores: snapshot.stores.clone(),
                    loaded_at: Instant::now(),
                });
                snapshot
            }
        }
    }

    /// The live store of `projection`.
    async fn live(&self, projection: Projection) -> Result<Arc<dyn ReadStore>, ReadStoreError> {
        let snapshot = self.fresh().await;
        store_of(&snapshot, snapshot.map.current_of(projection))
    }
}

async fn load(
    catalog: &dyn GenerationCatalog,
    open: &BTreeMap<u32, Arc<dyn ReadStore>>,
) -> Result<Snapshot, ReadStoreError> {
    let map = catalog.load().await?;
    let mut stores = BTreeMap::new();
    for generation in map.referenced() {
        let store = match open.get(&generation) {
            Some(store) => store.clone(),
            None => catalog.open(generation).await?,
        };
        stores.insert(generation, store);
    }
    Ok(Snapshot {
        map,
        stores,
        loaded_at: Instant::now(),
    })
}

fn store_of(snapshot: &Snapshot, generation: u32) -> Result<Arc<dyn ReadStore>, ReadStoreError> {
    snapshot.stores.get(&generation).cloned().ok_or_else(|| {
        ReadStoreError::Unavailable(format!("read-model generation {generation} is not open"))
    })
}

#[async_trait]
impl ReadStore for GenerationalReadStore {
    async fn apply(&self, changes: &[ReadModelChange]) -> Result<(), ReadStoreError> {
        let snapshot = self.fresh().await;
        let mut by_generation: BTreeMap<u32, Vec<ReadModelChange>> = BTreeMap::new();
        for change in changes {
            let (current, building) = snapshot.map.targets(change);
            by_generation
                .entry(current)
                .or_default()
                .push(change.clone());
            if let Some(building) = building {
                by_generation
                    .entry(building)
                    .or_default()
                    .push(change.clone());
            }
        }
        for (generation, changes) in by_generation {
            store_of(&snapshot, generation)?.apply(&changes).await?;
        }
        Ok(())
    }

    async fn inbox_after(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, ReadStoreError> {
        self.live(Projection::Inbox)
            .await?
            .inbox_after(user, after, limit)
            .await
    }

    async fn history_after(
        &self,
        user: UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ReadStoreError> {
        self.live(Projection::History)
            .await?
            .history_after(user, after, limit)
            .await
    }

    async fn read_marker(&self, user: UserId) -> Result<u64, ReadStoreError> {
        self.live(Projection::ReadMarkers)
            .await?
            .read_marker(user)
            .await
    }

    async fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>, ReadStoreError> {
        self.live(Projection::Groups)
            .await?
            .group_members(group)
            .await
    }

    async fn blocked_by(&self, blocker: UserId) -> Result<Vec<UserId>, ReadStoreError> {
        self.live(Projection::Blocks)
            .await?
            .blocked_by(blocker)
            .await
    }

    async fn pending_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingWork>, ReadStoreError> {
        self.live(Projection::Pending)
            .await?
            .pending_before(before, limit)
            .await
    }
}
