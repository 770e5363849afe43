//! The event store port on DynamoDB.
//!
//! Each event is one item of the events table keyed by (`stream`, `version`); appending is a
//! conditional put of the next missing version. A single event without conditions is one
//! `PutItem`; anything else is one `TransactWriteItems` (event puts, version checks as
//! `ConditionCheck`s, claim puts into the claims table), so that it commits all or nothing.
//!
//! Semantics differ from the embedded store in one respect that DynamoDB cannot check without
//! reading: an expected version (or a [`VersionCheck`]) *ahead* of the stream is not detected —
//! a condition can only say "the stream has not moved past this version". Callers derive
//! expected versions from reads of the same stream, so theirs can only be behind, never ahead.

use crate::error::classify;
use crate::{AwsClients, DynamoError, EventItem, ResourceNames};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use messaging_events::{
    AppendError, AppendRequest, Claim, Clock, EventStore, RecordedEvent, StoreError, StreamId,
    SystemClock, VersionCheck, MAX_ITEM_BYTES,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// A DynamoDB item as the SDK holds it.
type Item = HashMap<String, AttributeValue>;

/// The most a transaction may carry in total (DynamoDB's limit for `TransactWriteItems`).
const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;
/// The condition of every insert: the key is not taken yet.
const NOT_EXISTS: &str = "attribute_not_exists(#k)";

/// The event store and claims on DynamoDB tables.
#[derive(Debug, Clone)]
pub struct DynamoEventStore {
    client: aws_sdk_dynamodb::Client,
    events_table: String,
    claims_table: String,
}

impl DynamoEventStore {
    /// A store on the events and claims tables named by `names`.
    pub fn new(clients: &AwsClients, names: &ResourceNames) -> Self {
        Self {
            client: clients.dynamodb.clone(),
            events_table: names.events_table(),
            claims_table: names.claims_table(),
        }
    }

    /// The fast path: one conditional `PutItem` (one write unit instead of a transaction's two
    /// per item).
    async fn put_event(
        &self,
        item: Item,
        recorded: &RecordedEvent,
    ) -> Result<Vec<RecordedEvent>, AppendError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.events_table)
            .set_item(Some(item))
            .condition_expression(NOT_EXISTS)
            .expression_attribute_names("#k", "stream")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(vec![recorded.clone()]),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(e)) => {
                    if is_own_event(e.item(), recorded) {
                        Ok(vec![recorded.clone()])
                    } else {
                        Err(AppendError::Conflict {
                            stream: recorded.stream.clone(),
                        })
                    }
                }
                _ => Err(classify("PutItem", &error).into()),
            },
        }
    }

    /// The general path: one transaction of checks, event puts and claim puts.
    async fn transact(
        &self,
        request: &AppendRequest,
        recorded: &[RecordedEvent],
        items: Vec<Item>,
    ) -> Result<Vec<RecordedEvent>, AppendError> {
        let plan = self.plan(request, recorded, items)?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(plan.items))
            // Makes the SDK's own retries of this call idempotent on AWS (for 10 minutes).
            .client_request_token(Uuid::new_v4().to_string())
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(recorded.to_vec()),
            Err(error) => error,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) =
            error.as_service_error()
        else {
            return Err(classify("TransactWriteItems", &error).into());
        };
        let reasons = canceled.cancellation_reasons();
        if is_own_transaction(&plan.targets, reasons, recorded) {
            return Ok(recorded.to_vec());
        }
        let failed = plan
            .targets
            .iter()
            .zip(reasons)
            .find(|(_, reason)| reason.code() == Some("ConditionalCheckFailed"));
        match failed {
            Some((Target::Event { stream, .. } | Target::Check(stream), _)) => {
                Err(AppendError::Conflict {
                    stream: stream.clone(),
                })
            }
            Some((Target::Claim(index), reason)) => {
                let key = request.claims[*index].key.clone();
                let existing = match reason.item().and_then(|item| item.get("value")) {
                    Some(value) => claim_value(value)?,
                    None => self.claim(&key).await?.ok_or_else(|| {
                        StoreError::Unavailable(format!("claim {key} was taken but is gone; retry"))
                    })?,
                };
                Err(AppendError::ClaimTaken { key, existing })
            }
            // Collisions with concurrent transactions, throttling: nothing was written.
            None => {
                let codes: Vec<&str> = reasons
                    .iter()
                    .filter_map(|r| r.code())
                    .filter(|c| *c != "None")
                    .collect();
                Err(StoreError::Unavailable(format!(
                    "transaction canceled ({}); retry",
                    codes.join(", ")
                ))
                .into())
            }
        }
    }

    /// The transaction items, in the embedded store's order of evaluation (checks, events,
    /// claims), so that the first failing item names the same error.
    fn plan(
        &self,
        request: &AppendRequest,
        recorded: &[RecordedEvent],
        items: Vec<Item>,
    ) -> Result<Plan, AppendError> {
        let mut plan = Plan::default();
        let puts: HashSet<(&StreamId, u64)> =
            recorded.iter().map(|e| (&e.stream, e.version)).collect();
        if puts.len() != recorded.len() {
            // Two appends that write the same version of a stream cannot both succeed.
            let stream = duplicate_stream(recorded);
            return Err(AppendError::Conflict { stream });
        }

        // An empty stream append still requires its stream to be at the expected version.
        let empty_appends = request
            .appends
            .iter()
            .filter(|a| a.events.is_empty())
            .map(|a| VersionCheck {
                stream: a.stream.clone(),
                version: a.expected_version,
            });
        let mut checked = HashSet::new();
        for check in request.checks.iter().cloned().chain(empty_appends) {
            let next = check.version.saturating_add(1);
            // A check on a version this request writes is implied by that put's own
            // condition (DynamoDB refuses two operations on one item in a transaction).
            if puts.contains(&(&check.stream, next))
                || !checked.insert((check.stream.clone(), next))
            {
                continue;
            }
            let condition = ConditionCheck::builder()
                .table_name(&self.events_table)
                .key("stream", AttributeValue::S(check.stream.0.clone()))
                .key("version", AttributeValue::N(next.to_string()))
                .condition_expression(NOT_EXISTS)
                .expression_attribute_names("#k", "stream")
                .build()
                .map_err(build_error)?;
            plan.push(
                TransactWriteItem::builder()
                    .condition_check(condition)
                    .build(),
                Target::Check(check.stream),
            );
        }

        for (event, item) in recorded.iter().zip(items) {
            let put = Put::builder()
                .table_name(&self.events_table)
                .set_item(Some(item))
                .condition_expression(NOT_EXISTS)
                .expression_attribute_names("#k", "stream")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_error)?;
            plan.push(
                TransactWriteItem::builder().put(put).build(),
                Target::Event {
                    stream: event.stream.clone(),
                    version: event.version,
                },
            );
        }

        let mut claimed: HashMap<&str, &Value> = HashMap::new();
        for (index, claim) in request.claims.iter().enumerate() {
            if let Some(first) = claimed.insert(&claim.key, &claim.value) {
                // As in the embedded store: the second claim finds the first one's value.
                return Err(AppendError::ClaimTaken {
                    key: claim.key.clone(),
                    existing: first.clone(),
                });
            }
            let put = Put::builder()
                .table_name(&self.claims_table)
                .set_item(Some(claim_item(claim)?))
                .condition_expression(NOT_EXISTS)
                .expression_attribute_names("#k", "key")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_error)?;
            plan.push(
                TransactWriteItem::builder().put(put).build(),
                Target::Claim(index),
            );
        }
        Ok(plan)
    }

    /// Every event of `stream` in (`after`, `to`], reading every page of the query.
    async fn query_range(
        &self,
        stream: &StreamId,
        after: u64,
        to: Option<u64>,
    ) -> Result<Vec<RecordedEvent>, DynamoError> {
        if to.is_some_and(|to| to <= after) {
            return Ok(Vec::new());
        }
        let mut query = self
            .client
            .query()
            .table_name(&self.events_table)
            .consistent_read(true)
            .expression_attribute_names("#s", "stream")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":s", AttributeValue::S(stream.0.clone()));
        // A key condition allows one comparison on the sort key: BETWEEN covers a bounded range.
        query = match to {
            Some(to) => query
                .key_condition_expression("#s = :s AND #v BETWEEN :lo AND :hi")
                .expression_attribute_values(":lo", AttributeValue::N((after + 1).to_string()))
                .expression_attribute_values(":hi", AttributeValue::N(to.to_string())),
            None => query
                .key_condition_expression("#s = :s AND #v > :after")
                .expression_attribute_values(":after", AttributeValue::N(after.to_string())),
        };
        let mut events = Vec::new();
        let mut start = None;
        loop {
            let page = query
                .clone()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("Query", &e))?;
            for item in page.items.unwrap_or_default() {
                events.push(decode_event(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(events),
            }
        }
    }

    /// The value of a claim, read consistently.
    async fn claim(&self, key: &str) -> Result<Option<Value>, DynamoError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.claims_table)
            .key("key", AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", &e))?;
        match output.item.as_ref().and_then(|item| item.get("value")) {
            Some(value) => Ok(Some(claim_value(value)?)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, AppendError> {
        request.validate()?;
        let recorded = record(&request, SystemClock.now());
        let items = recorded
            .iter()
            .map(event_item)
            .collect::<Result<Vec<_>, _>>()?;
        check_sizes(&items, &request.claims)?;
        let mut items = items;
        let single = request.appends.len() == 1
            && recorded.len() == 1
            && request.checks.is_empty()
            && request.claims.is_empty();
        if single {
            if let (Some(item), Some(event)) = (items.pop(), recorded.first()) {
                return self.put_event(item, event).await;
            }
        }
        self.transact(&request, &recorded, items).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        to_version: Option<u64>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self.query_range(stream, after_version, to_version).await?)
    }

    async fn last_event(&self, stream: &StreamId) -> Result<Option<RecordedEvent>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.events_table)
            .consistent_read(true)
            .key_condition_expression("#s = :s")
            .expression_attribute_names("#s", "stream")
            .expression_attribute_values(":s", AttributeValue::S(stream.0.clone()))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| classify("Query", &e))?;
        let item = output.items.unwrap_or_default().into_iter().next();
        Ok(item.map(decode_event).transpose()?)
    }

    async fn get_claim(&self, key: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.claim(key).await?)
    }
}

