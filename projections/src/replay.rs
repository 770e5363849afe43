//! Replay: rebuilds read models from the event log into a fresh generation, and switches to it
//! or compares it with the live one.
//!
//! Safe while the system serves: the new generation is announced in the pointer first, and
//! replay waits `settle` (longer than the live stores' refresh interval) before it reads the
//! log, so every event is either in the log when the read starts or projected live into the
//! new generation as well. Projections are order-insensitive and idempotent (see
//! [`crate::project`]), so the two paths can interleave freely. Progress is checkpointed in the
//! pointer, so an interrupted replay resumes where it stopped.

use crate::catalog::{Dump, GenerationCatalog};
use crate::generation::{Building, GenerationMap, Projection, Purpose, SegmentProgress};
use crate::{project_batch, ReadModelChange, ReadStore, ReadStoreError};
use messaging_events::{EventLog, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How a replay runs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Events per log page (and per read-model write batch).
    pub page_size: usize,
    /// How long to wait after announcing a generation before reading the log; must exceed
    /// the refresh interval of every live read store.
    pub settle: Duration,
    /// How often progress is checkpointed in the pointer.
    pub checkpoint_every: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            page_size: 1_000,
            settle: Duration::from_secs(3),
            checkpoint_every: Duration::from_secs(2),
        }
    }
}

/// A progress report, sent at most once per checkpoint interval and at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Events applied, this run and earlier interrupted runs.
    pub events_done: u64,
    /// About how many events the log holds, if known.
    pub total: Option<u64>,
    /// Events per second in this run.
    pub per_second: f64,
    /// Estimated time left, if the total is known.
    pub eta: Option<Duration>,
}

/// Where progress reports go (the command line prints them).
pub type ProgressSink = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the event log failed.
    #[error("reading the event log: {0}")]
    Log(#[from] StoreError),
    /// Reading or writing read models or the pointer failed.
    #[error("read models: {0}")]
    ReadModels(#[from] ReadStoreError),
    /// Another replay is under way (or was interrupted) with other settings.
    #[error("{0}")]
    Busy(String),
    /// The pointer changed under this replay.
    #[error("the generation pointer changed during the replay: {0}")]
    Conflict(String),
}

/// What a finished rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    /// The generation now live for the rebuilt projections.
    pub generation: u32,
    /// Those projections.
    pub projections: BTreeSet<Projection>,
    /// Events applied (all runs).
    pub events: u64,
    /// Whether it resumed an interrupted run.
    pub resumed: bool,
    /// This run's duration.
    pub elapsed: Duration,
}

/// One item that differs between the live and the rebuilt read models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The projection.
    pub projection: Projection,
    /// The item's key.
    pub key: String,
    /// The live item (`None`: missing from the live read model).
    pub live: Option<String>,
    /// The item rebuilt from the events (`None`: the events do not produce it).
    pub rebuilt: Option<String>,
}

/// What a finished verification found.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Events replayed.
    pub events: u64,
    /// Items compared.
    pub items: usize,
    /// Every difference that persisted past a second look.
    pub differences: Vec<Difference>,
}

/// Replays the event log into the read models' generations.
pub struct Replay {
    log: Arc<dyn EventLog>,
    catalog: Arc<dyn GenerationCatalog>,
    options: ReplayOptions,
    progress: ProgressSink,
}

impl Replay {
    /// A replay of `log` into the generations of `catalog`.
    pub fn new(
        log: Arc<dyn EventLog>,
        catalog: Arc<dyn GenerationCatalog>,
        options: ReplayOptions,
        progress: ProgressSink,
    ) -> Self {
        Self {
            log,
            catalog,
            options,
            progress,
        }
    }

    /// Rebuilds `projections` into a fresh generation (or resumes an interrupted rebuild of
    /// the same projections) and switches them to it. The old generations are kept.
    pub async fn rebuild(
        &self,
        projections: BTreeSet<Projection>,
    ) -> Result<RebuildReport, ReplayError> {
        let started = Instant::now();
        let (building, resumed) = self.start(Purpose::Rebuild, &projections).await?;
        let events = self.fill(building.clone()).await?;
        let mut map = self.catalog.load().await?;
        self.check_ours(&map, &building)?;
        for projection in &projections {
            map.current.insert(*projection, building.generation);
        }
        map.building = None;
        self.save(&map).await?;
        tracing::info!(
            generation = building.generation,
            events,
            "switched to the rebuilt generation"
        );
        Ok(RebuildReport {
            generation: building.generation,
            projections,
            events,
            resumed,
            elapsed: started.elapsed(),
        })
    }

