//! The sweeper function's handler, over the embedded store: accepted work that a crash left
//! without an outcome is re-enqueued once it is older than the threshold, and only then.

use crate::helpers::*;
use messaging_commands::Sweeper;
use messaging_events::{Clock, Event, Timestamp, WorkQueue};
use messaging_lambda::handle_sweep;
use messaging_projections::Projector;
use std::time::Duration;

/// The fixtures' message 1 was sent at this time (microseconds).
const SENT_AT: i64 = 1_732_440_000_001_000;

struct At(Timestamp);

impl Clock for At {
    fn now(&self) -> Timestamp {
        self.0
    }
}

#[tokio::test]
async fn accepted_work_without_an_outcome_is_re_enqueued_after_the_threshold() {
    let store = Store::new();
    // Ada sends message 1 to Bob; its outcome never gets projected (the record after it is
    // undecodable), so the read models hold it as pending, as after a crash before enqueue.
    let projector = Projector::new(store.read());
    handle_stream_batch_ignoring_failures(&projector).await;
    let sweeper = Sweeper::new(
        store.read(),
        store.embedded.direct_queue.clone(),
        store.embedded.group_queue.clone(),
    );
    let after = Duration::from_secs(30);

    let too_early = At(Timestamp(SENT_AT + 29_000_000));
    let report = handle_sweep(&sweeper, &too_early, after)
        .await
        .expect("the sweep runs");
    assert_eq!(report.re_enqueued, 0, "younger than the threshold");
    assert!(receive_all(&store).await.is_empty());

    let later = At(Timestamp(SENT_AT + 31_000_000));
    let report = handle_sweep(&sweeper, &later, after)
        .await
        .expect("the sweep runs");
    assert_eq!(report.re_enqueued, 1);
    let queued = receive_all(&store).await;
    assert_eq!(queued.len(), 1);
    match &queued[0].item.sent.event {
        Event::DirectMessageSent { message_id, .. } => assert_eq!(*message_id, message(1)),
        other => panic!("re-enqueued something else: {other:?}"),
    }
    assert!(
        store
            .embedded
            .group_queue
            .receive(10, Duration::from_secs(30))
            .await
            .expect("receive")
            .is_empty(),
        "a direct message goes to the direct queue only"
    );
}

async fn handle_stream_batch_ignoring_failures(projector: &Projector) {
    let response = messaging_lambda::handle_stream_batch(
        projector,
        stream_event("dynamodb-stream-with-undecodable-record.json"),
    )
    .await;
    assert_eq!(
        stream_failures(&response).len(),
        1,
        "the fixture's bad record"
    );
}

async fn receive_all(store: &Store) -> Vec<messaging_events::QueueMessage> {
    store
        .embedded
        .direct_queue
        .receive(10, Duration::from_secs(30))
        .await
        .expect("receive")
}
