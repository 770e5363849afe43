//! The local stand-in for Lambda's DynamoDB-stream event source mapping: reads the events
//! table's stream shard by shard and hands out batches in exactly the shape Lambda delivers
//! ([`aws_lambda_events::event::dynamodb::Event`]), with the mapping's at-least-once semantics.
//!
//! - A batch is done once the consumer commits its last sequence number; the checkpoint is
//!   stored in the checkpoints table under (consumer, shard), so a new poller (after a restart)
//!   resumes after it. Shards without a checkpoint start at `TRIM_HORIZON`.
//! - A batch that was not (fully) committed when the next poll comes is delivered again from
//!   after the last committed record: Lambda's retry from the failed record, in order.
//! - A child shard is read only after its parent is read to its end and committed, so records
//!   of one key stay in order across shard splits.
//!
//! The shard iterator is re-created from the position before every read instead of following
//! `NextShardIterator`: an `AFTER_SEQUENCE_NUMBER` iterator is exact on AWS, and on moto an
//! iterator held across a cancelled `TransactWriteItems` points at a discarded copy of the
//! table (moto rolls transactions back by swapping the table object): it would miss every
//! later record and hand out the rolled-back puts as phantom records. It also sidesteps
//! moto's HTTP 500 for stale iterators and AWS's 15-minute iterator expiry.

use crate::error::classify;
use crate::event_tables::checkpoints_table;
use crate::{AwsClients, DynamoError, ResourceNames};
use aws_lambda_events::event::dynamodb::{
    Event, EventRecord, StreamRecord, StreamViewType as LambdaViewType, UserIdentity,
};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError;
use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType, StreamViewType};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

/// How often the stream is described again to discover new shards (Lambda does it
/// continuously; shards split about every few hours).
const DESCRIBE_EVERY: Duration = Duration::from_secs(10);
/// How many empty pages a read from the trim horizon follows before giving up until the next
/// poll.
const TRIM_HORIZON_HOPS: usize = 3;
/// The most records one `GetRecords` call returns.
const MAX_GET_RECORDS: usize = 1000;

/// One shard's new records, as the Lambda event the projector function receives.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    /// The shard the records come from; pass it back to [`StreamPoller::commit`].
    pub shard_id: String,
    /// The records, oldest first, as Lambda delivers them.
    pub event: Event,
}

/// Reads the events table's DynamoDB stream with checkpoints, like an event source mapping.
#[derive(Debug)]
pub struct StreamPoller {
    streams: aws_sdk_dynamodbstreams::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    checkpoints_table: String,
    consumer: String,
    stream_arn: String,
    region: String,
    shards: BTreeMap<String, Shard>,
    described_at: Option<Instant>,
}

/// What the poller knows of one shard.
#[derive(Debug, Default)]
struct Shard {
    /// The shard this one was split from; read first.
    parent: Option<String>,
    /// The last sequence number handed out by [`StreamPoller::poll`].
    delivered: Option<String>,
    /// The last sequence number committed (the stored checkpoint).
    committed: Option<String>,
    /// The shard is closed and was read to its end after `delivered`.
    ended: bool,
}

impl Shard {
    /// Read to its end and all of it committed: its children may go.
    fn finished(&self) -> bool {
        self.ended && self.delivered == self.committed
    }
}

