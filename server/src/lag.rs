//! How far a background stage runs behind the appends it consumes, for the debug log: a batch's
//! `behind_ms` is the age of its oldest event when the stage has finished with the batch, so a
//! send-to-visible latency can be taken apart by stage (`RUST_LOG=messaging_server=debug`).

use messaging_events::{Clock, RecordedEvent, SystemClock, Timestamp};

/// When the oldest of `events` was appended (`None` for none).
pub(crate) fn oldest<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Option<Timestamp> {
    events.into_iter().map(|e| e.recorded_at).min()
}

/// Milliseconds from `since` to now (0 for `None`).
pub(crate) fn ms_since(since: Option<Timestamp>) -> f64 {
    let Some(since) = since else { return 0.0 };
    let now = SystemClock.now().micros();
    now.saturating_sub(since.micros()).max(0) as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_events::{Event, StreamId, UserId};

    fn recorded_ago(millis: i64) -> RecordedEvent {
        RecordedEvent {
            stream: StreamId::blocks_of(UserId::new_random()),
            version: 1,
            event_id: uuid::Uuid::new_v4(),
            recorded_at: Timestamp(SystemClock.now().micros() - millis * 1_000),
            event: Event::UserUnblocked {
                blocker: UserId::new_random(),
                blocked: UserId::new_random(),
            },
        }
    }

    #[test]
    fn the_oldest_event_sets_the_lag() {
        let events = [recorded_ago(5), recorded_ago(250), recorded_ago(40)];
        let behind = ms_since(oldest(&events));
        assert!((250.0..1_000.0).contains(&behind), "{behind}");
        assert_eq!(ms_since(oldest(&[])), 0.0);
    }
}
