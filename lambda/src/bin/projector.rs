//! The projector function: the event table's DynamoDB stream → the read models, reporting the
//! first failed record (`ReportBatchItemFailures`) so the shard resumes from it.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use messaging_lambda::handle_stream_batch;

#[tokio::main]
async fn main() -> Result<(), Error> {
    messaging_lambda::logging::init();
    let projector = messaging_lambda::config::aws_projector()
        .await
        .inspect_err(messaging_lambda::logging::cold_start_failed)?;
    let projector = &projector;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Event>| async move {
        Ok::<_, Error>(handle_stream_batch(projector, event.payload).await)
    }))
    .await
}
