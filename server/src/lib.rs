//! The local driver of the messaging backend: the REST API over axum, served from one process
//! together with the projector, processor and sweep loops, on the embedded store.

mod config;
mod state;
mod workers;

pub use config::{Config, ConfigError, ENV_HELP};
pub use messaging_http::{router, AppState, Problem, PROBLEM_JSON, X_REQUEST_ID};
pub use state::embedded_state;
pub use workers::{WorkerDeps, Workers, PROJECTOR_CONSUMER};

use anyhow::Context;
use axum::serve::ListenerExt;
use messaging_commands::{Processor, Sweeper};
use messaging_embedded::Embedded;
use messaging_events::{ChangeFeed, Clock, EventStore, SystemClock, WorkQueue};
use messaging_projections::{Projector, ReadStore};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

/// Serves the API and runs the background loops until `shutdown` resolves, then lets in-flight
/// requests finish, stops the loops and returns.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
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
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let started_at = clock.now();
    let state = embedded_state(&embedded, clock.clone(), config.limits);

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let local_addr = listener.local_addr().context("reading the bound address")?;

    let workers = Workers::start(worker_deps(&embedded, clock, started_at, &config));
    announce(local_addr);
    tracing::info!(
        addr = %local_addr,
        data_dir = %config.data_dir.display(),
        "serving"
    );

    // Small replies should leave at once instead of waiting on Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    tracing::info!("HTTP server stopped; stopping workers");
    workers.stop().await;
    served.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// The loops' inputs, taken from the embedded store's parts.
pub fn worker_deps(
    embedded: &Embedded,
    clock: Arc<dyn Clock>,
    started_at: messaging_events::Timestamp,
    config: &Config,
) -> WorkerDeps {
    let store: Arc<dyn EventStore> = embedded.events.clone();
    let feed: Arc<dyn ChangeFeed> = embedded.events.clone();
    let read: Arc<dyn ReadStore> = embedded.read.clone();
    let direct_queue: Arc<dyn WorkQueue> = embedded.direct_queue.clone();
    let group_queue: Arc<dyn WorkQueue> = embedded.group_queue.clone();
    WorkerDeps {
        feed,
        appended: embedded.events.appended(),
        projector: Projector::new(read.clone()),
        direct_enqueued: embedded.direct_queue.enqueued(),
        group_enqueued: embedded.group_queue.enqueued(),
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
