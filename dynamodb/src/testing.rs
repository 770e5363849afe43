//! Helpers for tests against moto server. `./scripts/test` installs moto in a virtual
//! environment, starts it on a free port and exports `MESSAGING_TEST_MOTO_ENDPOINT`; a test that
//! needs moto and does not find it fails loudly instead of skipping.

use crate::{AwsClients, QueueUrls, RequestCounter, ResourceNames};
use aws_config::Region;

/// The variable that carries moto's endpoint.
pub const MOTO_ENDPOINT_VAR: &str = "MESSAGING_TEST_MOTO_ENDPOINT";

/// moto's endpoint; panics with instructions when it is not set.
pub fn moto_endpoint() -> String {
    std::env::var(MOTO_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{MOTO_ENDPOINT_VAR} is not set: run the tests with ./scripts/test, which installs \
             and starts moto server (or start one and export {MOTO_ENDPOINT_VAR}=http://127.0.0.1:PORT)"
        )
    })
}

/// The environment variables a child process (the server binary) needs to talk to moto.
pub fn moto_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto_endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
    ]
}

/// SDK clients pointed at moto with dummy credentials.
pub async fn moto_clients() -> AwsClients {
    AwsClients::from_config(&moto_config().await)
}

/// SDK clients pointed at moto whose requests `counter` counts.
pub async fn moto_clients_counted(counter: &RequestCounter) -> AwsClients {
    AwsClients::counted(&moto_config().await, counter)
}

/// The SDK configuration for moto.
pub async fn moto_config() -> aws_config::SdkConfig {
    crate::sdk_config_loader()
        .endpoint_url(moto_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

/// Resource names unique to one test, so tests share one moto server without interfering.
pub fn unique_names() -> ResourceNames {
    ResourceNames::new(format!("t{}-", uuid::Uuid::new_v4().simple()))
}

/// Every table and queue of the deployment under [`unique_names`]: what a test of the whole
/// AWS side starts from.
pub async fn create_everything(clients: &AwsClients) -> (ResourceNames, QueueUrls) {
    let names = unique_names();
    crate::create_event_tables(clients, &names)
        .await
        .expect("event tables");
    crate::create_read_tables(clients, &names)
        .await
        .expect("read tables");
    let urls = crate::create_queues(clients, &names).await.expect("queues");
    (names, urls)
}

/// Writes `events` to the event table without conditions, 25 per `BatchWriteItem`: for tests
/// that need long histories fast (an append per event takes minutes on moto).
pub async fn seed_events(
    clients: &AwsClients,
    names: &ResourceNames,
    events: &[messaging_events::RecordedEvent],
) -> Result<(), crate::ReadError> {
    let items = events
        .iter()
        .map(|event| {
            let item = crate::EventItem::from_recorded(event)
                .to_item()
                .map_err(|error| corrupt("event item", error.to_string()))?;
            Ok(item.into())
        })
        .collect::<Result<Vec<_>, crate::ReadError>>()?;
    batch_put(&clients.dynamodb, &names.events_table(), items).await
}

fn corrupt(what: &'static str, detail: String) -> crate::ReadError {
    crate::ReadError::Corrupt { what, detail }
}

/// `BatchWriteItem` puts of `items` into `table`, 25 at a time, resending what comes back
/// unprocessed.
pub(crate) async fn batch_put(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
) -> Result<(), crate::ReadError> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    for chunk in items.chunks(25) {
        let mut requests = chunk
            .iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item.clone()))
                    .build()
                    .map_err(|error| corrupt("put request", error.to_string()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, crate::ReadError>>()?;
        while !requests.is_empty() {
            let output = client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .map_err(|error| crate::ReadError::request("dynamodb.BatchWriteItem", error))?;
            requests = output
                .unprocessed_items
                .and_then(|mut left| left.remove(table))
                .unwrap_or_default();
        }
    }
    Ok(())
}
