//! The load itself: workers that pick operations from the mix and time them, paced open loop
//! (a schedule per worker, latency counted from the intended start, so a server that falls
//! behind shows it in the latencies) or closed loop (back to back).

use crate::args::{Mix, Pace};
use crate::http::{Conn, Target};
use crate::population::Population;
use crate::report::OpStats;
use crate::visibility::Tracker;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One operation of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `POST /send-message` to a random user.
    Direct,
    /// `POST /send-group-message` to a group of 10.
    Group10,
    /// `POST /send-group-message` to a group of 100.
    Group100,
    /// `GET /get-all-messages?limit=50` of a random user.
    History,
    /// `GET /health`.
    Health,
}

impl Op {
    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Op::Direct => "direct",
            Op::Group10 => "group10",
            Op::Group100 => "group100",
            Op::History => "history",
            Op::Health => "health",
        }
    }

    /// Whether it is a send (counted in accepted sends).
    pub fn is_send(self) -> bool {
        matches!(self, Op::Direct | Op::Group10 | Op::Group100)
    }
}

/// What to run.
#[derive(Clone)]
pub struct Workload {
    /// The server.
    pub target: Target,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Users and groups.
    pub population: Arc<Population>,
    /// Send-to-visible bookkeeping.
    pub tracker: Arc<Tracker>,
    /// `Some(op)`: only that operation (the health phase); else the mix.
    pub only: Option<Op>,
    /// Weights.
    pub mix: Mix,
    /// The message text (JSON-safe).
    pub text: Arc<str>,
}

/// What the workers measured.
#[derive(Default)]
pub struct LoadResult {
    /// Per operation.
    pub operations: BTreeMap<&'static str, OpStats>,
    /// Messages that showed up before their 202 (latency 0).
    pub visible_early: OpStats,
    /// From the first scheduled request to the last reply.
    pub elapsed: Duration,
}

#[derive(Deserialize)]
struct Accepted {
    message_id: String,
}

/// Runs the load for `duration` and waits for every worker's last request.
pub async fn run(workload: Workload, pace: Pace, duration: Duration) -> LoadResult {
    let workers = pace.workers();
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let workload = workload.clone();
        tasks.spawn(async move {
            let mut state = Worker::new(workload);
            match pace {
                Pace::Closed { .. } => {
                    while Instant::now() < end {
                        let op = state.pick();
                        let at = Instant::now();
                        state.perform(op, at).await;
                    }
                }
                Pace::Open { rate, connections } => {
                    // Worker w owns operations w, w + C, w + 2C, ... of one global schedule
                    // at `rate` per second.
                    let mut k: u64 = 0;
                    loop {
                        let slot = k * connections as u64 + worker as u64;
                        let intended = started + Duration::from_secs_f64(slot as f64 / rate as f64);
                        // A server that falls behind does not stretch the run: what was
                        // due but not sent by the end is simply not sent (and shows as a
                        // lower accepted rate and a higher latency).
                        if intended >= end || Instant::now() >= end {
                            break;
                        }
                        tokio::time::sleep_until(intended.into()).await;
                        let op = state.pick();
                        state.perform(op, intended).await;
                        k += 1;
                    }
                }
            }
            state.result
        });
    }
    let mut total = LoadResult::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => {
                for (name, stats) in result.operations {
                    total.operations.entry(name).or_default().merge(&stats);
                }
                total.visible_early.merge(&result.visible_early);
            }
            Err(error) => eprintln!("loadgen: a worker failed: {error}"),
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// One worker: its connection, random source and counts.
struct Worker {
    load: Workload,
    conn: Conn,
    rng: StdRng,
    result: LoadResult,
}

impl Worker {
    fn new(load: Workload) -> Worker {
        let conn = Conn::new(load.target.clone(), load.timeout);
        Worker {
            load,
            conn,
            rng: StdRng::from_rng(&mut rand::rng()),
            result: LoadResult::default(),
        }
    }

    /// The next operation, by the mix's weights.
    fn pick(&mut self) -> Op {
        if let Some(op) = self.load.only {
            return op;
        }
        let m = self.load.mix;
        let total = m.direct + m.group10 + m.group100 + m.history;
        let mut x = self.rng.random_range(0..total);
        for (weight, op) in [
            (m.direct, Op::Direct),
            (m.group10, Op::Group10),
            (m.group100, Op::Group100),
        ] {
            if x < weight {
                return op;
            }
            x -= weight;
        }
        Op::History
    }

    /// Performs `op` and counts it, its latency measured from `since`.
    async fn perform(&mut self, op: Op, since: Instant) {
        let pop = self.load.population.clone();
        let users = pop.users.len();
        let (reply, recipients) = match op {
            Op::Health => (self.conn.get("/health", None).await, Vec::new()),
            Op::History => {
                let user = &pop.users[self.rng.random_range(0..users)];
                let path = format!("/get-all-messages?user_id={}&limit=50", user.id);
                (self.conn.get(&path, Some(&user.auth)).await, Vec::new())
            }
            Op::Direct => {
                let sender = self.rng.random_range(0..users);
                // Anyone but the sender.
                let receiver = (sender + self.rng.random_range(1..users)) % users;
                let (s, r) = (&pop.users[sender], &pop.users[receiver]);
                let body = format!(
                    r#"{{"sender_id":"{}","receiver_id":"{}","message":"{}"}}"#,
                    s.id, r.id, self.load.text
                );
                let reply = self
                    .conn
                    .post("/send-message", Some(&s.auth), Bytes::from(body))
                    .await;
                (reply, vec![receiver as u32])
            }
            Op::Group10 | Op::Group100 => {
                let groups = if op == Op::Group10 {
                    &pop.groups10
                } else {
                    &pop.groups100
                };
                let group = &groups[self.rng.random_range(0..groups.len())];
                let sender = group.members[self.rng.random_range(0..group.members.len())];
                let s = &pop.users[sender as usize];
                let body = format!(
                    r#"{{"sender_id":"{}","group_id":"{}","message":"{}"}}"#,
                    s.id, group.id, self.load.text
                );
                let reply = self
                    .conn
                    .post("/send-group-message", Some(&s.auth), Bytes::from(body))
                    .await;
                let recipients = group
                    .members
                    .iter()
                    .copied()
                    .filter(|m| *m != sender)
                    .collect();
                (reply, recipients)
            }
        };
        let now = Instant::now();
        let stats = self.result.operations.entry(op.name()).or_default();
        let expected = if op.is_send() { 202 } else { 200 };
        match reply {
            Ok(reply) if reply.status == expected => {
                stats.ok(now - since);
                if op.is_send() {
                    match serde_json::from_slice::<Accepted>(&reply.body) {
                        Ok(accepted) => {
                            let early =
                                self.load
                                    .tracker
                                    .accepted(&accepted.message_id, &recipients, now);
                            for _ in 0..early {
                                self.result.visible_early.ok(Duration::ZERO);
                            }
                        }
                        Err(_) => stats.error("bad body"),
                    }
                }
            }
            Ok(reply) => stats.error(&reply.status.to_string()),
            Err(error) => stats.error(error.label()),
        }
    }
}