    /// Rebuilds `projections` into a scratch generation, compares it item by item with the
    /// live one, and drops it.
    pub async fn verify(
        &self,
        projections: BTreeSet<Projection>,
    ) -> Result<VerifyReport, ReplayError> {
        let (building, _) = self.start(Purpose::Verify, &projections).await?;
        let events = self.fill(building.clone()).await?;
        let map = self.catalog.load().await?;
        self.check_ours(&map, &building)?;
        let (items, first) = self.compare(&map, &building).await?;
        let differences = if first.is_empty() {
            first
        } else {
            // A live write may have landed in one generation and not yet in the other; only
            // what still differs after a pause is a real difference.
            tokio::time::sleep(self.options.settle).await;
            let (_, second) = self.compare(&map, &building).await?;
            first
                .into_iter()
                .filter(|difference| second.contains(difference))
                .collect()
        };
        self.abort().await?;
        Ok(VerifyReport {
            events,
            items,
            differences,
        })
    }

    /// Abandons the generation under construction, if any, and deletes it; returns its number.
    pub async fn abort(&self) -> Result<Option<u32>, ReplayError> {
        let mut map = self.catalog.load().await?;
        let Some(building) = map.building.take() else {
            return Ok(None);
        };
        self.save(&map).await?;
        // Live stores write to it until they re-read the pointer; dropping it under them would
        // only fail (and retry) their batches.
        tokio::time::sleep(self.options.settle).await;
        self.catalog.drop_generation(building.generation).await?;
        Ok(Some(building.generation))
    }

    /// Deletes every generation the pointer no longer refers to; returns their numbers.
    pub async fn drop_unused(&self) -> Result<Vec<u32>, ReplayError> {
        let unused: Vec<u32> = {
            let referenced = self.catalog.load().await?.referenced();
            let existing = self.catalog.existing().await?;
            existing
                .into_iter()
                .filter(|generation| !referenced.contains(generation))
                .collect()
        };
        if unused.is_empty() {
            return Ok(unused);
        }
        // A generation switched away from just now may still be read by live stores until they
        // re-read the pointer.
        tokio::time::sleep(self.options.settle).await;
        let referenced = self.catalog.load().await?.referenced();
        let mut dropped = Vec::new();
        for generation in unused {
            if !referenced.contains(&generation) {
                self.catalog.drop_generation(generation).await?;
                dropped.push(generation);
            }
        }
        Ok(dropped)
    }

    /// Announces a new generation (then waits for live stores to notice), or finds the
    /// interrupted one with the same purpose and projections.
    async fn start(
        &self,
        purpose: Purpose,
        projections: &BTreeSet<Projection>,
    ) -> Result<(Building, bool), ReplayError> {
        let mut map = self.catalog.load().await?;
        if let Some(building) = &map.building {
            if building.purpose == purpose && building.projections == *projections {
                tracing::info!(
                    generation = building.generation,
                    events_done = building.events_done,
                    "resuming an interrupted replay"
                );
                // Live stores may have restarted since; give them time to notice again.
                tokio::time::sleep(self.options.settle).await;
                return Ok((building.clone(), true));
            }
            return Err(ReplayError::Busy(format!(
                "generation {} is being built ({:?} of {}); run the same replay again to resume \
                 it, or `replay --abort` to abandon it",
                building.generation,
                building.purpose,
                names(&building.projections),
            )));
        }
        let generation = map.highest + 1;
        // A generation left by a crash before its announcement was saved holds stale rows.
        if self.catalog.existing().await?.contains(&generation) {
            self.catalog.drop_generation(generation).await?;
        }
        self.catalog.open(generation).await?;
        let building = Building {
            generation,
            purpose,
            projections: projections.clone(),
            segments: (0..self.log.segments())
                .map(|segment| (segment, SegmentProgress::default()))
                .collect(),
            events_done: 0,
        };
        map.highest = generation;
        map.building = Some(building.clone());
        self.save(&map).await?;
        tracing::info!(
            generation,
            ?purpose,
            "announced a new read-model generation"
        );
        tokio::time::sleep(self.options.settle).await;
        Ok((building, false))
    }

    /// Reads every segment of the log (in parallel) into the generation; returns the events
    /// applied over all runs.
    async fn fill(&self, building: Building) -> Result<u64, ReplayError> {
        let store = self.catalog.open(building.generation).await?;
        let total = self.log.estimated_count().await?;
        let shared = Arc::new(Shared {
            state: Mutex::new(building.clone()),
            started: Instant::now(),
            events_at_start: building.events_done,
            last_checkpoint: Mutex::new(Instant::now()),
        });
        let mut segments = JoinSet::new();
        for (segment, progress) in &building.segments {
            if progress.done {
                continue;
            }
            segments.spawn(fill_segment(
                self.log.clone(),
                store.clone(),
                *segment,
                progress.after.clone(),
                building.projections.clone(),
                self.options.page_size,
                shared.clone(),
            ));
        }
        let mut failure = None;
        while let Some(joined) = segments.join_next().await {
            let result = joined.unwrap_or_else(|error| {
                Err(ReplayError::Busy(format!("a segment task failed: {error}")))
            });
            if let Err(error) = result {
                failure.get_or_insert(error);
                segments.abort_all();
            }
            if failure.is_none() && shared.checkpoint_due(self.options.checkpoint_every) {
                self.checkpoint(&shared, total).await?;
            }
        }
        // Whatever was done is kept, so that a retry resumes after it.
        self.checkpoint(&shared, total).await?;
        match failure {
            Some(error) => Err(error),
            None => Ok(shared.snapshot().events_done),
        }
    }

