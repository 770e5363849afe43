//! What a function reads from its environment at cold start, and the AWS adapters built from it
//! once per cold start (clients keep their connection pools across invocations).
//!
//! | variable | required | meaning |
//! |---|---|---|
//! | `MESSAGING_TABLE_PREFIX` | yes | prefix of every table and queue name (e.g. `messaging-prod-`) |
//! | `MESSAGING_DIRECT_QUEUE_URL`, `MESSAGING_GROUP_QUEUE_URL` | no | the queues' URLs; when both are set no `GetQueueUrl` call is made |
//! | `MESSAGING_SWEEP_AFTER_SECS` | no | the sweeper's age for "accepted but no outcome" (default 30) |
//! | `MESSAGING_RATE_LIMIT_PER_MINUTE` | no | sends per user per minute, counted per warm instance (best effort; API Gateway's stage throttling is the global bound); default 600, `0` = off |
//! | `MESSAGING_MAX_MESSAGE_BYTES`, `MESSAGING_MAX_BODY_BYTES`, `MESSAGING_MAX_GROUP_NAME_CHARS`, `MESSAGING_MAX_GROUP_MEMBERS`, `MESSAGING_MAX_PAGE_SIZE` | no | the REST contract's limits (defaults as on the local server) |
//!
//! The AWS SDK reads its own standard variables (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL`).
//!
//! The read models are reached through their generation pointer (`{prefix}generations`), which
//! is re-read every [`GENERATIONS_REFRESH`], so a switch made by `messaging replay` takes effect
//! without a redeployment.

use anyhow::Context;
use messaging_commands::{Dependencies, Dispatch, Processor, Sweeper};
use messaging_dynamodb::{
    queue_urls, AwsClients, DynamoCatalog, DynamoEventStore, QueueUrls, ResourceNames, SqsQueue,
};
use messaging_events::{Limits, SystemClock};
use messaging_http::RateLimit;
use messaging_projections::{GenerationalReadStore, Projector};
use std::sync::Arc;
use std::time::Duration;

/// The variable holding the resource name prefix.
pub const TABLE_PREFIX: &str = "MESSAGING_TABLE_PREFIX";
/// The variable holding the direct queue's URL.
pub const DIRECT_QUEUE_URL: &str = "MESSAGING_DIRECT_QUEUE_URL";
/// The variable holding the group queue's URL.
pub const GROUP_QUEUE_URL: &str = "MESSAGING_GROUP_QUEUE_URL";
/// The variable holding the sweeper's age threshold in seconds.
pub const SWEEP_AFTER_SECS: &str = "MESSAGING_SWEEP_AFTER_SECS";
/// The default of [`SWEEP_AFTER_SECS`], as on the local server.
const DEFAULT_SWEEP_AFTER_SECS: u64 = 30;

/// How often a warm function re-reads the read models' generation pointer. A replay announces
/// a new generation and then waits its `settle` time before reading the event log, counting on
/// every live writer to have seen the announcement by then (so that no event misses the new
/// generation): `messaging replay`'s settle must exceed this. Shorter costs one consistent
/// `GetItem` more often per warm function; longer delays a switch for readers.
pub const GENERATIONS_REFRESH: Duration = Duration::from_secs(5);

/// A function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaConfig {
    /// Table and queue names.
    pub names: ResourceNames,
    /// The queues' URLs, if the deployment passes them.
    pub queue_urls: Option<QueueUrlOverride>,
    /// The REST contract's limits.
    pub limits: Limits,
    /// How old accepted work without an outcome must be before the sweeper re-enqueues it.
    pub sweep_after: Duration,
    /// Sends per user per minute, counted in this instance (`0` = no limit).
    pub rate_limit: RateLimit,
}

/// Queue URLs given in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrlOverride {
    /// The direct-message queue.
    pub direct: String,
    /// The group-message queue.
    pub group: String,
}

/// A configuration value that cannot be used; the function fails its cold start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// Why it was refused.
    pub reason: String,
}

