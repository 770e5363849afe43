//! The sweeper function: invoked by an EventBridge schedule, re-enqueues accepted messages that
//! have no outcome yet (the append-then-enqueue gap, PRODUCT.md invariant 1).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use messaging_events::SystemClock;
use messaging_lambda::{handle_sweep, SweepReport};

#[tokio::main]
async fn main() -> Result<(), Error> {
    messaging_lambda::logging::init();
    let (sweeper, sweep_after) = messaging_lambda::config::aws_sweeper()
        .await
        .inspect_err(messaging_lambda::logging::cold_start_failed)?;
    let sweeper = &sweeper;
    // The scheduled event's content does not matter: every run sweeps up to "now".
    lambda_runtime::run(service_fn(
        |_event: LambdaEvent<serde_json::Value>| async move {
            let report: SweepReport = handle_sweep(sweeper, &SystemClock, sweep_after).await?;
            Ok::<_, Error>(report)
        },
    ))
    .await
}