/// What one transaction item stands for, to read its cancellation reason.
enum Target {
    /// A version check on a stream.
    Check(StreamId),
    /// An event put.
    Event { stream: StreamId, version: u64 },
    /// A claim put: the index into the request's claims.
    Claim(usize),
}

/// The transaction's items and, at the same index, what each one is.
#[derive(Default)]
struct Plan {
    items: Vec<TransactWriteItem>,
    targets: Vec<Target>,
}

impl Plan {
    fn push(&mut self, item: TransactWriteItem, target: Target) {
        self.items.push(item);
        self.targets.push(target);
    }
}

/// The events as they will be recorded: versions follow each stream's expected version.
fn record(request: &AppendRequest, now: messaging_events::Timestamp) -> Vec<RecordedEvent> {
    let mut recorded = Vec::with_capacity(request.item_count());
    for append in &request.appends {
        for (offset, new) in (1u64..).zip(&append.events) {
            recorded.push(RecordedEvent {
                stream: append.stream.clone(),
                version: append.expected_version.saturating_add(offset),
                event_id: new.event_id,
                recorded_at: now,
                event: new.event.clone(),
            });
        }
    }
    recorded
}

fn event_item(event: &RecordedEvent) -> Result<Item, DynamoError> {
    let item = EventItem::from_recorded(event).to_item()?;
    Ok(Item::from(item))
}

