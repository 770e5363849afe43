//! Counts the requests the SDK clients send, by service and operation: the cost meter's
//! source (each DynamoDB, Streams or SQS request is billed), and the proof in tests that an
//! operation's cost does not grow with a user's history.
//!
//! It also meters DynamoDB capacity units, computed from item sizes by AWS's published rules
//! (moto's `ConsumedCapacity` is a constant, whatever the item, so it cannot be the source):
//! see [`CapacityUnits`].

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub use capacity::CapacityUnits;

/// DynamoDB capacity units by AWS's rules for on-demand tables, from the items a request
/// writes or a response returns:
/// - item size: the UTF-8 length of every attribute name plus its value (strings: UTF-8
///   length; numbers: about one byte per two significant digits plus one; binary: length;
///   booleans and null: 1; lists and maps: 3 plus their elements, each plus 1);
/// - writes (`PutItem`, `UpdateItem`, `DeleteItem`, each put or delete of `BatchWriteItem`):
///   one write unit per started KB of the item, at least one; an `UpdateItem` is sized by its
///   key and new values, since the adapters' updates touch small items (markers, flags);
/// - `TransactWriteItems`: two write units per started KB of each item, condition checks
///   included;
/// - reads (`GetItem`, `Query`, `Scan`): one read unit per started 4 KB of everything
///   returned (a query's items summed, then rounded up), at least one even when nothing is
///   found; half that when eventually consistent; `BatchGetItem` per item.
mod capacity {
    use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
    use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemInput;
    use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
    use aws_sdk_dynamodb::operation::put_item::PutItemInput;
    use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
    use aws_sdk_dynamodb::operation::scan::{ScanInput, ScanOutput};
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_smithy_runtime_api::client::interceptors::context::{Input, Output};
    use aws_smithy_types::config_bag::{Storable, StoreReplace};
    use std::collections::HashMap;

    const WRITE_UNIT_BYTES: usize = 1024;
    const READ_UNIT_BYTES: usize = 4096;

    /// Read and write request units (on-demand tables bill exactly these).
    #[derive(Debug, Clone, Copy, Default, PartialEq)]
    pub struct CapacityUnits {
        /// Read request units.
        pub read: f64,
        /// Write request units.
        pub write: f64,
    }

    /// How a read was asked for, carried from the request to its response.
    #[derive(Debug, Clone, Copy)]
    pub struct Consistency {
        strong: bool,
    }

    impl Storable for Consistency {
        type Storer = StoreReplace<Self>;
    }

    /// What the request alone says about its cost.
    pub enum InputCost {
        /// A write of these units.
        Write(CapacityUnits),
        /// A read: the response will tell.
        Read(Consistency),
        /// Not a DynamoDB data operation (table management, other services).
        None,
    }

    type Item = HashMap<String, AttributeValue>;

    fn number_size(n: &str) -> usize {
        let digits = n.trim_start_matches(['-', '+', '0']).replace('.', "");
        let significant = digits.trim_end_matches('0').len().max(1);
        significant.div_ceil(2) + 1
    }

    fn value_size(value: &AttributeValue) -> usize {
        match value {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => number_size(n),
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
            AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
            AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
            AttributeValue::L(list) => 3 + list.iter().map(|v| value_size(v) + 1).sum::<usize>(),
            AttributeValue::M(map) => {
                3 + map
                    .iter()
                    .map(|(k, v)| k.len() + value_size(v) + 1)
                    .sum::<usize>()
            }
            _ => 0,
        }
    }

    fn item_size(item: &Item) -> usize {
        item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
    }

    fn units(bytes: usize, unit: usize) -> f64 {
        bytes.div_ceil(unit).max(1) as f64
    }

    fn write(bytes: usize) -> f64 {
        units(bytes, WRITE_UNIT_BYTES)
    }

    fn update_size(key: Option<&Item>, values: Option<&Item>) -> usize {
        key.map_or(0, item_size) + values.map_or(0, |v| v.values().map(value_size).sum())
    }

