//! Logging for Lambda: one JSON object per line on stdout, which Lambda ships to CloudWatch Logs.

use tracing_subscriber::EnvFilter;

/// The filter when neither `RUST_LOG` nor `AWS_LAMBDA_LOG_LEVEL` is set.
const DEFAULT_FILTER: &str = "info";

/// Installs the JSON subscriber. The filter comes from `RUST_LOG`, else from the function's
/// `LoggingConfig.ApplicationLogLevel` (`AWS_LAMBDA_LOG_LEVEL`), else `info`; an unparsable
/// filter falls back to `info` with a warning. No timestamp (CloudWatch stamps every line) and
/// no colours. The span list carries the runtime's `requestId` and the HTTP request id, so
/// every line can be tied to its invocation.
///
/// Calling it twice is harmless: the second call keeps the first subscriber.
pub fn init() {
    let wanted = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|level| level.to_lowercase())
        })
        .filter(|value| !value.trim().is_empty());
    let (filter, refused) = match wanted.as_deref().map(EnvFilter::try_new) {
        None => (EnvFilter::new(DEFAULT_FILTER), None),
        Some(Ok(filter)) => (filter, None),
        Some(Err(error)) => (EnvFilter::new(DEFAULT_FILTER), Some(error)),
    };
    let installed = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_target(true)
        .with_current_span(false)
        .with_span_list(true)
        .try_init()
        .is_ok();
    if let (true, Some(error)) = (installed, refused) {
        tracing::warn!(filter = wanted.as_deref(), %error, "unusable log filter; logging at info");
    }
}

/// Logs why a cold start failed (bad configuration, unreachable AWS) as one JSON line before
/// the function exits with it (Lambda then reports `Runtime.ExitError`).
pub fn cold_start_failed(error: &anyhow::Error) {
    tracing::error!(error = format!("{error:#}"), "cold start failed");
}
