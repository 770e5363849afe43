//! `loadgen`: drives the messaging REST API with a mix of sends, polls and history reads, open
//! loop at a target rate or closed loop with N clients, and reports accepted sends per second,
//! accept and send-to-visible latency percentiles, errors, the backlog drain after the load,
//! and optionally the same client's `GET /health` throughput for comparison.
//!
//! `cargo run --release -p messaging-loadgen -- --help` lists the options; BENCHMARKS.md has
//! the commands behind its figures.

mod args;
mod http;
mod population;
mod report;
mod run;
mod server;
mod visibility;

use anyhow::Context;
use args::{Command, LongPoll, Options, Pace};
use report::{HealthComparison, Report};
use run::{Op, Workload};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use visibility::{PollMode, Tracker};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match args::parse(&args) {
        Ok(Command::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(options)) => options,
        Err(error) => {
            eprintln!("loadgen: {error}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_all(&options)) {
        Ok(report) => {
            if options.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(error) => {
                        eprintln!("loadgen: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.table());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts (or finds) the server, runs every phase and stops what it started.
async fn run_all(options: &Options) -> anyhow::Result<Report> {
    let spawned = if options.spawn {
        let spawned =
            server::Spawned::start(options.server_bin.as_deref(), &options.server_env).await?;
        eprintln!(
            "loadgen: started the server at {} (log: {})",
            spawned.base_url,
            spawned.log.display()
        );
        Some(spawned)
    } else {
        None
    };
    let base_url = match (&spawned, &options.base_url) {
        (Some(spawned), _) => spawned.base_url.clone(),
        (None, Some(url)) => url.clone(),
        (None, None) => anyhow::bail!("no server"),
    };
    let result = measure(options, &base_url, spawned.as_ref().map(|s| s.pid)).await;
    if let Some(spawned) = spawned {
        spawned.stop().await;
    }
    result
}

async fn measure(
    options: &Options,
    base_url: &str,
    server_pid: Option<u32>,
) -> anyhow::Result<Report> {
    let target = http::Target::resolve(base_url).await?;
    let setup = Instant::now();
    let population = Arc::new(
        population::Population::create(&target, options.users, options.groups10, options.groups100)
            .await
            .context("creating users and groups")?,
    );
    eprintln!(
        "loadgen: {} users, {} groups of 10, {} groups of 100 in {:.1} s",
        population.users.len(),
        population.groups10.len(),
        population.groups100.len(),
        setup.elapsed().as_secs_f64()
    );
    let long_poll = match options.long_poll {
        LongPoll::On => true,
        LongPoll::Off => false,
        LongPoll::Auto => visibility::detect_long_poll(&target, &population.users[0]).await?,
    };
    let poll_mode = if long_poll {
        PollMode::Long {
            wait_secs: options.wait_secs,
        }
    } else {
        PollMode::Interval(options.poll_interval)
    };
    let tracker = Arc::new(Tracker::new(population.users.len(), options.watchers));
    let workload = Workload {
        target: target.clone(),
        timeout: options.timeout,
        population: population.clone(),
        tracker: tracker.clone(),
        only: None,
        mix: options.mix,
        text: Arc::from("x".repeat(options.message_bytes)),
    };

    // The health phase first, on an idle server, with the same workers.
    let health = if options.health {
        let health_load = Workload {
            only: Some(Op::Health),
            ..workload.clone()
        };
        let pace = Pace::Closed {
            clients: options.pace.workers(),
        };
        eprintln!("loadgen: GET /health phase, {} workers", pace.workers());
        let result = run::run(health_load, pace, options.duration).await;
        let stats = result.operations.get("health").cloned().unwrap_or_default();
        Some(stats.summary(result.elapsed))
    } else {
        None
    };

    // Pollers of the watched users, for the whole load and the drain.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut pollers = tokio::task::JoinSet::new();
    for (index, user) in population.users.iter().take(options.watchers).enumerate() {
        pollers.spawn(visibility::poll_user(
            target.clone(),
            options.timeout,
            index as u32,
            user.clone(),
            poll_mode,
            tracker.clone(),
            stop_rx.clone(),
        ));
    }

    let load_average = report::load_average();
    let cpu_before = (report::cpu_seconds(server_pid), report::cpu_seconds(None));
    eprintln!(
        "loadgen: load phase, {:?} for {:.1} s",
        options.pace,
        options.duration.as_secs_f64()
    );
    let result = run::run(workload, options.pace, options.duration).await;
    let stopped = Instant::now();
    let cpu_after = (report::cpu_seconds(server_pid), report::cpu_seconds(None));

    // The drain: wait for every tracked message to show up.
    let pending_at_stop = tracker.outstanding();
    let drain_deadline = stopped + options.drain_timeout;
    while tracker.outstanding() > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let never_visible = tracker.outstanding();
    // A send_replace cannot fail for lack of receivers.
    stop_tx.send_replace(true);
    let mut polls = report::OpStats::new();
    let mut visible = result.visible_early.clone();
    let mut last_visible: Option<Instant> = None;
    while let Some(joined) = pollers.join_next().await {
        let poller = joined.context("a poller failed")?;
        polls.merge(&poller.polls);
        visible.merge(&poller.visible);
        last_visible = last_visible.max(poller.last_visible);
    }
    let drain_s = match (never_visible, pending_at_stop) {
        (0, 0) => Some(0.0),
        (0, _) => last_visible.map(|at| at.saturating_duration_since(stopped).as_secs_f64()),
        _ => None,
    };

    let elapsed = result.elapsed;
    let mut operations: BTreeMap<&'static str, report::Summary> = result
        .operations
        .iter()
        .map(|(name, stats)| (*name, stats.summary(elapsed)))
        .collect();
    operations.insert("get-new-messages", polls.summary(elapsed));
    let accepted: u64 = result
        .operations
        .iter()
        .filter(|(name, _)| matches!(**name, "direct" | "group10" | "group100"))
        .map(|(_, stats)| stats.count())
        .sum();
    let health = health.map(|health| {
        let direct = operations.get("direct").map_or(0.0, |s| s.per_sec);
        HealthComparison {
            send_to_health_ratio: direct / health.per_sec.max(1e-9),
            health,
        }
    });
    let mut cpu_s = BTreeMap::new();
    if let (Some(before), Some(after)) =
        (cpu_before.0.filter(|_| server_pid.is_some()), cpu_after.0)
    {
        cpu_s.insert("server", after - before);
    }
    if let (Some(before), Some(after)) = (cpu_before.1, cpu_after.1) {
        cpu_s.insert("loadgen", after - before);
    }
    let population_counts = BTreeMap::from([
        ("users", population.users.len()),
        ("groups10", population.groups10.len()),
        ("groups100", population.groups100.len()),
        ("watchers", options.watchers),
    ]);
    Ok(Report {
        base_url: base_url.to_string(),
        pace: match options.pace {
            Pace::Open { rate, connections } => {
                format!("open loop {rate}/s over {connections} connections")
            }
            Pace::Closed { clients } => format!("closed loop, {clients} clients"),
        },
        duration_s: options.duration.as_secs_f64(),
        elapsed_s: elapsed.as_secs_f64(),
        mix: options.mix,
        population: population_counts,
        poll_mode: match poll_mode {
            PollMode::Long { wait_secs } => format!("long polls (wait={wait_secs})"),
            PollMode::Interval(pause) => format!("polls every {} ms", pause.as_millis()),
        },
        operations,
        accepted_sends_per_sec: accepted as f64 / elapsed.as_secs_f64().max(1e-9),
        send_to_visible: visible.summary(elapsed),
        never_visible,
        drain_s,
        health,
        cpu_s,
        load_average,
    })
}
