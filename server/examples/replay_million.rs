//! Replay throughput on the embedded store: writes a log of N events (default 1,000,000: a
//! thousand users and direct messages, each a send, a delivery and an outcome, as the real
//! handlers append them), then times `replay --rebuild` of every projection from it.
//!
//! `cargo run --release -p messaging-server --example replay_million -- [EVENTS] [DATA_DIR]`
//! (a temporary directory by default; pass one to keep the data and rerun
//! `messaging replay` against it).

use anyhow::Context;
use messaging_embedded::{Embedded, EmbeddedCatalog};
use messaging_events::{
    AppendRequest, Event, EventStore, MessageId, NewEvent, StreamAppend, StreamId, Timestamp,
    UserId,
};
use messaging_projections::replay::{all_projections, Progress, Replay, ReplayOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USERS: usize = 1_000;
/// Messages per append: 3 stream appends each, under the 100-item transaction limit.
const MESSAGES_PER_APPEND: usize = 33;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: usize = match args.next() {
        Some(n) => n.parse().context("EVENTS must be a number")?,
        None => 1_000_000,
    };
    let temp = tempfile::tempdir().context("a temporary directory")?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let embedded = Embedded::open(&dir).context("opening the store")?;

    let started = Instant::now();
    let written = write_log(&embedded, events).await?;
    let writing = started.elapsed();
    println!(
        "wrote {written} events in {:.1} s ({:.0} events/s) to {}",
        writing.as_secs_f64(),
        written as f64 / writing.as_secs_f64(),
        dir.display()
    );

    let catalog = Arc::new(EmbeddedCatalog::open(&dir, embedded.read.clone())?);
    let options = ReplayOptions {
        page_size: 2_000,
        settle: Duration::ZERO,
        checkpoint_every: Duration::from_secs(5),
    };
    let progress = Arc::new(|progress: &Progress| {
        eprintln!(
            "  {} / {:?} events, {:.0} events/s",
            progress.events_done, progress.total, progress.per_second
        );
    });
    let replay = Replay::new(embedded.events.clone(), catalog, options, progress);
    let report = replay.rebuild(all_projections()).await?;
    println!(
        "replay --rebuild: {} events in {:.1} s = {:.0} events/s (generation {})",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events as f64 / report.elapsed.as_secs_f64(),
        report.generation
    );
    Ok(())
}

/// Appends registrations, then messages (send + delivery + outcome) until `target` events.
async fn write_log(embedded: &Embedded, target: usize) -> anyhow::Result<usize> {
    let store = embedded.events.clone();
    let users: Vec<UserId> = (0..USERS).map(|_| UserId::new_random()).collect();
    let mut written = 0;
    for chunk in users.chunks(100) {
        let appends = chunk
            .iter()
            .map(|user| StreamAppend {
                stream: StreamId::user(*user),
                expected_version: 0,
                events: vec![NewEvent::new(Event::UserRegistered {
                    user_id: *user,
                    display_name: None,
                })],
            })
            .collect();
        store
            .append(AppendRequest {
                appends,
                ..AppendRequest::default()
            })
            .await?;
        written += chunk.len();
    }
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    let mut next = |stream: &StreamId| {
        let version = versions.entry(stream.clone()).or_insert(0);
        *version += 1;
        *version - 1
    };
    let mut n: usize = 0;
    while written < target {
        let mut appends = Vec::with_capacity(MESSAGES_PER_APPEND * 3);
        for _ in 0..MESSAGES_PER_APPEND.min((target - written).div_ceil(3)) {
            n += 1;
            let sender = users[n % USERS];
            let receiver = users[(n * 7 + 1) % USERS];
            let message_id = MessageId::new_random();
            let sent_at = Timestamp(1_700_000_000_000_000 + n as i64);
            let text = format!("message {n}");
            let outbox = StreamId::outbox(sender);
            let inbox = StreamId::inbox(receiver);
            let outcome = StreamId::message(message_id);
            appends.push(StreamAppend {
                expected_version: next(&outbox),
                stream: outbox,
                events: vec![NewEvent::new(Event::DirectMessageSent {
                    message_id,
                    sender,
                    receiver,
                    text: text.clone(),
                    sent_at,
                    blocks_version: 0,
                })],
            });
            appends.push(StreamAppend {
                expected_version: next(&inbox),
                stream: inbox,
                events: vec![NewEvent::new(Event::MessageDelivered {
                    message_id,
                    recipient: receiver,
                    sender,
                    receiver: Some(receiver),
                    group_id: None,
                    text,
                    sent_at,
                })],
            });
            appends.push(StreamAppend {
                expected_version: next(&outcome),
                stream: outcome,
                events: vec![NewEvent::new(Event::MessageDispatched {
                    message_id,
                    delivered: 1,
                    withheld: 0,
                })],
            });
        }
        written += appends.len();
        store
            .append(AppendRequest {
                appends,
                ..AppendRequest::default()
            })
            .await?;
    }
    Ok(written)
}