impl LambdaConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<LambdaConfig, ConfigError> {
        LambdaConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<LambdaConfig, ConfigError> {
        // An empty variable counts as unset.
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        let prefix = get(TABLE_PREFIX).ok_or(ConfigError {
            name: TABLE_PREFIX,
            reason: "required: the prefix of every table and queue name".into(),
        })?;
        let queue_urls = match (get(DIRECT_QUEUE_URL), get(GROUP_QUEUE_URL)) {
            (Some(direct), Some(group)) => Some(QueueUrlOverride { direct, group }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError {
                    name: GROUP_QUEUE_URL,
                    reason: format!("must be set together with {DIRECT_QUEUE_URL}"),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    name: DIRECT_QUEUE_URL,
                    reason: format!("must be set together with {GROUP_QUEUE_URL}"),
                })
            }
        };
        let limits = Limits::from_lookup(&lookup).map_err(|error| ConfigError {
            name: error.name,
            reason: format!("{:?}: {}", error.value, error.reason),
        })?;
        let sweep_after = match get(SWEEP_AFTER_SECS) {
            None => DEFAULT_SWEEP_AFTER_SECS,
            Some(value) => match value.parse::<u64>() {
                Ok(secs) if secs > 0 => secs,
                _ => {
                    return Err(ConfigError {
                        name: SWEEP_AFTER_SECS,
                        reason: format!("{value:?}: must be a positive number of seconds"),
                    })
                }
            },
        };
        let rate_limit = RateLimit::from_lookup(&lookup).map_err(|error| ConfigError {
            name: messaging_http::RATE_LIMIT_VAR,
            reason: format!("{:?}: expected a whole number (0 = off)", error.value),
        })?;
        Ok(LambdaConfig {
            names: ResourceNames::new(prefix),
            queue_urls,
            limits,
            sweep_after: Duration::from_secs(sweep_after),
            rate_limit,
        })
    }
}

/// Every adapter the HTTP function needs, over one set of clients.
#[derive(Clone)]
pub struct AwsPorts {
    /// The configuration they were built from.
    pub config: LambdaConfig,
    /// The event store and claims.
    pub events: Arc<DynamoEventStore>,
    /// The read models, in the generations the pointer names.
    pub read: Arc<GenerationalReadStore>,
    /// Accepted direct messages.
    pub direct_queue: Arc<SqsQueue>,
    /// Accepted group messages.
    pub group_queue: Arc<SqsQueue>,
}

impl AwsPorts {
    /// The command handlers' dependencies, on the wall clock.
    pub fn dependencies(&self) -> Dependencies {
        Dependencies {
            store: self.events.clone(),
            read: self.read.clone(),
            direct_queue: self.direct_queue.clone(),
            group_queue: self.group_queue.clone(),
            clock: Arc::new(SystemClock),
            limits: self.config.limits,
            // Frozen once it answers: a background enqueue might never run.
            dispatch: Dispatch::Enqueue,
        }
    }
}

/// Reads the configuration and builds the clients (`AwsClients::from_env`, once).
async fn clients() -> anyhow::Result<(LambdaConfig, AwsClients)> {
    let config = LambdaConfig::from_env().context("reading the function's configuration")?;
    let clients = AwsClients::from_env().await;
    Ok((config, clients))
}

/// Every port (for the HTTP function): event store, read store and both queues.
pub async fn aws_ports() -> anyhow::Result<AwsPorts> {
    let (config, clients) = clients().await?;
    let urls = match &config.queue_urls {
        Some(urls) => QueueUrls {
            direct: urls.direct.clone(),
            group: urls.group.clone(),
        },
        None => queue_urls(&clients, &config.names)
            .await
            .context("looking up the queue URLs")?,
    };
    Ok(AwsPorts {
        events: Arc::new(DynamoEventStore::new(&clients, &config.names)),
        read: read_models(&clients, &config.names).await?,
        direct_queue: Arc::new(SqsQueue::new(&clients, urls.direct)),
        group_queue: Arc::new(SqsQueue::new(&clients, urls.group)),
        config,
    })
}

/// The processor over the DynamoDB event store (for the processor functions, which need
/// neither the read models nor the queues' URLs: their event source mapping reads the queue).
pub async fn aws_processor() -> anyhow::Result<Processor> {
    let (config, clients) = clients().await?;
    Ok(Processor::new(Arc::new(DynamoEventStore::new(
        &clients,
        &config.names,
    ))))
}

