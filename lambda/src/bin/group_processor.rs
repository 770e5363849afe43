//! The group-message processor function: SQS FIFO `group.fifo` batches → delivery decisions,
//! reporting partial batch failures (`ReportBatchItemFailures`).

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use messaging_lambda::handle_sqs_batch;

#[tokio::main]
async fn main() -> Result<(), Error> {
    messaging_lambda::logging::init();
    let processor = messaging_lambda::config::aws_processor()
        .await
        .inspect_err(messaging_lambda::logging::cold_start_failed)?;
    let processor = &processor;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handle_sqs_batch(processor, event.payload).await)
    }))
    .await
}
