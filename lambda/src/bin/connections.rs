//! The WebSocket API's `$connect` (bearer token check, then the connection is recorded for its
//! user) and `$disconnect` (forgotten) function.

use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use messaging_lambda::notifier::{aws_connection_ports, epoch_seconds, handle_connection_event};

#[tokio::main]
async fn main() -> Result<(), Error> {
    messaging_lambda::logging::init();
    let (handlers, connections) = aws_connection_ports()
        .await
        .inspect_err(messaging_lambda::logging::cold_start_failed)?;
    let (handlers, connections) = (&handlers, &connections);
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, Error>(
                handle_connection_event(handlers, connections, event.payload, epoch_seconds())
                    .await,
            )
        },
    ))
    .await
}
