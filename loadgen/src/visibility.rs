//! Send-to-visible: the time from a send's 202 to the message showing in a watched
//! recipient's `GET /get-new-messages`. Senders note each accepted message for its watched
//! recipients; pollers note when it shows up; whichever comes second yields the latency.

use crate::http::{Conn, Target};
use crate::population::User;
use crate::report::OpStats;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shards of the pending map: senders and pollers of different messages rarely contend.
const SHARDS: usize = 64;

/// A (message, watched recipient) pair seen by only one side so far.
enum Mark {
    /// The 202 arrived at this instant.
    Accepted(Instant),
    /// The message showed up in the recipient's inbox before its 202 arrived.
    Seen,
}

type Key = (String, u32);

/// The meeting point of senders and pollers.
pub struct Tracker {
    shards: Vec<Mutex<HashMap<Key, Mark>>>,
    /// Whether each user (by index) is polled.
    watched: Vec<bool>,
    /// Accepted for a watched recipient and not yet seen.
    outstanding: AtomicI64,
}

impl Tracker {
    /// A tracker where users `0..watchers` of `users` are polled.
    pub fn new(users: usize, watchers: usize) -> Tracker {
        Tracker {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            watched: (0..users).map(|i| i < watchers).collect(),
            outstanding: AtomicI64::new(0),
        }
    }

    /// Whether `user` is polled.
    pub fn is_watched(&self, user: u32) -> bool {
        self.watched.get(user as usize).copied().unwrap_or(false)
    }

    /// Accepted messages still to show up.
    pub fn outstanding(&self) -> i64 {
        self.outstanding.load(Ordering::Acquire)
    }

    fn shard(&self, message_id: &str) -> &Mutex<HashMap<Key, Mark>> {
        // UUID text: its last hex digits are random enough to spread the shards.
        let tail = message_id
            .bytes()
            .rev()
            .take(4)
            .fold(0usize, |acc, b| acc * 31 + b as usize);
        &self.shards[tail % SHARDS]
    }

    /// A message was accepted at `at` for these recipients; the watched ones are noted.
    /// Returns how many had already shown up (their latency counts as 0).
    pub fn accepted(&self, message_id: &str, recipients: &[u32], at: Instant) -> u64 {
        let mut early = 0;
        for &recipient in recipients.iter().filter(|r| self.is_watched(**r)) {
            let key = (message_id.to_string(), recipient);
            let Ok(mut shard) = self.shard(message_id).lock() else {
                continue;
            };
            match shard.remove(&key) {
                Some(Mark::Seen) => early += 1,
                Some(Mark::Accepted(_)) | None => {
                    shard.insert(key, Mark::Accepted(at));
                    self.outstanding.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        early
    }

    /// `recipient` saw the message at `at`: the latency since its 202, if that came first.
    pub fn seen(&self, message_id: &str, recipient: u32, at: Instant) -> Option<Duration> {
        let key = (message_id.to_string(), recipient);
        let mut shard = self.shard(message_id).lock().ok()?;
        match shard.remove(&key) {
            Some(Mark::Accepted(accepted)) => {
                self.outstanding.fetch_sub(1, Ordering::AcqRel);
                Some(at.saturating_duration_since(accepted))
            }
            // A duplicate would be a bug in the server; keep the first sighting.
            Some(Mark::Seen) | None => {
                shard.insert(key, Mark::Seen);
                None
            }
        }
    }
}

/// How pollers ask for new messages.
#[derive(Debug, Clone, Copy)]
pub enum PollMode {
    /// `wait=secs` long polls, back to back.
    Long { wait_secs: u64 },
    /// Plain polls with a pause between them.
    Interval(Duration),
}

/// What one poller measured.
pub struct PollerReport {
    /// The polls themselves.
    pub polls: OpStats,
    /// Send-to-visible latencies of the messages this poller's user saw.
    pub visible: OpStats,
    /// When the last tracked message showed up.
    pub last_visible: Option<Instant>,
}

#[derive(Deserialize)]
struct NewMessages {
    messages: Vec<MessageId>,
}

#[derive(Deserialize)]
struct MessageId {
    message_id: String,
}

/// Polls `user` until `stop` turns true, noting what shows up.
pub async fn poll_user(
    target: Target,
    timeout: Duration,
    user_index: u32,
    user: User,
    mode: PollMode,
    tracker: Arc<Tracker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> PollerReport {
    let mut conn = Conn::new(target, timeout);
    let mut report = PollerReport {
        polls: OpStats::new(),
        visible: OpStats::new(),
        last_visible: None,
    };
    let (path, extra) = match mode {
        PollMode::Long { wait_secs } => (
            format!("/get-new-messages?user_id={}&wait={wait_secs}", user.id),
            Duration::from_secs(wait_secs),
        ),
        PollMode::Interval(_) => (
            format!("/get-new-messages?user_id={}", user.id),
            Duration::ZERO,
        ),
    };
    while !*stop.borrow() {
        let started = Instant::now();
        // A long poll in flight when the run ends is abandoned rather than waited for.
        let reply = tokio::select! {
            reply = conn.get_waiting(&path, Some(&user.auth), extra) => reply,
            _ = stop.changed() => break,
        };
        let now = Instant::now();
        match reply {
            Ok(reply) if reply.status == 200 => {
                report.polls.ok(now - started);
                if let Ok(new) = serde_json::from_slice::<NewMessages>(&reply.body) {
                    for message in new.messages {
                        if let Some(latency) = tracker.seen(&message.message_id, user_index, now) {
                            report.visible.ok(latency);
                            report.last_visible = Some(now);
                        }
                    }
                } else {
                    report.polls.error("bad body");
                }
            }
            Ok(reply) => {
                report.polls.error(&reply.status.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => {
                report.polls.error(error.label());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if let PollMode::Interval(pause) = mode {
            tokio::time::sleep(pause).await;
        }
    }
    report
}

/// Whether the server validates `wait=` (so supports long polls): an invalid value is a 400
/// there, and ignored (200) by a server without long polls.
pub async fn detect_long_poll(target: &Target, user: &User) -> anyhow::Result<bool> {
    let mut conn = Conn::new(target.clone(), Duration::from_secs(10));
    let path = format!("/get-new-messages?user_id={}&wait=x", user.id);
    let reply = conn.get(&path, Some(&user.auth)).await?;
    Ok(reply.status == 400)
}
