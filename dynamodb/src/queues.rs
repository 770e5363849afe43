//! The two FIFO work queues and their dead-letter queues: creation for emulators and dev
//! accounts (CloudFormation creates them on AWS) and URL lookup.

use crate::{AwsClients, ReadError, ResourceNames};
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::HashMap;

/// How long a received message stays hidden by default (the processors' Lambda timeout must
/// stay below it).
pub const VISIBILITY_TIMEOUT_SECS: u32 = 60;
/// Receives after which SQS moves a message to its dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// Retention of both the queues and the dead-letter queues: the maximum, 14 days. A FIFO
/// message keeps its original enqueue time in the dead-letter queue, so the dead-letter queue
/// must keep messages at least as long as the source queue.
const RETENTION_SECS: u32 = 14 * 24 * 60 * 60;

/// The URLs of the work queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    /// Direct-message work ([`ResourceNames::direct_queue`]).
    pub direct: String,
    /// Group-message work ([`ResourceNames::group_queue`]).
    pub group: String,
}

/// The dead-letter queue of a FIFO queue: `x.fifo` → `x-dlq.fifo` (the `.fifo` suffix must
/// stay last).
pub fn dead_letter_queue_name(queue: &str) -> String {
    let base = queue.strip_suffix(".fifo").unwrap_or(queue);
    format!("{base}-dlq.fifo")
}

/// Creates the missing work queues and dead-letter queues (FIFO, explicit de-duplication ids,
/// redrive after [`MAX_RECEIVE_COUNT`] receives) and returns the queues' URLs. Existing queues
/// are left as they are.
pub async fn create_queues(
    clients: &AwsClients,
    names: &ResourceNames,
) -> Result<QueueUrls, ReadError> {
    Ok(QueueUrls {
        direct: ensure_queue_with_dlq(&clients.sqs, &names.direct_queue()).await?,
        group: ensure_queue_with_dlq(&clients.sqs, &names.group_queue()).await?,
    })
}

/// The URLs of existing work queues.
pub async fn queue_urls(
    clients: &AwsClients,
    names: &ResourceNames,
) -> Result<QueueUrls, ReadError> {
    let url = |name: String| async move {
        find_queue(&clients.sqs, &name)
            .await?
            .ok_or_else(|| ReadError::Resource {
                resource: name,
                detail: "the queue does not exist".into(),
            })
    };
    Ok(QueueUrls {
        direct: url(names.direct_queue()).await?,
        group: url(names.group_queue()).await?,
    })
}

async fn ensure_queue_with_dlq(
    client: &aws_sdk_sqs::Client,
    name: &str,
) -> Result<String, ReadError> {
    if let Some(url) = find_queue(client, name).await? {
        return Ok(url);
    }
    let dlq_name = dead_letter_queue_name(name);
    let dlq_url = match find_queue(client, &dlq_name).await? {
        Some(url) => url,
        None => create_queue(client, &dlq_name, fifo_attributes()).await?,
    };
    let dlq_arn = queue_arn(client, &dlq_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": MAX_RECEIVE_COUNT.to_string(),
    });
    let mut attributes = fifo_attributes();
    attributes.insert(
        QueueAttributeName::VisibilityTimeout,
        VISIBILITY_TIMEOUT_SECS.to_string(),
    );
    attributes.insert(QueueAttributeName::RedrivePolicy, redrive.to_string());
    create_queue(client, name, attributes).await
}

fn fifo_attributes() -> HashMap<QueueAttributeName, String> {
    HashMap::from([
        (QueueAttributeName::FifoQueue, "true".to_string()),
        // Every message carries its event id as de-duplication id: a retried enqueue of one
        // event is dropped, two events with equal bodies are not.
        (
            QueueAttributeName::ContentBasedDeduplication,
            "false".to_string(),
        ),
        (
            QueueAttributeName::MessageRetentionPeriod,
            RETENTION_SECS.to_string(),
        ),
    ])
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, ReadError> {
    let output = client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(|e| ReadError::request("sqs.CreateQueue", e))?;
    output.queue_url.ok_or_else(|| ReadError::Resource {
        resource: name.to_string(),
        detail: "CreateQueue returned no URL".into(),
    })
}

async fn find_queue(client: &aws_sdk_sqs::Client, name: &str) -> Result<Option<String>, ReadError> {
    match client.get_queue_url().queue_name(name).send().await {
        Ok(output) => Ok(output.queue_url),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_queue_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(error) => Err(ReadError::request("sqs.GetQueueUrl", error)),
    }
}

async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> Result<String, ReadError> {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| ReadError::request("sqs.GetQueueAttributes", e))?;
    output
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| ReadError::Resource {
            resource: url.to_string(),
            detail: "GetQueueAttributes returned no QueueArn".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_queue_keeps_the_fifo_suffix_last() {
        assert_eq!(
            dead_letter_queue_name("messaging-direct.fifo"),
            "messaging-direct-dlq.fifo"
        );
    }
}
