//! The read models on DynamoDB: one conditional write per change, and queries that read by
//! key and stop at their limit, so that no request grows with a user's history.

mod attrs;
mod writes;

use crate::read_tables::{
    ACCEPTED_AT, BLOCKS, GROUPS, HISTORY, INBOX, MEMBERSHIPS, PENDING, READ_MARKERS,
    UNSETTLED_INDEX, UNSETTLED_SHARD, UNSETTLED_SHARD_VALUE,
};
use crate::{AwsClients, ReadError, ResourceNames};
use async_trait::async_trait;
use attrs::{get_id, get_json, get_n, get_s, n, s, Item};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use messaging_events::{GroupId, Timestamp, UserId};
use messaging_projections::{
    HistoryEntry, InboxEntry, PendingWork, ReadModelChange, ReadStore, ReadStoreError,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::task::JoinSet;
use writes::{Action, Write};

/// Most writes of one `apply` in flight at once: enough to hide latency, few enough not to
/// burst past a fresh on-demand table's throughput.
const MAX_IN_FLIGHT: usize = 16;

/// The read-model store on DynamoDB tables (see [`crate::create_read_tables`]).
#[derive(Clone)]
pub struct DynamoReadStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: aws_sdk_dynamodb::Client,
    names: ResourceNames,
    requests: AtomicU64,
}

impl DynamoReadStore {
    /// A store on the read tables named by `names`.
    pub fn new(clients: &AwsClients, names: &ResourceNames) -> Self {
        Self {
            inner: Arc::new(Inner {
                client: clients.dynamodb.clone(),
                names: names.clone(),
                requests: AtomicU64::new(0),
            }),
        }
    }

    /// DynamoDB requests sent so far (each page of a query counts; SDK retries do not).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn table(&self, suffix: &str) -> String {
        self.names.name(suffix)
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies one item's writes in order.
    async fn write_chain(&self, chain: Vec<Write>) -> Result<(), ReadError> {
        for write in chain {
            self.write(write).await?;
        }
        Ok(())
    }

    async fn write(&self, write: Write) -> Result<(), ReadError> {
        let table = self.table(write.table);
        let names = (!write.names.is_empty()).then_some(write.names);
        let values = (!write.values.is_empty()).then_some(write.values);
        self.count();
        match write.action {
            Action::Put(item) => {
                let result = self
                    .client
                    .put_item()
                    .table_name(table)
                    .set_item(Some(item))
                    .set_condition_expression(write.condition.map(str::to_string))
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(error)
                        if error
                            .as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        Ok(())
                    }
                    Err(error) => Err(ReadError::request("dynamodb.PutItem", error)),
                }
            }
            Action::Update { key, expression } => {
                let result = self
                    .client
                    .update_item()
                    .table_name(table)
                    .set_key(Some(key))
                    .update_expression(expression)
                    .set_condition_expression(write.condition.map(str::to_string))
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(error)
                        if error
                            .as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        Ok(())
                    }
                    Err(error) => Err(ReadError::request("dynamodb.UpdateItem", error)),
                }
            }
        }
    }

    /// Runs a query page by page until `limit` items (all of them when `None`) or the end,
    /// asking each page for no more than the items still missing.
    async fn query(
        &self,
        build: impl Fn() -> QueryFluentBuilder,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, ReadError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut request = build().set_exclusive_start_key(start.take());
            if let Some(limit) = limit {
                let missing = limit.saturating_sub(items.len());
                if missing == 0 {
                    break;
                }
                request = request.limit(i32::try_from(missing).unwrap_or(i32::MAX));
            }
            self.count();
            let page = request
                .send()
                .await
                .map_err(|e| ReadError::request("dynamodb.Query", e))?;
            start = page.last_evaluated_key().cloned();
            items.extend(page.items.unwrap_or_default());
            if start.is_none() {
                break;
            }
        }
        Ok(items)
    }

    /// One item by key, strongly consistent.
    async fn get(&self, suffix: &str, key: Item) -> Result<Option<Item>, ReadError> {
        self.count();
        let output = self
            .client
            .get_item()
            .table_name(self.table(suffix))
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| ReadError::request("dynamodb.GetItem", e))?;
        Ok(output.item)
    }

    /// A strongly consistent query of one partition of a table.
    fn partition(&self, suffix: &str, hash: &str, value: String) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(self.table(suffix))
            .consistent_read(true)
            .expression_attribute_names("#h", hash)
            .expression_attribute_values(":h", s(value))
    }
}

#[async_trait]
impl ReadStore for DynamoReadStore {
    async fn apply(&self, changes: &[ReadModelChange]) -> Result<(), ReadStoreError> {
        let writes = changes
            .iter()
            .map(writes::write_for)
            .collect::<Result<Vec<_>, _>>()?;
        let mut chains = writes::chains(writes).into_iter();
        let mut tasks = JoinSet::new();
        loop {
            while tasks.len() < MAX_IN_FLIGHT {
                let Some(chain) = chains.next() else { break };
                let inner = self.inner.clone();
                tasks.spawn(async move { inner.write_chain(chain).await });
            }
            // On an error the JoinSet is dropped, which aborts the writes still in flight:
            // the caller retries the whole batch, and every write is idempotent.
            match tasks.join_next().await {
                None => return Ok(()),
                Some(Ok(result)) => result?,
                Some(Err(error)) => {
                    return Err(ReadStoreError::Unavailable(format!(
                        "a read-model write task failed: {error}"
                    )))
                }
            }
        }
    }

