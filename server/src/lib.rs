//! The local driver of the messaging backend: the REST API over axum, served from one process
//! together with the projector, processor and sweep loops, on the embedded store.

mod aws_workers;
mod config;
mod dispatch;
mod hub;
mod lag;
mod replay;
mod state;
mod workers;
mod ws;

pub use aws_workers::{AwsWorkerDeps, AwsWorkers};
pub use config::{Backend, Config, ConfigError, ENV_HELP};
pub use dispatch::DISPATCHER_CONSUMER;
pub use hub::{Hub, Subscription, CHANNEL_CAPACITY};
pub use messaging_http::{router, AppState, Problem, PROBLEM_JSON, X_REQUEST_ID};
pub use replay::{
    run_replay, ReplayAction, ReplayCommand, ReplayOutcome, REPLAY_USAGE, SERVER_REFRESH,
};
pub use state::embedded_state;
pub use workers::{WorkerDeps, Workers, PROJECTOR_CONSUMER};
pub use ws::{ws_router, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX};

use anyhow::Context;
use axum::serve::ListenerExt;
use messaging_commands::{Dependencies, Dispatch, Processor, Sweeper};
use messaging_dynamodb::{
    create_event_tables, create_generations_table, create_queues, create_read_tables, queue_urls,
    AwsClients, DynamoCatalog, DynamoEventLog, DynamoEventStore, ResourceNames, SqsQueue,
    StreamPoller,
};
use messaging_embedded::{Embedded, EmbeddedCatalog};
use messaging_events::Timestamp;
use messaging_events::{ChangeFeed, Clock, EventStore, SystemClock, WorkQueue};
use messaging_projections::{
    GenerationCatalog, GenerationalReadStore, InboxWaiter, NotifyingReadStore, Projector, ReadStore,
};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

/// How many members of a group the local processor delivers to at a time: the events writer
/// commits concurrent appends together, so a group of 100 takes one round of commits instead
/// of seven (the queue stage's p50 lag at 2,000 mixed operations per second went from 32 ms
/// to 17 and 20 ms in two runs).
const LOCAL_DELIVERY_CONCURRENCY: usize = 100;

/// Serves the API and runs the background loops until `shutdown` resolves, then lets in-flight
/// requests finish, stops the loops and returns.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let started_at = clock.now();
    // Real-time delivery: the projector tells the hub, which wakes long polls and pushes to
    // WebSocket connections.
    let hub = Hub::new();
    let (state, workers) = match &config.backend {
        Backend::Embedded => start_embedded(&config, clock, started_at, &hub).await?,
        Backend::DynamoDb {
            table_prefix,
            create_resources,
        } => {
            start_dynamodb(
                &config,
                table_prefix,
                *create_resources,
                clock,
                started_at,
                &hub,
            )
            .await?
        }
    };

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let local_addr = listener.local_addr().context("reading the bound address")?;
    announce(local_addr);
    tracing::info!(addr = %local_addr, backend = ?config.backend, "serving");

    // Small replies should leave at once instead of waiting on Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let waiter: Arc<dyn InboxWaiter> = Arc::new(hub.clone());
    let app = router(state.clone())
        .merge(ws_router(state, hub.clone(), config.ws_recheck))
        .layer(axum::Extension(waiter));
    let stopping = hub.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Long polls answer at once; WebSocket connections get a close frame.
            stopping.shutdown();
        })
        .await;
    if !hub.connections_closed(ws::CLOSE_GRACE).await {
        tracing::warn!(
            open = hub.connections(),
            "WebSocket connections did not close in time"
        );
    }
    tracing::info!("HTTP server stopped; stopping workers");
    workers.stop().await;
    served.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// The background loops of either backend.
enum Running {
    Embedded(Workers),
    DynamoDb(AwsWorkers),
}

impl Running {
    async fn stop(self) {
        match self {
            Running::Embedded(workers) => workers.stop().await,
            Running::DynamoDb(workers) => workers.stop().await,
        }
    }
}

/// Opens the embedded store and starts its loops.
async fn start_embedded(
    config: &Config,
    clock: Arc<dyn Clock>,
    started_at: Timestamp,
    hub: &Hub,
) -> anyhow::Result<(AppState, Running)> {
    let data_dir = config.data_dir.clone();
    // Opening does blocking file I/O and schema setup.
    let embedded = tokio::task::spawn_blocking(move || Embedded::open(&data_dir))
        .await
        .context("opening the store")?
        .map_err(|error| {
            anyhow::anyhow!(
                "opening the store in {}: {error}",
                config.data_dir.display()
            )
        })?;
    let read = embedded_read_models(&embedded, config).await?;
    let state = embedded_state(&embedded, read.clone(), clock.clone(), config.limits)
        .with_rate_limit(config.rate_limit);
    let mut deps = worker_deps(&embedded, read.clone(), clock, started_at, config);
    deps.projector = notifying_projector(read, hub);
    let workers = Workers::start(deps);
    Ok((state, Running::Embedded(workers)))
}

/// The read models of the embedded store: whichever generation the pointer says, switching
/// when a `replay` in another process switches it.
pub async fn embedded_read_models(
    embedded: &Embedded,
    config: &Config,
) -> anyhow::Result<Arc<dyn ReadStore>> {
    let data_dir = config.data_dir.clone();
    let generation_zero = embedded.read.clone();
    let catalog =
        tokio::task::spawn_blocking(move || EmbeddedCatalog::open(&data_dir, generation_zero))
            .await
            .context("opening the read-model generations")?
            .context("opening the read-model generations")?;
    let catalog: Arc<dyn GenerationCatalog> = Arc::new(catalog);
    let read = GenerationalReadStore::open(catalog, SERVER_REFRESH)
        .await
        .context("opening the read models")?;
    Ok(Arc::new(read))
}

