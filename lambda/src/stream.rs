//! The projector's handler: one batch of the event table's DynamoDB stream, with partial batch
//! failures.
//!
//! Stream records of one shard must be applied in order, and Lambda resumes a shard from the
//! reported failure: so the handler never acknowledges past a record it could not decode or
//! project. It reports that record's sequence number as the only failure and stops; Lambda
//! retries from it (with `BisectBatchOnFunctionError` it also narrows the batch down), and the
//! records before it, already applied, are not sent again. Every read-model change is
//! idempotent, so records applied twice (a retried batch, a chunk that failed half-way) are
//! harmless.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use messaging_dynamodb::EventItem;
use messaging_events::RecordedEvent;
use messaging_projections::Projector;

/// Most events projected in one call: bounds the work redone when a chunk fails.
const MAX_CHUNK: usize = 100;

/// A stream record decoded into the event it carries, with the sequence number to report it by.
struct Decoded {
    sequence_number: Option<String>,
    event: RecordedEvent,
}

/// Projects a stream batch; on the first failure reports that record and applies nothing after.
pub async fn handle_stream_batch(
    projector: &Projector,
    event: StreamEvent,
) -> DynamoDbEventResponse {
    let mut chunk: Vec<Decoded> = Vec::new();
    for record in event.records {
        if record.event_name != "INSERT" {
            // Events are immutable: nothing in the event table is ever changed or deleted by
            // the application. Worth a look if it happens, not worth stopping the projector.
            tracing::warn!(
                event_name = record.event_name.as_str(),
                sequence_number = record.change.sequence_number.as_deref(),
                "skipping a stream record that is not an INSERT"
            );
            continue;
        }
        let sequence_number = record.change.sequence_number.clone();
        match decode(record) {
            Ok(event) => {
                chunk.push(Decoded {
                    sequence_number,
                    event,
                });
                if chunk.len() >= MAX_CHUNK {
                    if let Err(failed) = project(projector, std::mem::take(&mut chunk)).await {
                        return failure(failed);
                    }
                }
            }
            Err(error) => {
                if let Err(failed) = project(projector, std::mem::take(&mut chunk)).await {
                    return failure(failed);
                }
                tracing::error!(
                    sequence_number = sequence_number.as_deref(),
                    %error,
                    "undecodable event in the stream; stopping the batch at it"
                );
                return failure(sequence_number);
            }
        }
    }
    match project(projector, chunk).await {
        Ok(()) => DynamoDbEventResponse::default(),
        Err(failed) => failure(failed),
    }
}

/// The event an INSERT record's new image holds.
fn decode(record: EventRecord) -> Result<RecordedEvent, messaging_dynamodb::ItemError> {
    EventItem::from_item(record.change.new_image)?.into_recorded()
}

/// Projects contiguous records. If the chunk fails, projects them one by one to find the first
/// failing record, and returns its sequence number (the records before it are then applied).
async fn project(projector: &Projector, chunk: Vec<Decoded>) -> Result<(), Option<String>> {
    if chunk.is_empty() {
        return Ok(());
    }
    let events: Vec<RecordedEvent> = chunk.iter().map(|d| d.event.clone()).collect();
    let Err(error) = projector.handle(&events).await else {
        return Ok(());
    };
    tracing::warn!(%error, events = events.len(), "projecting a chunk failed; retrying its records one by one");
    for decoded in chunk {
        if let Err(error) = projector.handle(std::slice::from_ref(&decoded.event)).await {
            tracing::error!(
                sequence_number = decoded.sequence_number.as_deref(),
                stream = decoded.event.stream.as_str(),
                version = decoded.event.version,
                %error,
                "projecting an event failed; stopping the batch at it"
            );
            return Err(decoded.sequence_number);
        }
    }
    Ok(())
}

/// The response reporting one failed record. Without a sequence number (never the case for a
/// real stream record) the identifier is null, which makes Lambda retry the whole batch.
fn failure(sequence_number: Option<String>) -> DynamoDbEventResponse {
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = sequence_number;
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures.push(failure);
    response
}
