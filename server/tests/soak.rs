//! Soak under injected faults (issue 6, "Prove the promises").
//!
//! A mixed workload (registrations, direct and group sends, blocks and unblocks, membership
//! changes, polls with get-new-messages) runs through the real command handlers while the real
//! processor, projector and sweep loops of the server (`Workers` on the embedded store,
//! `AwsWorkers` on DynamoDB + Streams + SQS in moto) run over ports that fail, time out,
//! throttle, duplicate and reorder on a seeded schedule (`soak/faults.rs`). Then the faults stop,
//! the system settles, and every invariant of PRODUCT.md is checked (`soak/invariants.rs`).
//!
//! Each test prints its seed; `SOAK_SEED=<seed>` replays the same schedule and workload.

#[path = "soak/faults.rs"]
mod faults;
#[path = "soak/invariants.rs"]
mod invariants;
#[path = "soak/workload.rs"]
mod workload;

use faults::{FaultyFeed, FaultyQueue, FaultyRead, FaultyStore, Rates, Schedule};
use messaging_commands::{CommandHandlers, Dependencies, Dispatch, Processor, Sweeper};
use messaging_embedded::Embedded;
use messaging_events::{ChangeFeed, Clock, EventStore, Limits, SystemClock, UserId};
use messaging_projections::{Projector, ReadStore};
use messaging_server::{AwsWorkerDeps, AwsWorkers, WorkerDeps, Workers};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::{Record, Rng, Size};

/// The seed of this run: `SOAK_SEED` if set, else a fresh one.
fn seed() -> u64 {
    let seed = match std::env::var("SOAK_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SOAK_SEED={text:?} is not a u64")),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            Rng::new(nanos ^ u64::from(std::process::id())).next_u64() % 1_000_000_000
        }
    };
    eprintln!("seed {seed} (SOAK_SEED={seed} repeats it)");
    seed
}

/// The loops of either backend.
enum Running {
    Embedded(Workers),
    Aws(AwsWorkers),
}

impl Running {
    async fn stop(self) {
        match self {
            Running::Embedded(workers) => workers.stop().await,
            Running::Aws(workers) => workers.stop().await,
        }
    }
}

/// A system under test: handlers and loops over faulty ports, and the plain ports to check
/// against.
struct System {
    handlers: CommandHandlers,
    store: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    schedule: Arc<Schedule>,
    running: Running,
}

/// The handlers' dependencies over the faulty ports.
fn dependencies(
    store: &Arc<FaultyStore>,
    read: &Arc<FaultyRead>,
    direct: &Arc<FaultyQueue>,
    group: &Arc<FaultyQueue>,
    dispatch: Dispatch,
) -> Dependencies {
    Dependencies {
        store: store.clone(),
        read: read.clone(),
        direct_queue: direct.clone(),
        group_queue: group.clone(),
        clock: Arc::new(SystemClock),
        limits: Limits::default(),
        dispatch,
    }
}

/// How long unsettled work waits before the periodic sweep re-enqueues it: short, so that the
/// sweep runs (and races with slow processing) many times during a soak.
const SWEEP_AFTER: Duration = Duration::from_secs(1);

