//! The HTTP API function: API Gateway HTTP API (payload v2) → the REST router, over DynamoDB
//! and SQS. The adapters are built once per cold start; the router is cloned per request
//! (everything inside it is shared).

use messaging_http::{router, AppState};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    messaging_lambda::logging::init();
    let ports = messaging_lambda::config::aws_ports()
        .await
        .inspect_err(messaging_lambda::logging::cold_start_failed)?;
    // Counted per warm instance: a best-effort bound; the stage's throttling is the global one.
    let state = AppState::new(ports.dependencies()).with_rate_limit(ports.config.rate_limit);
    let app = router(state);
    lambda_http::run(app).await
}