    /// Stores the replay's progress in the pointer and reports it.
    async fn checkpoint(&self, shared: &Shared, total: Option<u64>) -> Result<(), ReplayError> {
        let state = shared.snapshot();
        let mut map = self.catalog.load().await?;
        self.check_ours(&map, &state)?;
        map.building = Some(state.clone());
        self.save(&map).await?;
        (self.progress)(&shared.progress(total));
        Ok(())
    }

    fn check_ours(&self, map: &GenerationMap, building: &Building) -> Result<(), ReplayError> {
        match &map.building {
            Some(stored) if stored.generation == building.generation => Ok(()),
            Some(stored) => Err(ReplayError::Conflict(format!(
                "generation {} is being built instead of {}",
                stored.generation, building.generation
            ))),
            None => Err(ReplayError::Conflict(format!(
                "generation {} was abandoned",
                building.generation
            ))),
        }
    }

    async fn save(&self, map: &GenerationMap) -> Result<(), ReplayError> {
        if self.catalog.save(map, map.version).await? {
            Ok(())
        } else {
            Err(ReplayError::Conflict(
                "another process wrote the pointer".into(),
            ))
        }
    }

    /// Compares the live generation of each rebuilt projection with the scratch one.
    async fn compare(
        &self,
        map: &GenerationMap,
        building: &Building,
    ) -> Result<(usize, Vec<Difference>), ReplayError> {
        let mut items = 0;
        let mut differences = Vec::new();
        for projection in &building.projections {
            let live = self
                .catalog
                .dump(map.current_of(*projection), *projection)
                .await?;
            let rebuilt = self.catalog.dump(building.generation, *projection).await?;
            items += live.len().max(rebuilt.len());
            differences.extend(diff(*projection, &live, &rebuilt));
        }
        Ok((items, differences))
    }
}

/// The differences between two dumps of one projection, in key order.
pub fn diff(projection: Projection, live: &Dump, rebuilt: &Dump) -> Vec<Difference> {
    let keys: BTreeSet<&String> = live.keys().chain(rebuilt.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (live, rebuilt) = (live.get(key), rebuilt.get(key));
            (live != rebuilt).then(|| Difference {
                projection,
                key: key.clone(),
                live: live.cloned(),
                rebuilt: rebuilt.cloned(),
            })
        })
        .collect()
}

/// The progress shared by the segment tasks.
struct Shared {
    state: Mutex<Building>,
    started: Instant,
    events_at_start: u64,
    last_checkpoint: Mutex<Instant>,
}

impl Shared {
    fn snapshot(&self) -> Building {
        match self.state.lock() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn record(&self, segment: u32, next: Option<String>, events: u64) {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.events_done += events;
        state.segments.insert(
            segment,
            SegmentProgress {
                done: next.is_none(),
                after: next,
            },
        );
    }

    fn checkpoint_due(&self, every: Duration) -> bool {
        let mut last = match self.last_checkpoint.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.elapsed() < every {
            return false;
        }
        *last = Instant::now();
        true
    }

    fn progress(&self, total: Option<u64>) -> Progress {
        let events_done = self.snapshot().events_done;
        let elapsed = self.started.elapsed().as_secs_f64();
        let this_run = events_done.saturating_sub(self.events_at_start) as f64;
        let per_second = if elapsed > 0.0 {
            this_run / elapsed
        } else {
            0.0
        };
        let eta = total.filter(|_| per_second > 0.0).map(|total| {
            Duration::from_secs_f64(total.saturating_sub(events_done) as f64 / per_second)
        });
        Progress {
            events_done,
            total,
            per_second,
            eta,
        }
    }
}

/// Replays one segment from `after` to its end.
async fn fill_segment(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadStore>,
    segment: u32,
    mut after: Option<String>,
    projections: BTreeSet<Projection>,
    page_size: usize,
    shared: Arc<Shared>,
) -> Result<(), ReplayError> {
    loop {
        let page = log.read_page(segment, after.as_deref(), page_size).await?;
        let changes: Vec<ReadModelChange> = project_batch(&page.events)
            .into_iter()
            .filter(|change| projections.contains(&Projection::of(change)))
            .collect();
        if !changes.is_empty() {
            store.apply(&changes).await?;
        }
        let events = u64::try_from(page.events.len()).unwrap_or(u64::MAX);
        shared.record(segment, page.next.clone(), events);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// Projection names, comma-separated.
pub fn names(projections: &BTreeSet<Projection>) -> String {
    projections
        .iter()
        .map(|projection| projection.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// Every projection, as a set.
pub fn all_projections() -> BTreeSet<Projection> {
    Projection::ALL.into_iter().collect()
}

/// The live generations, for `replay --status`.
pub fn describe(map: &GenerationMap) -> BTreeMap<&'static str, u32> {
    Projection::ALL
        .into_iter()
        .map(|projection| (projection.name(), map.current_of(projection)))
        .collect()
}