impl StreamPoller {
    /// A poller of the events table's latest stream for `consumer` (the checkpoint owner).
    pub async fn new(
        clients: &AwsClients,
        names: &ResourceNames,
        consumer: &str,
    ) -> Result<Self, DynamoError> {
        let table = names.events_table();
        let described = clients
            .dynamodb
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .map_err(|e| classify("DescribeTable", &e))?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| DynamoError::Setup(format!("table {table} has no stream")))?
            .to_string();
        let region = clients
            .streams
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default();
        Ok(Self {
            streams: clients.streams.clone(),
            dynamodb: clients.dynamodb.clone(),
            checkpoints_table: checkpoints_table(names),
            consumer: consumer.to_string(),
            stream_arn,
            region,
            shards: BTreeMap::new(),
            described_at: None,
        })
    }

    /// The stream's ARN (the `eventSourceARN` of every record).
    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// Reads up to `max_records` new records from every shard that has some; a shard whose
    /// last batch was not fully committed is read again from its checkpoint. Fails only when
    /// no shard could be read.
    pub async fn poll(&mut self, max_records: usize) -> Result<Vec<StreamBatch>, DynamoError> {
        // Until a shard is known (a stream being enabled), describe at every poll.
        if self.shards.is_empty()
            || self
                .described_at
                .is_none_or(|at| at.elapsed() >= DESCRIBE_EVERY)
        {
            self.describe().await?;
        }
        let limit = i32::try_from(max_records.clamp(1, MAX_GET_RECORDS)).unwrap_or(1);
        let mut batches = Vec::new();
        let mut failure = None;
        for shard_id in self.readable() {
            match self.read_shard(&shard_id, limit).await {
                Ok(Some(batch)) => batches.push(batch),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(shard = %shard_id, %error, "reading a stream shard failed");
                    failure.get_or_insert(error);
                }
            }
        }
        match failure {
            Some(error) if batches.is_empty() => Err(error),
            _ => Ok(batches),
        }
    }

    /// Records that the consumer handled `shard_id` up to `sequence_number` (inclusive): stores
    /// the checkpoint, so that neither this poller nor a new one delivers those records again.
    /// A checkpoint never moves back.
    pub async fn commit(
        &mut self,
        shard_id: &str,
        sequence_number: &str,
    ) -> Result<(), DynamoError> {
        let committed = self
            .shards
            .get(shard_id)
            .and_then(|s| s.committed.as_deref());
        if committed.is_some_and(|c| !sequence_after(sequence_number, c)) {
            return Ok(());
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        self.dynamodb
            .put_item()
            .table_name(&self.checkpoints_table)
            .item("consumer", AttributeValue::S(self.consumer.clone()))
            .item("shard", AttributeValue::S(shard_id.to_string()))
            .item(
                "sequence_number",
                AttributeValue::S(sequence_number.to_string()),
            )
            .item("committed_at", AttributeValue::N(now.to_string()))
            .send()
            .await
            .map_err(|e| classify("PutItem", &e))?;
        if let Some(shard) = self.shards.get_mut(shard_id) {
            shard.committed = Some(sequence_number.to_string());
        }
        Ok(())
    }

    /// Learns the stream's shards (every page of them) and the checkpoints of new ones; forgets
    /// shards the stream no longer lists (trimmed after 24 hours).
    async fn describe(&mut self) -> Result<(), DynamoError> {
        let mut listed = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .streams
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start)
                .send()
                .await
                .map_err(|e| classify("DescribeStream", &e))?;
            let Some(description) = output.stream_description else {
                break;
            };
            for shard in description.shards.unwrap_or_default() {
                if let Some(id) = shard.shard_id {
                    listed.push((id, shard.parent_shard_id));
                }
            }
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        self.shards
            .retain(|id, _| listed.iter().any(|(listed, _)| listed == id));
        for (id, parent) in listed {
            if self.shards.contains_key(&id) {
                continue;
            }
            let checkpoint = self.load_checkpoint(&id).await?;
            self.shards.insert(
                id,
                Shard {
                    parent,
                    delivered: checkpoint.clone(),
                    committed: checkpoint,
                    ended: false,
                },
            );
        }
        self.described_at = Some(Instant::now());
        Ok(())
    }

    async fn load_checkpoint(&self, shard_id: &str) -> Result<Option<String>, DynamoError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(&self.checkpoints_table)
            .key("consumer", AttributeValue::S(self.consumer.clone()))
            .key("shard", AttributeValue::S(shard_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", &e))?;
        match output.item.as_ref().and_then(|i| i.get("sequence_number")) {
            None => Ok(None),
            Some(AttributeValue::S(sequence)) => Ok(Some(sequence.clone())),
            Some(_) => Err(DynamoError::Corrupt(format!(
                "checkpoint of {} on {shard_id} is not a string",
                self.consumer
            ))),
        }
    }

    /// Shards to read now: not finished, and whose parent (if still known) is finished.
    fn readable(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter(|(_, shard)| !shard.finished())
            .filter(|(_, shard)| {
                shard
                    .parent
                    .as_ref()
                    .and_then(|parent| self.shards.get(parent))
                    .is_none_or(Shard::finished)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// One `GetRecords` on a shard, from after its last delivered record (or from the
    /// checkpoint, when the last batch was not fully committed).
    async fn read_shard(
        &mut self,
        shard_id: &str,
        limit: i32,
    ) -> Result<Option<StreamBatch>, DynamoError> {
        let position = {
            let Some(shard) = self.shards.get_mut(shard_id) else {
                return Ok(None);
            };
            if shard.delivered != shard.committed {
                // The consumer did not commit the whole last batch: deliver again from after
                // the last record it did commit.
                shard.delivered = shard.committed.clone();
                shard.ended = false;
            }
            shard.delivered.clone()
        };
        let Some(mut iterator) = self.iterator(shard_id, position.as_deref()).await? else {
            return Ok(None);
        };
        let mut hops = 0;
        let output = loop {
            let output = match self
                .streams
                .get_records()
                .shard_iterator(iterator)
                .limit(limit)
                .send()
                .await
            {
                Ok(output) => output,
                Err(error) => {
                    if let Some(GetRecordsError::TrimmedDataAccessException(_)) =
                        error.as_service_error()
                    {
                        self.restart_at_trim_horizon(shard_id);
                    }
                    return Err(classify("GetRecords", &error));
                }
            };
            // From the trim horizon, the first portions of a shard may hold no records any
            // more; AWS documents that reaching records can take several calls.
            match (&output.records, &output.next_shard_iterator) {
                (Some(records), Some(next))
                    if records.is_empty() && position.is_none() && hops < TRIM_HORIZON_HOPS =>
                {
                    hops += 1;
                    iterator = next.clone();
                }
                _ => break output,
            }
        };
        let ended = output.next_shard_iterator.is_none();
        let records: Vec<EventRecord> = output
            .records
            .unwrap_or_default()
            .into_iter()
            .filter_map(|record| self.lambda_record(record))
            .collect();
        if ended {
            // A closed shard: its children appear in the next description.
            self.described_at = None;
        }
        let Some(shard) = self.shards.get_mut(shard_id) else {
            return Ok(None);
        };
        shard.ended = ended;
        let Some(last) = records
            .last()
            .and_then(|r| r.change.sequence_number.clone())
        else {
            return Ok(None);
        };
        shard.delivered = Some(last);
        let mut event = Event::default();
        event.records = records;
        Ok(Some(StreamBatch {
            shard_id: shard_id.to_string(),
            event,
        }))
    }

    /// A fresh iterator after `position` (or at the oldest record); `None` when the shard is
    /// gone from the stream.
    async fn iterator(
        &mut self,
        shard_id: &str,
        position: Option<&str>,
    ) -> Result<Option<String>, DynamoError> {
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard_id);
        let request = match position {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        match request.send().await {
            Ok(output) => Ok(output.shard_iterator),
            Err(error) => match error.as_service_error() {
                Some(GetShardIteratorError::ResourceNotFoundException(_)) => {
                    tracing::warn!(shard = %shard_id, "stream shard is gone; forgetting it");
                    self.shards.remove(shard_id);
                    Ok(None)
                }
                Some(GetShardIteratorError::TrimmedDataAccessException(_)) => {
                    self.restart_at_trim_horizon(shard_id);
                    Err(classify("GetShardIterator", &error))
                }
                _ => Err(classify("GetShardIterator", &error)),
            },
        }
    }

    /// The checkpoint is older than the stream's 24-hour retention: the records after it are
    /// gone, so the best left is to continue with the oldest one still there (what Lambda does).
    fn restart_at_trim_horizon(&mut self, shard_id: &str) {
        tracing::error!(
            shard = %shard_id,
            consumer = %self.consumer,
            "stream records after the checkpoint were trimmed before being processed; \
             continuing at the oldest record (replay rebuilds what they carried)"
        );
        if let Some(shard) = self.shards.get_mut(shard_id) {
            shard.delivered = None;
            shard.committed = None;
        }
    }

    /// A Streams record in the shape Lambda delivers it; records without a sequence number
    /// (never sent by DynamoDB) are skipped, as nothing could commit them.
    fn lambda_record(&self, record: Record) -> Option<EventRecord> {
        let change = record.dynamodb?;
        let sequence_number = change.sequence_number?;
        let mut lambda = StreamRecord::default();
        // Rounded down to the second, as DynamoDB Streams documents it and Lambda delivers it.
        if let Some(seconds) = change
            .approximate_creation_date_time
            .and_then(|at| u64::try_from(at.secs()).ok())
        {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
            lambda.approximate_creation_date_time = at.into();
        }
        lambda.keys = change.keys.unwrap_or_default().into();
        lambda.new_image = change.new_image.unwrap_or_default().into();
        lambda.old_image = change.old_image.unwrap_or_default().into();
        lambda.sequence_number = Some(sequence_number);
        lambda.size_bytes = change.size_bytes.unwrap_or_default();
        lambda.stream_view_type = change.stream_view_type.and_then(|view| match view {
            StreamViewType::NewImage => Some(LambdaViewType::NewImage),
            StreamViewType::OldImage => Some(LambdaViewType::OldImage),
            StreamViewType::NewAndOldImages => Some(LambdaViewType::NewAndOldImages),
            StreamViewType::KeysOnly => Some(LambdaViewType::KeysOnly),
            _ => None,
        });
        let mut event = EventRecord::default();
        event.aws_region = record.aws_region.unwrap_or_else(|| self.region.clone());
        event.change = lambda;
        event.event_id = record.event_id.unwrap_or_default();
        event.event_name = record
            .event_name
            .map(|name| name.as_str().to_string())
            .unwrap_or_default();
        event.event_source = Some(
            record
                .event_source
                .unwrap_or_else(|| "aws:dynamodb".to_string()),
        );
        event.event_version = record.event_version;
        event.event_source_arn = Some(self.stream_arn.clone());
        event.user_identity = record.user_identity.map(|identity| {
            let mut user = UserIdentity::default();
            user.type_ = identity.r#type.unwrap_or_default();
            user.principal_id = identity.principal_id.unwrap_or_default();
            user
        });
        Some(event)
    }
}

/// Whether sequence number `a` comes after `b`: they are decimal numbers of varying length.
fn sequence_after(a: &str, b: &str) -> bool {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    (a.len(), a) > (b.len(), b)
}

#[cfg(test)]
mod tests {
    use super::sequence_after;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(sequence_after(
            "1100000000017454423010",
            "1100000000017454423009"
        ));
        assert!(sequence_after("100", "99"));
        assert!(!sequence_after("99", "100"));
        assert!(!sequence_after("42", "42"));
    }
}