fn embedded_system(dir: &std::path::Path, schedule: Arc<Schedule>) -> System {
    let embedded = Embedded::open(dir).expect("the store opens");
    let plain_store: Arc<dyn EventStore> = embedded.events.clone();
    let plain_read: Arc<dyn ReadStore> = embedded.read.clone();
    let store = FaultyStore::new(plain_store.clone(), schedule.clone());
    let read = FaultyRead::new(plain_read.clone(), schedule.clone());
    let feed = FaultyFeed::new(
        embedded.events.clone() as Arc<dyn ChangeFeed>,
        schedule.clone(),
    );
    let visibility = Duration::from_secs(2);
    let direct = FaultyQueue::new(
        embedded.direct_queue.clone(),
        schedule.clone(),
        "direct",
        visibility,
    );
    let group = FaultyQueue::new(
        embedded.group_queue.clone(),
        schedule.clone(),
        "group",
        visibility,
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let workers = Workers::start(WorkerDeps {
        feed,
        appended: embedded.events.appended(),
        projector: Projector::new(read.clone()),
        direct_queue: direct.clone(),
        direct_enqueued: embedded.direct_queue.enqueued(),
        group_queue: group.clone(),
        group_enqueued: embedded.group_queue.enqueued(),
        // As the server runs it (`worker_deps`); the faulty store makes its remembered inbox
        // ends face ambiguous appends.
        processor: Arc::new(Processor::new(store.clone()).remembering_inbox_ends()),
        sweeper: Arc::new(Sweeper::new(read.clone(), direct.clone(), group.clone())),
        started_at: clock.now(),
        clock,
        sweep_after: SWEEP_AFTER,
    });
    System {
        handlers: CommandHandlers::new(dependencies(
            &store,
            &read,
            &direct,
            &group,
            Dispatch::ChangeFeed,
        )),
        store: plain_store,
        read: plain_read,
        schedule,
        running: Running::Embedded(workers),
    }
}

async fn dynamodb_system(schedule: Arc<Schedule>) -> System {
    use messaging_dynamodb::testing::{create_everything, moto_clients};
    use messaging_dynamodb::{DynamoEventStore, DynamoReadStore, SqsQueue, StreamPoller};
    let clients = moto_clients().await;
    let (names, urls) = create_everything(&clients).await;
    let plain_store: Arc<dyn EventStore> = Arc::new(DynamoEventStore::new(&clients, &names));
    let plain_read: Arc<dyn ReadStore> = Arc::new(DynamoReadStore::new(&clients, &names));
    let store = FaultyStore::new(plain_store.clone(), schedule.clone());
    let read = FaultyRead::new(plain_read.clone(), schedule.clone());
    // SQS rounds visibility up to whole seconds; moto is slow, so a batch may outlive it.
    let visibility = Duration::from_secs(3);
    let direct = FaultyQueue::new(
        Arc::new(SqsQueue::new(&clients, urls.direct)),
        schedule.clone(),
        "direct",
        visibility,
    );
    let group = FaultyQueue::new(
        Arc::new(SqsQueue::new(&clients, urls.group)),
        schedule.clone(),
        "group",
        visibility,
    );
    let poller = StreamPoller::new(&clients, &names, "projector")
        .await
        .expect("the stream poller");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let workers = AwsWorkers::start(AwsWorkerDeps {
        poller,
        projector: Projector::new(read.clone()),
        direct_queue: direct.clone(),
        group_queue: group.clone(),
        processor: Arc::new(Processor::new(store.clone())),
        sweeper: Arc::new(Sweeper::new(read.clone(), direct.clone(), group.clone())),
        started_at: clock.now(),
        clock,
        sweep_after: Duration::from_secs(3),
    });
    System {
        handlers: CommandHandlers::new(dependencies(
            &store,
            &read,
            &direct,
            &group,
            Dispatch::Enqueue,
        )),
        store: plain_store,
        read: plain_read,
        schedule,
        running: Running::Aws(workers),
    }
}

/// Runs the workload with faults on, stops the faults, waits for the system to settle and
/// checks every invariant.
async fn soak(system: System, seed: u64, size: Size, settle_within: Duration) {
    let started = Instant::now();
    let record = Arc::new(Record::default());
    let mut rng = Rng::new(seed);
    workload::set_up(&system.handlers, &record, size, &mut rng).await;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..size.clients {
        clients.spawn(workload::client(
            system.handlers.clone(),
            record.clone(),
            size,
            rng.next_u64(),
        ));
    }
    while let Some(result) = clients.join_next().await {
        result.expect("a client task");
    }
    let workload_done = started.elapsed();

    // The faults stop; the loops redeliver, re-read and sweep until everything settles.
    system.schedule.set_active(false);
    let users: Vec<UserId> = record.users();
    let deadline = Instant::now() + settle_within;
    loop {
        match invariants::unsettled(&system.store, &system.read, &system.handlers, &users).await {
            None => break,
            Some(missing) => {
                assert!(
                    Instant::now() < deadline,
                    "seed {seed}: not settled within {settle_within:?} after the faults stopped: {missing}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let settled = started.elapsed();
    // Every user reads what is new until nothing is.
    for user in &users {
        while workload::poll(&system.handlers, &record, *user, None).await > 0 {}
    }

    let (violations, checked) =
        invariants::check(&system.store, &system.read, &system.handlers, &record).await;
    eprintln!(
        "seed {seed}: {} users, {} messages accepted ({} in the log), {} deliveries, {} returned by get-new-messages; \
         {} deliveries and {} withholdings determined by acknowledged blocks and memberships; \
         workload {workload_done:?}, settled after {settled:?}",
        users.len(),
        record.accepted.lock().unwrap().len(),
        checked.messages,
        checked.deliveries,
        checked.polled,
        checked.determined_deliveries,
        checked.determined_withheld,
    );
    eprintln!(
        "seed {seed}: faults injected: {:?}",
        system.schedule.counts()
    );
    eprintln!("seed {seed}: answers: {:?}", record.answers.lock().unwrap());
    system.running.stop().await;
    for violation in &violations {
        eprintln!("VIOLATION {violation}");
    }
    assert!(
        violations.is_empty(),
        "seed {seed} (SOAK_SEED={seed} repeats it): {} invariant violations:\n{}",
        violations.len(),
        violations
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        checked.messages > 0 && checked.deliveries > 0 && checked.polled > 0,
        "seed {seed}: the workload proved nothing: {checked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_embedded_under_injected_faults_keeps_every_invariant() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let schedule = Schedule::new(seed, Rates::soak());
    let system = embedded_system(dir.path(), schedule);
    let size = Size {
        initial_users: 10,
        max_users: 14,
        groups: 3,
        members_per_group: 5,
        clients: 6,
        ops_per_client: 250,
    };
    soak(system, seed, size, Duration::from_secs(90)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_dynamodb_under_injected_faults_keeps_every_invariant() {
    let seed = seed();
    let schedule = Schedule::new(seed, Rates::soak());
    let system = dynamodb_system(schedule).await;
    let size = Size {
        initial_users: 8,
        max_users: 10,
        groups: 2,
        members_per_group: 4,
        clients: 4,
        ops_per_client: 50,
    };
    soak(system, seed, size, Duration::from_secs(120)).await;
}