/// The sweeper over the read models' pending index and both queues (for the sweeper function),
/// with the age threshold it runs with.
pub async fn aws_sweeper() -> anyhow::Result<(Sweeper, Duration)> {
    let ports = aws_ports().await?;
    let sweeper = Sweeper::new(ports.read, ports.direct_queue, ports.group_queue);
    Ok((sweeper, ports.config.sweep_after))
}

/// The projector over the DynamoDB read models (for the projector function). While a replay
/// builds a generation, it writes every change there too.
pub async fn aws_projector() -> anyhow::Result<Projector> {
    let (config, clients) = clients().await?;
    Ok(Projector::new(read_models(&clients, &config.names).await?))
}

/// The read models behind their generation pointer. The serving catalog opens generations
/// without creating tables: the stack creates generation 0 and a replay creates every other
/// one before the pointer names it, so a cold start makes one `GetItem` and no table calls.
async fn read_models(
    clients: &AwsClients,
    names: &ResourceNames,
) -> anyhow::Result<Arc<GenerationalReadStore>> {
    let catalog = Arc::new(DynamoCatalog::serving(clients, names));
    let store = GenerationalReadStore::open(catalog, GENERATIONS_REFRESH)
        .await
        .context("reading the read models' generation pointer")?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_prefix_is_required() {
        let error = LambdaConfig::from_lookup(lookup(&[])).expect_err("refused");
        assert_eq!(error.name, TABLE_PREFIX);
        let error =
            LambdaConfig::from_lookup(lookup(&[(TABLE_PREFIX, "  ")])).expect_err("refused");
        assert_eq!(error.name, TABLE_PREFIX);
    }

    #[test]
    fn defaults_apply_to_everything_but_the_prefix() {
        let config =
            LambdaConfig::from_lookup(lookup(&[(TABLE_PREFIX, "messaging-prod-")])).expect("valid");
        assert_eq!(config.names, ResourceNames::new("messaging-prod-"));
        assert_eq!(config.names.events_table(), "messaging-prod-events");
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.queue_urls, None);
        assert_eq!(config.sweep_after, Duration::from_secs(30));
        assert_eq!(config.rate_limit, RateLimit::default());
    }

    #[test]
    fn limits_and_queue_urls_are_read() {
        let config = LambdaConfig::from_lookup(lookup(&[
            (TABLE_PREFIX, "p-"),
            ("MESSAGING_MAX_PAGE_SIZE", "20"),
            ("MESSAGING_MAX_BODY_BYTES", "1024"),
            (SWEEP_AFTER_SECS, "120"),
            ("MESSAGING_RATE_LIMIT_PER_MINUTE", "0"),
            (
                DIRECT_QUEUE_URL,
                "https://sqs.eu-west-1.amazonaws.com/1/p-direct.fifo",
            ),
            (
                GROUP_QUEUE_URL,
                "https://sqs.eu-west-1.amazonaws.com/1/p-group.fifo",
            ),
        ]))
        .expect("valid");
        assert_eq!(config.limits.max_page_size, 20);
        assert_eq!(config.limits.max_body_bytes, 1024);
        assert_eq!(config.sweep_after, Duration::from_secs(120));
        assert_eq!(config.rate_limit, RateLimit::OFF);
        assert_eq!(
            config.queue_urls.map(|urls| urls.group),
            Some("https://sqs.eu-west-1.amazonaws.com/1/p-group.fifo".to_string())
        );
    }

    #[test]
    fn unusable_values_are_refused() {
        for (name, value) in [
            ("MESSAGING_MAX_PAGE_SIZE", "0"),
            ("MESSAGING_MAX_MESSAGE_BYTES", "lots"),
            (SWEEP_AFTER_SECS, "0"),
            (SWEEP_AFTER_SECS, "soon"),
            ("MESSAGING_RATE_LIMIT_PER_MINUTE", "many"),
            (
                DIRECT_QUEUE_URL,
                "https://sqs.eu-west-1.amazonaws.com/1/p-direct.fifo",
            ),
        ] {
            let result = LambdaConfig::from_lookup(lookup(&[(TABLE_PREFIX, "p-"), (name, value)]));
            assert!(result.is_err(), "{name}={value} must be refused");
        }
    }
}
