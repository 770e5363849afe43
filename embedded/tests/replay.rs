//! Replay on the embedded store: the event log in pages, the generations on disk, a rebuild
//! that resumes after an interruption, and an event stored in an old schema version.

mod common;

use async_trait::async_trait;
use common::{open, read_event, stream};
use messaging_embedded::{Embedded, EmbeddedCatalog};
use messaging_events::{
    AppendRequest, Event, EventLog, EventStore, LogPage, StoreError, StreamId, UserId,
};
use messaging_projections::replay::{all_projections, Progress, Replay, ReplayOptions};
use messaging_projections::{GenerationCatalog, Projection, Projector};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn catalog(dir: &std::path::Path, embedded: &Embedded) -> Arc<EmbeddedCatalog> {
    Arc::new(EmbeddedCatalog::open(dir, embedded.read.clone()).expect("the catalog opens"))
}

fn options() -> ReplayOptions {
    ReplayOptions {
        page_size: 7,
        settle: Duration::ZERO,
        checkpoint_every: Duration::ZERO,
    }
}

fn quiet() -> Arc<dyn Fn(&Progress) + Send + Sync> {
    Arc::new(|_: &Progress| {})
}

/// Appends `n` read-marker events, one stream each, and projects them live into generation 0.
async fn workload(embedded: &Embedded, n: u64) {
    let projector = Projector::new(embedded.read.clone());
    for up_to in 1..=n {
        let recorded = embedded
            .events
            .append(AppendRequest::single(stream(), 0, vec![read_event(up_to)]))
            .await
            .expect("appended");
        projector.handle(&recorded).await.expect("projected");
    }
}

#[tokio::test]
async fn the_log_is_read_in_commit_order_in_pages_that_resume() {
    let (_dir, embedded) = open();
    workload(&embedded, 25).await;
    let log = embedded.events.clone();
    assert_eq!(log.segments(), 1);
    assert_eq!(log.estimated_count().await.expect("count"), Some(25));

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = log
            .read_page(0, after.as_deref(), 10)
            .await
            .expect("a page");
        pages += 1;
        seen.extend(page.events.iter().map(|event| event.recorded_at));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "commit order");
    assert_eq!(pages, 3);

    let first = log.read_page(0, None, 20).await.expect("a page");
    let resumed = log
        .read_page(0, first.next.as_deref(), 20)
        .await
        .expect("the rest");
    assert_eq!(resumed.events.len(), 5);
    assert_eq!(resumed.next, None);
    assert!(log.read_page(0, Some("nonsense"), 5).await.is_err());
}

#[tokio::test]
async fn verify_is_clean_then_a_deleted_row_is_found_and_rebuild_repairs_it() {
    let (dir, embedded) = open();
    workload(&embedded, 30).await;
    let catalog = catalog(dir.path(), &embedded);
    let replay = Replay::new(embedded.events.clone(), catalog.clone(), options(), quiet());

    let report = replay.verify(all_projections()).await.expect("verifies");
    assert_eq!(report.events, 30);
    assert_eq!(report.items, 30);
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert_eq!(
        catalog.existing().await.expect("listed"),
        vec![0],
        "scratch dropped"
    );

    let conn = rusqlite::Connection::open(dir.path().join("read.sqlite3")).expect("opens");
    let deleted = conn
        .execute(
            "DELETE FROM read_markers WHERE user = (SELECT user FROM read_markers LIMIT 1)",
            [],
        )
        .expect("deleted");
    assert_eq!(deleted, 1);

    let report = replay.verify(all_projections()).await.expect("verifies");
    assert_eq!(report.differences.len(), 1, "{:?}", report.differences);
    let difference = &report.differences[0];
    assert_eq!(difference.projection, Projection::ReadMarkers);
    assert_eq!(difference.live, None);
    assert!(difference.rebuilt.is_some());

    let rebuilt = replay.rebuild(all_projections()).await.expect("rebuilds");
    assert_eq!(
        rebuilt.generation, 3,
        "generations 1 and 2 were the two scratch ones"
    );
    let map = catalog.load().await.expect("loads");
    assert!(Projection::ALL.iter().all(|p| map.current_of(*p) == 3));
    assert!(replay
        .verify(all_projections())
        .await
        .expect("verifies")
        .differences
        .is_empty());

    assert_eq!(replay.drop_unused().await.expect("drops"), vec![0]);
    assert_eq!(catalog.existing().await.expect("listed"), vec![3]);
}