    async fn inbox_after(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, ReadStoreError> {
        let items = self
            .inner
            .query(
                || {
                    self.inner
                        .partition(INBOX, "user", user.to_string())
                        .key_condition_expression("#h = :h AND #p > :after")
                        .expression_attribute_names("#p", "position")
                        .expression_attribute_values(":after", n(after))
                },
                Some(limit),
            )
            .await?;
        let entries = items
            .iter()
            .map(|item| {
                Ok(InboxEntry {
                    position: get_n(item, "position", "inbox entry")?,
                    message: get_json(item, "message", "inbox entry")?,
                })
            })
            .collect::<Result<_, ReadError>>()?;
        Ok(entries)
    }

    async fn history_after(
        &self,
        user: UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ReadStoreError> {
        let build = || {
            let query = self.inner.partition(HISTORY, "user", user.to_string());
            match after {
                Some(after) => query
                    .key_condition_expression("#h = :h AND #k > :after")
                    .expression_attribute_names("#k", "sort_key")
                    .expression_attribute_values(":after", s(after)),
                None => query.key_condition_expression("#h = :h"),
            }
        };
        let items = self.inner.query(build, Some(limit)).await?;
        let entries = items
            .iter()
            .map(|item| {
                Ok(HistoryEntry {
                    sort_key: get_s(item, "sort_key", "history entry")?.to_string(),
                    message: get_json(item, "message", "history entry")?,
                })
            })
            .collect::<Result<_, ReadError>>()?;
        Ok(entries)
    }

    async fn read_marker(&self, user: UserId) -> Result<u64, ReadStoreError> {
        let key = [("user".to_string(), s(user.to_string()))].into();
        let marker = match self.inner.get(READ_MARKERS, key).await? {
            Some(item) => get_n(&item, "up_to", "read marker")?,
            None => 0,
        };
        Ok(marker)
    }

    async fn group_members(&self, group: GroupId) -> Result<Option<Vec<UserId>>, ReadStoreError> {
        let key = [("group_id".to_string(), s(group.to_string()))].into();
        if self.inner.get(GROUPS, key).await?.is_none() {
            return Ok(None);
        }
        let items = self
            .inner
            .query(
                || {
                    self.inner
                        .partition(MEMBERSHIPS, "group_id", group.to_string())
                        .key_condition_expression("#h = :h")
                        .filter_expression("#m = :yes")
                        .projection_expression("#u")
                        .expression_attribute_names("#m", "member")
                        .expression_attribute_names("#u", "user")
                        .expression_attribute_values(":yes", AttributeValue::Bool(true))
                },
                None,
            )
            .await?;
        let members = items
            .iter()
            .map(|item| get_id(item, "user", "membership", UserId::parse))
            .collect::<Result<_, _>>()?;
        Ok(Some(members))
    }

    async fn blocked_by(&self, blocker: UserId) -> Result<Vec<UserId>, ReadStoreError> {
        let items = self
            .inner
            .query(
                || {
                    self.inner
                        .partition(BLOCKS, "blocker", blocker.to_string())
                        .key_condition_expression("#h = :h")
                        .filter_expression("#a = :yes")
                        .projection_expression("#b")
                        .expression_attribute_names("#a", "active")
                        .expression_attribute_names("#b", "blocked")
                        .expression_attribute_values(":yes", AttributeValue::Bool(true))
                },
                None,
            )
            .await?;
        let blocked = items
            .iter()
            .map(|item| get_id(item, "blocked", "block", UserId::parse))
            .collect::<Result<_, _>>()?;
        Ok(blocked)
    }

    async fn pending_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingWork>, ReadStoreError> {
        // The index is eventually consistent (GSIs cannot be read consistently): work settled a
        // moment ago may still show up and is enqueued again, which the processor tolerates.
        let items = self
            .inner
            .query(
                || {
                    self.inner
                        .client
                        .query()
                        .table_name(self.inner.table(PENDING))
                        .index_name(UNSETTLED_INDEX)
                        .key_condition_expression("#h = :h AND #t < :before")
                        .expression_attribute_names("#h", UNSETTLED_SHARD)
                        .expression_attribute_names("#t", ACCEPTED_AT)
                        .expression_attribute_values(":h", s(UNSETTLED_SHARD_VALUE))
                        .expression_attribute_values(":before", n(before.micros()))
                },
                Some(limit),
            )
            .await?;
        let work = items
            .iter()
            .map(|item| get_json(item, "work", "pending work"))
            .collect::<Result<_, _>>()?;
        Ok(work)
    }
}

#[cfg(feature = "testing")]
impl DynamoReadStore {
    /// Writes `changes` without conditions, 25 puts per `BatchWriteItem`: for tests that need
    /// large read models fast (one conditional write per change takes minutes on moto). Changes
    /// that update an item rather than put it are applied as [`ReadStore::apply`] does.
    pub async fn seed(&self, changes: &[ReadModelChange]) -> Result<(), ReadError> {
        let mut puts: std::collections::HashMap<String, Vec<Item>> = Default::default();
        let mut updates = Vec::new();
        for change in changes {
            let write = writes::write_for(change)?;
            match write.action {
                Action::Put(item) => puts
                    .entry(self.inner.table(write.table))
                    .or_default()
                    .push(item),
                Action::Update { .. } => updates.push(write),
            }
        }
        for (table, items) in puts {
            crate::testing::batch_put(&self.inner.client, &table, items).await?;
        }
        self.inner.write_chain(updates).await
    }
}
