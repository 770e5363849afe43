//! Shared fixtures of the behavioural tests.
#![allow(dead_code)] // each test binary uses a different subset

use messaging_embedded::Embedded;
use messaging_events::{
    AppendRequest, Event, MessageId, NewEvent, RecordedEvent, StreamId, Timestamp, UserId,
};
use tempfile::TempDir;

/// An adapter on a fresh directory; keep the `TempDir` alive as long as the adapter.
pub fn open() -> (TempDir, Embedded) {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = Embedded::open(dir.path()).expect("opens");
    (dir, embedded)
}

/// A stream with a unique name.
pub fn stream() -> StreamId {
    StreamId::reads(UserId::new_random())
}

/// A small event.
pub fn read_event(up_to: u64) -> NewEvent {
    NewEvent::new(Event::MessagesRead {
        user_id: UserId::new_random(),
        up_to,
    })
}

/// `n` small events.
pub fn read_events(n: u64) -> Vec<NewEvent> {
    (1..=n).map(read_event).collect()
}

/// Appends `n` events to an empty `stream`.
pub fn single(stream: &StreamId, n: u64) -> AppendRequest {
    AppendRequest::single(stream.clone(), 0, read_events(n))
}

/// A recorded direct-message acceptance.
pub fn sent(message_id: MessageId, sent_at: Timestamp) -> RecordedEvent {
    let sender = UserId::new_random();
    RecordedEvent {
        stream: StreamId::outbox(sender),
        version: 1,
        event_id: uuid::Uuid::new_v4(),
        recorded_at: sent_at,
        event: Event::DirectMessageSent {
            message_id,
            sender,
            receiver: UserId::new_random(),
            text: "hello".into(),
            sent_at,
            blocks_version: 0,
        },
    }
}

/// The versions of some events.
pub fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}