/// A log that fails once after `pages` pages, as a crash or a throttled scan would.
struct Interrupted {
    inner: Arc<dyn EventLog>,
    pages_left: AtomicUsize,
}

#[async_trait]
impl EventLog for Interrupted {
    fn segments(&self) -> u32 {
        self.inner.segments()
    }

    async fn estimated_count(&self) -> Result<Option<u64>, StoreError> {
        self.inner.estimated_count().await
    }

    async fn read_page(
        &self,
        segment: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, StoreError> {
        if self.pages_left.fetch_sub(1, Ordering::SeqCst) == 0 {
            return Err(StoreError::Unavailable("interrupted".into()));
        }
        self.inner.read_page(segment, after, limit).await
    }
}

#[tokio::test]
async fn an_interrupted_rebuild_resumes_from_its_checkpoint() {
    let (dir, embedded) = open();
    workload(&embedded, 40).await;
    let catalog = catalog(dir.path(), &embedded);
    let interrupted = Arc::new(Interrupted {
        inner: embedded.events.clone(),
        pages_left: AtomicUsize::new(3),
    });
    let projections = BTreeSet::from([Projection::ReadMarkers]);

    let failed = Replay::new(interrupted, catalog.clone(), options(), quiet())
        .rebuild(projections.clone())
        .await;
    assert!(failed.is_err());
    let building = catalog
        .load()
        .await
        .expect("loads")
        .building
        .expect("the rebuild is still under way");
    assert_eq!(
        building.events_done, 21,
        "three pages of seven were checkpointed"
    );

    let other = Replay::new(embedded.events.clone(), catalog.clone(), options(), quiet())
        .rebuild(all_projections())
        .await;
    assert!(other.is_err(), "a different rebuild must not take over");

    let report = Replay::new(embedded.events.clone(), catalog.clone(), options(), quiet())
        .rebuild(projections)
        .await
        .expect("resumes");
    assert!(report.resumed);
    assert_eq!(report.events, 40);
    let map = catalog.load().await.expect("loads");
    assert_eq!(map.current_of(Projection::ReadMarkers), report.generation);
    assert_eq!(
        map.current_of(Projection::Inbox),
        0,
        "other projections untouched"
    );
    assert_eq!(
        catalog
            .dump(report.generation, Projection::ReadMarkers)
            .await
            .expect("dump"),
        catalog
            .dump(0, Projection::ReadMarkers)
            .await
            .expect("dump"),
    );
}

#[tokio::test]
async fn replay_reads_an_event_stored_with_schema_version_1() {
    let (dir, embedded) = open();
    let user = UserId::new_random();
    let conn = rusqlite::Connection::open(dir.path().join("events.sqlite3")).expect("opens");
    conn.execute(
        "INSERT INTO events (stream, version, event_id, recorded_at, type, schema_version, data)
         VALUES (?1, 1, ?2, 1, 'UserRegistered', 1, ?3)",
        rusqlite::params![
            StreamId::user(user).as_str(),
            uuid::Uuid::new_v4().to_string(),
            json!({"user_id": user, "name": "Grace"}).to_string()
        ],
    )
    .expect("inserted");
    let page = embedded
        .events
        .read_page(0, None, 10)
        .await
        .expect("a page");
    assert_eq!(
        page.events[0].event,
        Event::UserRegistered {
            user_id: user,
            display_name: Some("Grace".into())
        }
    );

    let catalog = catalog(dir.path(), &embedded);
    let report = Replay::new(embedded.events.clone(), catalog.clone(), options(), quiet())
        .rebuild(BTreeSet::from([Projection::Users]))
        .await
        .expect("rebuilds");
    let users = catalog
        .dump(report.generation, Projection::Users)
        .await
        .expect("dump");
    assert_eq!(
        users.get(&format!("users/{user}")).map(String::as_str),
        Some(r#"["Grace"]"#)
    );
}