fn claim_item(claim: &Claim) -> Result<Item, DynamoError> {
    let value = serde_json::to_string(&claim.value)
        .map_err(|e| DynamoError::Corrupt(format!("claim {} value: {e}", claim.key)))?;
    Ok(HashMap::from([
        ("key".to_string(), AttributeValue::S(claim.key.clone())),
        ("value".to_string(), AttributeValue::S(value)),
    ]))
}

fn decode_event(item: Item) -> Result<RecordedEvent, DynamoError> {
    let item: EventItem = serde_dynamo::from_item(item)
        .map_err(|e| DynamoError::Corrupt(format!("event item: {e}")))?;
    Ok(item.into_recorded()?)
}

fn claim_value(value: &AttributeValue) -> Result<Value, DynamoError> {
    let text = value
        .as_s()
        .map_err(|_| DynamoError::Corrupt("claim value is not a string".into()))?;
    serde_json::from_str(text).map_err(|e| DynamoError::Corrupt(format!("claim value: {e}")))
}

/// Whether `existing` (the item that failed our put's condition) is our own event, written by
/// an earlier attempt of this very call: the SDK retries a request whose response was lost.
/// Event id and recording time both match only for the same call (a new call of the port
/// records a new time), so to callers of the port this is invisible: they see one success.
fn is_own_event(existing: Option<&Item>, ours: &RecordedEvent) -> bool {
    let text = |name: &str| existing.and_then(|item| item.get(name));
    let event_id = text("event_id").and_then(|v| v.as_s().ok());
    let recorded_at = text("recorded_at").and_then(|v| v.as_n().ok());
    event_id.is_some_and(|id| *id == ours.event_id.to_string())
        && recorded_at.is_some_and(|at| *at == ours.recorded_at.micros().to_string())
}

