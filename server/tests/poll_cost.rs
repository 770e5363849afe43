//! A user with 10,000 delivered messages is served by get-new-messages without reading them:
//! each poll reads the marker (one row: the last event of the user's `reads-*` stream) and at
//! most `limit` inbox rows through the `(user, position)` primary key. The read store counts
//! the rows its queries return, and the test checks that count per poll.

use messaging_commands::{GetNewMessages, Register};
use messaging_embedded::Embedded;
use messaging_events::{
    AppendRequest, ChangeFeed, Event, EventStore, Limits, MessageId, NewEvent, StreamId,
    SystemClock, Timestamp, UserId,
};
use messaging_projections::Projector;
use messaging_server::embedded_state;
use std::sync::Arc;

/// Appends `count` deliveries to the user's inbox, 100 per atomic append.
async fn deliver(embedded: &Embedded, user: UserId, sender: UserId, from: u64, count: u64) {
    let stream = StreamId::inbox(user);
    for chunk_start in (from..from + count).step_by(100) {
        let chunk_end = (chunk_start + 100).min(from + count);
        let events = (chunk_start..chunk_end)
            .map(|i| {
                NewEvent::new(Event::MessageDelivered {
                    message_id: MessageId::new_random(),
                    recipient: user,
                    sender,
                    receiver: Some(user),
                    group_id: None,
                    text: format!("message {i}"),
                    sent_at: Timestamp(i as i64),
                })
            })
            .collect();
        embedded
            .events
            .append(AppendRequest::single(stream.clone(), chunk_start, events))
            .await
            .expect("appended");
    }
}

/// Runs the projector until the change feed is drained.
async fn project_everything(embedded: &Embedded) {
    let projector = Projector::new(embedded.read.clone());
    loop {
        let records = embedded.events.poll("test", 1000).await.expect("polled");
        let Some(last) = records.last().map(|r| r.position) else {
            return;
        };
        let events: Vec<_> = records.into_iter().map(|r| r.event).collect();
        projector.handle(&events).await.expect("projected");
        embedded
            .events
            .commit("test", last)
            .await
            .expect("committed");
    }
}

#[tokio::test]
async fn a_poll_reads_one_page_whatever_the_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = Embedded::open(dir.path()).expect("opened");
    let state = embedded_state(
        &embedded,
        embedded.read.clone(),
        Arc::new(SystemClock),
        Limits::default(),
    );
    let handlers = state.handlers;
    let registered = handlers
        .register(Register::default(), None)
        .await
        .expect("registered");
    let user = handlers
        .authenticate(&registered.token)
        .await
        .expect("authenticated");
    deliver(&embedded, user, UserId::new_random(), 0, 10_000).await;
    project_everything(&embedded).await;

    let poll = |limit: &str| GetNewMessages {
        user_id: user.to_string(),
        since: None,
        limit: Some(limit.to_string()),
    };
    let mut seen = 0;
    for _ in 0..100 {
        let before = embedded.read.rows_read();
        let page = handlers
            .get_new_messages(user, poll("100"))
            .await
            .expect("polled");
        assert_eq!(page.messages.len(), 100);
        assert_eq!(page.messages[0].message, format!("message {seen}"));
        assert!(embedded.read.rows_read() - before <= 100);
        seen += page.messages.len();
    }

    // With 10,000 messages read, five new ones cost five rows, and an empty poll none.
    deliver(&embedded, user, UserId::new_random(), 10_000, 5).await;
    project_everything(&embedded).await;
    let before = embedded.read.rows_read();
    let page = handlers
        .get_new_messages(user, poll("100"))
        .await
        .expect("polled");
    assert_eq!(page.messages.len(), 5);
    assert_eq!(page.messages[0].message, "message 10000");
    assert_eq!(embedded.read.rows_read() - before, 5);
    let before = embedded.read.rows_read();
    let empty = handlers
        .get_new_messages(user, poll("100"))
        .await
        .expect("polled");
    assert!(empty.messages.is_empty());
    assert_eq!(embedded.read.rows_read() - before, 0);
}
