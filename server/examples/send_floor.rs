//! What a direct message costs the local server without HTTP: the handlers, the dispatcher, the
//! processor and the projector of `cargo run --release` on a fresh embedded store, driven by
//! `CLIENTS` tasks calling `authenticate` + `send_message` in a closed loop for `SECONDS`, then
//! until a last message, sent after the load to a user who gets no other, is visible (the
//! backlog drained). Prints accepted sends per second and the process's CPU per send by
//! thread, to set beside `loadgen`'s figures for the same load over HTTP (BENCHMARKS.md).
//!
//! `cargo run --release -p messaging-server --example send_floor -- [CLIENTS] [SECONDS]`

use anyhow::Context;
use messaging_commands::{CommandHandlers, GetNewMessages, Register, Registered, SendMessage};
use messaging_embedded::Embedded;
use messaging_events::{Clock, SystemClock};
use messaging_server::Config;
use messaging_server::{embedded_state, worker_deps, Workers};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USERS: usize = 1_000;

fn main() -> anyhow::Result<()> {
    // The server's runtime: two worker threads on this machine, as `messaging` gets.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("a runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map_or(Ok(32), |n| n.parse())?;
    let seconds: u64 = args.next().map_or(Ok(10), |n| n.parse())?;
    let temp = tempfile::tempdir().context("a temporary directory")?;
    let mut config = Config::from_lookup(|_| None)?;
    config.data_dir = temp.path().to_path_buf();
    let embedded = Embedded::open(&config.data_dir).context("opening the store")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let read = embedded.read.clone();
    let state = embedded_state(&embedded, read.clone(), clock.clone(), config.limits);
    let workers = Workers::start(worker_deps(
        &embedded,
        read,
        clock.clone(),
        clock.now(),
        &config,
    ));
    let handlers = state.handlers;

    let mut users = Vec::with_capacity(USERS);
    for _ in 0..USERS {
        let registered = handlers
            .register(Register { display_name: None }, None)
            .await?;
        users.push((registered.user_id, registered.token));
    }
    let sentinel = handlers
        .register(Register { display_name: None }, None)
        .await?;
    let users = Arc::new(users);
    let sent = Arc::new(AtomicU64::new(0));
    let (before, written_before) = (cpu_by_thread(), bytes_written());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (handlers, users, sent) = (handlers.clone(), users.clone(), sent.clone());
        tasks.spawn(async move {
            let mut n = client;
            while Instant::now() < deadline {
                let (sender, token) = &users[n % USERS];
                let (receiver, _) = &users[(n * 7 + 1) % USERS];
                n += clients;
                let actor = handlers.authenticate(token).await?;
                let body = SendMessage {
                    sender_id: sender.clone(),
                    receiver_id: receiver.clone(),
                    message: format!("message {n} of the send floor"),
                };
                handlers.send_message(actor, body, None).await?;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a client task")??;
    }
    let elapsed = started.elapsed();
    let drain = drain(&handlers, &users[0], &sentinel).await?;
    let (after, written_after) = (cpu_by_thread(), bytes_written());
    workers.stop().await;

    let sent = sent.load(Ordering::Relaxed);
    println!(
        "{clients} clients, {:.1} s: {sent} sends, {:.0} accepted/s",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    println!(
        "backlog drained {:.3} s after the load; CPU over the load and the drain, per thread:",
        drain.as_secs_f64()
    );
    let mut total = 0.0;
    for (thread, end) in &after {
        let used = end - before.get(thread).copied().unwrap_or(0.0);
        total += used;
        println!(
            "  {thread:<18} {used:6.2} s  {:5.0} µs per send",
            used * 1e6 / sent as f64
        );
    }
    println!(
        "  {:<18} {total:6.2} s  {:5.0} µs per send",
        "all",
        total * 1e6 / sent as f64
    );
    let written = written_after.saturating_sub(written_before);
    println!(
        "written to files: {:.0} MB, {:.1} KiB per send (WAL frames and checkpoint copies)",
        written as f64 / 1e6,
        written as f64 / 1024.0 / sent as f64
    );
    Ok(())
}

/// Bytes this process has passed to `write`-like system calls so far (`wchar`): every WAL
/// frame and every page a checkpoint copies back, whether or not the disk has them yet.
fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("wchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Sends one more message, to a user who got none, and waits until it is visible: the
/// dispatcher and projector work in feed order, so by then the load's backlog is done.
async fn drain(
    handlers: &CommandHandlers,
    (sender, token): &(String, String),
    receiver: &Registered,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let actor = handlers.authenticate(token).await?;
    let body = SendMessage {
        sender_id: sender.clone(),
        receiver_id: receiver.user_id.clone(),
        message: "the last one".into(),
    };
    handlers.send_message(actor, body, None).await?;
    let reader = handlers.authenticate(&receiver.token).await?;
    loop {
        let query = GetNewMessages {
            user_id: receiver.user_id.clone(),
            since: None,
            limit: None,
        };
        if !handlers
            .get_new_messages(reader, query)
            .await?
            .messages
            .is_empty()
        {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// CPU seconds (user + system) used so far by each thread of this process, summed by name.
fn cpu_by_thread() -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name; utime and stime are the 14th and 15th overall.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
            .sum();
        *by_name.entry(name.trim().to_string()).or_insert(0.0) += ticks / 100.0;
    }
    by_name
}
