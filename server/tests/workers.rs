//! The background loops on a real embedded store: accepted work that never reached a queue
//! (the process died between append and enqueue) is found and delivered after a restart.

use messaging_embedded::Embedded;
use messaging_events::{
    AppendRequest, Clock, Event, EventStore, Limits, MessageId, NewEvent, StreamId, SystemClock,
    Timestamp, UserId,
};
use messaging_projections::ReadStore;
use messaging_server::{worker_deps, Config, Workers};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path) -> Config {
    Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        limits: Limits::default(),
        sweep_after: Duration::from_secs(30),
        backend: messaging_server::Backend::Embedded,
        // Everything else (the rate limit, ...) as configured by default.
        ..Config::from_lookup(|_| None).expect("the defaults are valid")
    }
}

#[tokio::test]
async fn given_work_appended_but_never_enqueued_when_the_workers_start_then_it_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (sender, receiver) = (UserId::new_random(), UserId::new_random());
    let message_id = MessageId::new_random();

    // A previous process appended the message and died before enqueuing it.
    {
        let embedded = Embedded::open(dir.path()).unwrap();
        let sent = Event::DirectMessageSent {
            message_id,
            sender,
            receiver,
            text: "survives".into(),
            sent_at: clock.now(),
            blocks_version: 0,
        };
        embedded
            .events
            .append(AppendRequest::single(
                StreamId::outbox(sender),
                0,
                vec![NewEvent::new(sent)],
            ))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;

    let embedded = Embedded::open(dir.path()).unwrap();
    let started_at: Timestamp = clock.now();
    let workers = Workers::start(worker_deps(
        &embedded,
        embedded.read.clone(),
        clock,
        started_at,
        &config(dir.path()),
    ));
    tokio::time::timeout(Duration::from_secs(10), workers.caught_up())
        .await
        .expect("the projector never caught up");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inbox = embedded.read.inbox_after(receiver, 0, 10).await.unwrap();
        if let Some(entry) = inbox.first() {
            assert_eq!(entry.message.message_id, message_id);
            assert_eq!(entry.message.message, "survives");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stranded work was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Settled means the sweep will not redo it again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending = embedded
            .read
            .pending_before(Timestamp(i64::MAX), 10)
            .await
            .unwrap();
        if pending.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the message never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(Duration::from_secs(15), workers.stop())
        .await
        .expect("workers did not stop");
}