    /// The cost known from a request.
    pub fn of_input(input: &Input) -> InputCost {
        let writes = |write: f64| InputCost::Write(CapacityUnits { read: 0.0, write });
        let read = |strong: Option<bool>| {
            InputCost::Read(Consistency {
                strong: strong.unwrap_or(false),
            })
        };
        if let Some(put) = input.downcast_ref::<PutItemInput>() {
            writes(write(put.item().map_or(0, item_size)))
        } else if let Some(update) = input.downcast_ref::<UpdateItemInput>() {
            writes(write(update_size(
                update.key(),
                update.expression_attribute_values(),
            )))
        } else if input.downcast_ref::<DeleteItemInput>().is_some() {
            writes(1.0)
        } else if let Some(batch) = input.downcast_ref::<BatchWriteItemInput>() {
            let total = batch
                .request_items()
                .into_iter()
                .flat_map(|tables| tables.values())
                .flatten()
                .map(|request| match request.put_request() {
                    Some(put) => write(item_size(put.item())),
                    None => 1.0,
                })
                .sum();
            writes(total)
        } else if let Some(transaction) = input.downcast_ref::<TransactWriteItemsInput>() {
            let total = transaction
                .transact_items()
                .iter()
                .map(|item| {
                    let bytes = if let Some(put) = item.put() {
                        item_size(put.item())
                    } else if let Some(update) = item.update() {
                        update_size(Some(update.key()), update.expression_attribute_values())
                    } else {
                        // Deletes and condition checks: sized by their key, i.e. one unit.
                        0
                    };
                    2.0 * write(bytes)
                })
                .sum();
            writes(total)
        } else if let Some(get) = input.downcast_ref::<GetItemInput>() {
            read(get.consistent_read())
        } else if let Some(query) = input.downcast_ref::<QueryInput>() {
            read(query.consistent_read())
        } else if let Some(scan) = input.downcast_ref::<ScanInput>() {
            read(scan.consistent_read())
        } else if input
            .downcast_ref::<aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemInput>()
            .is_some()
        {
            // Consistency is per table there; the adapters do not use it, count it strong.
            read(Some(true))
        } else {
            InputCost::None
        }
    }

    /// The cost of a read, from its response.
    pub fn of_output(output: &Output, consistency: Consistency) -> CapacityUnits {
        let factor = if consistency.strong { 1.0 } else { 0.5 };
        let read = |bytes: usize| CapacityUnits {
            read: factor * units(bytes, READ_UNIT_BYTES),
            write: 0.0,
        };
        if let Some(get) = output.downcast_ref::<GetItemOutput>() {
            read(get.item().map_or(0, item_size))
        } else if let Some(query) = output.downcast_ref::<QueryOutput>() {
            read(query.items().iter().map(item_size).sum())
        } else if let Some(scan) = output.downcast_ref::<ScanOutput>() {
            read(scan.items().iter().map(item_size).sum())
        } else if let Some(batch) = output.downcast_ref::<BatchGetItemOutput>() {
            let total = batch
                .responses()
                .into_iter()
                .flat_map(|tables| tables.values())
                .flatten()
                .map(|item| factor * units(item_size(item), READ_UNIT_BYTES))
                .sum();
            CapacityUnits {
                read: total,
                write: 0.0,
            }
        } else {
            CapacityUnits::default()
        }
    }
}

/// Requests sent so far, keyed `Service.Operation` (e.g. `dynamodb.PutItem`); retries count,
/// as they are billed. DynamoDB capacity units too (once per operation, not per retry).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    units: Arc<Mutex<CapacityUnits>>,
}

impl RequestCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The counts since `before` (a previous snapshot), without zero entries.
    pub fn since(&self, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        self.snapshot()
            .into_iter()
            .map(|(op, n)| {
                let delta = n - before.get(&op).copied().unwrap_or(0);
                (op, delta)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// DynamoDB capacity units consumed so far.
    pub fn capacity(&self) -> CapacityUnits {
        self.units.lock().map(|u| *u).unwrap_or_default()
    }

    /// DynamoDB capacity units consumed since `before` (a previous [`Self::capacity`]).
    pub fn capacity_since(&self, before: CapacityUnits) -> CapacityUnits {
        let now = self.capacity();
        CapacityUnits {
            read: now.read - before.read,
            write: now.write - before.write,
        }
    }

    fn add_units(&self, units: CapacityUnits) {
        if let Ok(mut total) = self.units.lock() {
            total.read += units.read;
            total.write += units.write;
        }
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Writes are billed by what they write (known now, and billed even when a condition
        // fails); reads by what they return, so only their consistency is noted for later.
        match capacity::of_input(context.input()) {
            capacity::InputCost::Write(units) => self.add_units(units),
            capacity::InputCost::Read(consistency) => {
                cfg.interceptor_state().store_put(consistency);
            }
            capacity::InputCost::None => {}
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Ok(output), Some(consistency)) = (
            context.output_or_error(),
            cfg.load::<capacity::Consistency>(),
        ) {
            self.add_units(capacity::of_output(output, *consistency));
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let key = match cfg.load::<Metadata>() {
            Some(metadata) => format!("{}.{}", metadata.service(), metadata.name()),
            None => "unknown".to_string(),
        };
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key).or_insert(0) += 1;
        }
        Ok(())
    }
}