/// The event log and read-model generations on DynamoDB, for `replay`.
async fn dynamodb_replay_ports(
    table_prefix: &str,
    create_resources: bool,
    segments: u32,
) -> anyhow::Result<(
    Arc<dyn messaging_events::EventLog>,
    Arc<dyn GenerationCatalog>,
)> {
    let clients = AwsClients::from_env().await;
    let names = ResourceNames::new(table_prefix);
    if create_resources {
        create_generations_table(&clients, &names)
            .await
            .context("creating the generations table")?;
    }
    Ok((
        Arc::new(DynamoEventLog::new(&clients, &names, segments)),
        Arc::new(DynamoCatalog::new(&clients, &names)),
    ))
}

/// Connects to DynamoDB and SQS (creating missing resources if asked) and starts the loops
/// that stand in for the Lambda event source mappings.
async fn start_dynamodb(
    config: &Config,
    table_prefix: &str,
    create_resources: bool,
    clock: Arc<dyn Clock>,
    started_at: Timestamp,
    hub: &Hub,
) -> anyhow::Result<(AppState, Running)> {
    let clients = AwsClients::from_env().await;
    let names = ResourceNames::new(table_prefix);
    if create_resources {
        create_event_tables(&clients, &names)
            .await
            .context("creating the event tables")?;
        create_read_tables(&clients, &names)
            .await
            .context("creating the read tables")?;
        create_generations_table(&clients, &names)
            .await
            .context("creating the generations table")?;
        create_queues(&clients, &names)
            .await
            .context("creating the queues")?;
    }
    let urls = queue_urls(&clients, &names)
        .await
        .context("finding the queues")?;
    let store: Arc<dyn EventStore> = Arc::new(DynamoEventStore::new(&clients, &names));
    let catalog: Arc<dyn GenerationCatalog> = Arc::new(DynamoCatalog::new(&clients, &names));
    let read: Arc<dyn ReadStore> = Arc::new(
        GenerationalReadStore::open(catalog, SERVER_REFRESH)
            .await
            .context("opening the read models")?,
    );
    let direct_queue: Arc<dyn WorkQueue> = Arc::new(SqsQueue::new(&clients, urls.direct));
    let group_queue: Arc<dyn WorkQueue> = Arc::new(SqsQueue::new(&clients, urls.group));
    let poller = StreamPoller::new(&clients, &names, PROJECTOR_CONSUMER)
        .await
        .context("opening the event table's stream")?;
    let state = AppState::new(Dependencies {
        store: store.clone(),
        read: read.clone(),
        direct_queue: direct_queue.clone(),
        group_queue: group_queue.clone(),
        clock: clock.clone(),
        limits: config.limits,
        dispatch: Dispatch::EnqueueInBackground,
    })
    .with_rate_limit(config.rate_limit);
    let workers = AwsWorkers::start(AwsWorkerDeps {
        poller,
        projector: notifying_projector(read.clone(), hub),
        processor: Arc::new(Processor::new(store)),
        sweeper: Arc::new(Sweeper::new(
            read,
            direct_queue.clone(),
            group_queue.clone(),
        )),
        direct_queue,
        group_queue,
        clock,
        started_at,
        sweep_after: config.sweep_after,
    });
    Ok((state, Running::DynamoDb(workers)))
}

/// A projector that tells `hub` about every inbox entry once it is applied.
fn notifying_projector(read: Arc<dyn ReadStore>, hub: &Hub) -> Projector {
    Projector::new(Arc::new(NotifyingReadStore::new(
        read,
        Arc::new(hub.clone()),
    )))
}

/// The loops' inputs, taken from the embedded store's parts.
pub fn worker_deps(
    embedded: &Embedded,
    read: Arc<dyn ReadStore>,
    clock: Arc<dyn Clock>,
    started_at: messaging_events::Timestamp,
    config: &Config,
) -> WorkerDeps {
    let store: Arc<dyn EventStore> = embedded.events.clone();
    let feed: Arc<dyn ChangeFeed> = embedded.events.clone();
    let direct_queue: Arc<dyn WorkQueue> = embedded.direct_queue.clone();
    let group_queue: Arc<dyn WorkQueue> = embedded.group_queue.clone();
    WorkerDeps {
        feed,
        appended: embedded.events.appended(),
        projector: Projector::new(read.clone()),
        direct_enqueued: embedded.direct_queue.enqueued(),
        group_enqueued: embedded.group_queue.enqueued(),
        // Normally the only writer of its inboxes (one server per data directory); a stale end
        // would cost a refused append, never a wrong delivery.
        processor: Arc::new(
            Processor::new(store)
                .remembering_inbox_ends()
                .delivering_at_once(LOCAL_DELIVERY_CONCURRENCY),
        ),
        sweeper: Arc::new(Sweeper::new(
            read,
            direct_queue.clone(),
            group_queue.clone(),
        )),
        direct_queue,
        group_queue,
        clock,
        started_at,
        sweep_after: config.sweep_after,
    }
}

/// Tells whoever started the process where it listens: the one line written to stdout, which
/// scripts and tests read to learn the port when port 0 was asked for.
fn announce(addr: SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "listening on http://{addr}").and_then(|()| stdout.flush())
    {
        tracing::warn!(%error, "could not write the listening line to stdout");
    }
}
