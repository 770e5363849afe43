//! The notifier function: the event table's DynamoDB stream (filtered to `MessageDelivered`
//! inserts) → API Gateway WebSocket connections of each recipient, reporting the first record
//! whose push should be retried (`ReportBatchItemFailures`).

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use messaging_lambda::notifier::{aws_notifier, epoch_seconds, handle_notify_batch};

#[tokio::main]
async fn main() -> Result<(), Error> {
    messaging_lambda::logging::init();
    let notifier = aws_notifier()
        .await
        .inspect_err(messaging_lambda::logging::cold_start_failed)?;
    let notifier = &notifier;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Event>| async move {
        Ok::<_, Error>(handle_notify_batch(notifier, event.payload, epoch_seconds()).await)
    }))
    .await
}