/// Whether an earlier attempt of this very transaction committed: every event put failed only
/// because our own event is there (transactions are atomic, so its checks and claims committed
/// with it).
fn is_own_transaction(
    targets: &[Target],
    reasons: &[CancellationReason],
    recorded: &[RecordedEvent],
) -> bool {
    if recorded.is_empty() || reasons.len() != targets.len() {
        return false;
    }
    let mut own = 0;
    for (target, reason) in targets.iter().zip(reasons) {
        let Target::Event { stream, version } = target else {
            continue;
        };
        let ours = recorded
            .iter()
            .find(|e| e.stream == *stream && e.version == *version);
        match ours {
            Some(ours)
                if reason.code() == Some("ConditionalCheckFailed")
                    && is_own_event(reason.item(), ours) =>
            {
                own += 1
            }
            _ => return false,
        }
    }
    own == recorded.len()
}

/// The stream written twice at the same version by one request.
fn duplicate_stream(recorded: &[RecordedEvent]) -> StreamId {
    let mut seen = HashSet::new();
    recorded
        .iter()
        .find(|e| !seen.insert((&e.stream, e.version)))
        .or(recorded.first())
        .map(|e| e.stream.clone())
        .unwrap_or_else(|| StreamId(String::new()))
}

/// Refuses what DynamoDB would refuse for size, as [`AppendError::Invalid`] rather than as an
/// outage: items over 400 KB and transactions over 4 MB.
fn check_sizes(items: &[Item], claims: &[Claim]) -> Result<(), AppendError> {
    let mut total = 0;
    for item in items {
        let size = item_size(item);
        if size > MAX_ITEM_BYTES {
            return Err(AppendError::Invalid(format!(
                "event item of {size} bytes exceeds the item limit of {MAX_ITEM_BYTES}"
            )));
        }
        total += size;
    }
    for claim in claims {
        let size = claim.key.len() + claim.value.to_string().len() + "keyvalue".len();
        if size > MAX_ITEM_BYTES {
            return Err(AppendError::Invalid(format!(
                "claim {} of {size} bytes exceeds the item limit of {MAX_ITEM_BYTES}",
                claim.key
            )));
        }
        total += size;
    }
    if total > MAX_TRANSACTION_BYTES {
        return Err(AppendError::Invalid(format!(
            "{total} bytes in one append; the limit is {MAX_TRANSACTION_BYTES}"
        )));
    }
    Ok(())
}

/// An upper bound of DynamoDB's size of an item: attribute names plus values (numbers are
/// counted by their digits, which DynamoDB stores in about half as many bytes).
fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    _ => 1,
                }
        })
        .sum()
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> DynamoError {
    DynamoError::Refused {
        operation: "TransactWriteItems",
        code: "BuildError".into(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_events::{Event, Timestamp, UserId};

    fn recorded(recorded_at: i64) -> RecordedEvent {
        RecordedEvent {
            stream: StreamId::reads(UserId::new_random()),
            version: 1,
            event_id: Uuid::new_v4(),
            recorded_at: Timestamp(recorded_at),
            event: Event::MessagesRead {
                user_id: UserId::new_random(),
                up_to: 1,
            },
        }
    }

    #[test]
    fn only_the_same_call_recognises_its_event_as_its_own() {
        let ours = recorded(1_000);
        let item = event_item(&ours).expect("encodes");
        assert!(is_own_event(Some(&item), &ours));

        let later_call = RecordedEvent {
            recorded_at: Timestamp(2_000),
            ..ours.clone()
        };
        assert!(!is_own_event(Some(&item), &later_call));
        assert!(!is_own_event(Some(&item), &recorded(1_000)));
        assert!(!is_own_event(None, &ours));
    }

    #[test]
    fn a_transaction_is_its_own_only_when_every_event_put_found_itself() {
        let (a, b) = (recorded(5), recorded(5));
        let targets = vec![
            Target::Check(StreamId("x".into())),
            Target::Event {
                stream: a.stream.clone(),
                version: 1,
            },
            Target::Event {
                stream: b.stream.clone(),
                version: 1,
            },
        ];
        let failed = |event: &RecordedEvent| {
            let mut reason = CancellationReason::builder().code("ConditionalCheckFailed");
            for (name, value) in event_item(event).expect("encodes") {
                reason = reason.item(name, value);
            }
            reason.build()
        };
        let none = CancellationReason::builder().code("None").build();
        let both = [none.clone(), failed(&a), failed(&b)];
        assert!(is_own_transaction(&targets, &both, &[a.clone(), b.clone()]));
        let one = [none.clone(), failed(&a), none];
        assert!(!is_own_transaction(&targets, &one, &[a, b]));
    }
}
