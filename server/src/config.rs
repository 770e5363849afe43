//! Configuration of the local server, read once from the environment at startup.

use messaging_events::Limits;
use messaging_http::RateLimit;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Where to listen, where to keep data, and the limits and timings the server runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to bind; port 0 picks a free port (the `listening on` line tells which).
    pub addr: SocketAddr,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// The REST contract's limits.
    pub limits: Limits,
    /// How old unsettled accepted work must be before the sweep enqueues it again.
    pub sweep_after: Duration,
    /// Where events, read models and queues live.
    pub backend: Backend,
    /// Sends per user per minute (`MESSAGING_RATE_LIMIT_PER_MINUTE`; 0 = no limit).
    pub rate_limit: RateLimit,
    /// How often an idle WebSocket connection's token is checked again.
    pub ws_recheck: Duration,
}

/// The storage backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files in `data_dir`, in-process queues and change feed.
    Embedded,
    /// DynamoDB, DynamoDB Streams and SQS, through the AWS SDK's standard configuration.
    DynamoDb {
        /// Prefix of every table and queue name.
        table_prefix: String,
        /// Create missing tables, streams and queues at startup (emulators, dev accounts).
        create_resources: bool,
    },
}

/// A configuration value that cannot be used; the server refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// What it was set to.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

/// Every environment variable the server reads, with its meaning, for `--help`.
pub const ENV_HELP: &[(&str, &str)] = &[
    (
        "MESSAGING_ADDR",
        "address to listen on (default 127.0.0.1:8080)",
    ),
    (
        "MESSAGING_DATA_DIR",
        "directory of the embedded store (default ./data)",
    ),
    (
        "MESSAGING_BACKEND",
        "storage backend: embedded (default) or dynamodb (DynamoDB + Streams + SQS via the AWS SDK's standard variables: AWS_ENDPOINT_URL, AWS_REGION, credentials)",
    ),
    (
        "MESSAGING_TABLE_PREFIX",
        "dynamodb backend: prefix of every table and queue name (default messaging-)",
    ),
    (
        "MESSAGING_CREATE_RESOURCES",
        "dynamodb backend: 1 creates missing tables, streams and queues at startup",
    ),
    (
        "MESSAGING_SWEEP_AFTER_SECS",
        "age in seconds of unsettled accepted work before it is enqueued again (default 30)",
    ),
    (
        "MESSAGING_WS_RECHECK_SECS",
        "seconds between checks of an idle WebSocket connection's token; a revoked token's connection closes at the next check or push (default 30)",
    ),
    (
        "MESSAGING_MAX_MESSAGE_BYTES",
        "largest message text in bytes (default 4096)",
    ),
    (
        "MESSAGING_MAX_BODY_BYTES",
        "largest request body in bytes (default 65536)",
    ),
    (
        "MESSAGING_MAX_GROUP_NAME_CHARS",
        "longest group name in characters (default 128)",
    ),
    (
        "MESSAGING_MAX_GROUP_MEMBERS",
        "most members of a group (default 1000)",
    ),
    (
        "MESSAGING_MAX_PAGE_SIZE",
        "largest page of messages (default 100)",
    ),
    (
        "MESSAGING_RATE_LIMIT_PER_MINUTE",
        "sends (direct and group) per user per minute, bursts up to the same number; 429 with Retry-After beyond it (default 600; 0 = off)",
    ),
    ("RUST_LOG", "log filter (default info); logs go to stderr"),
    ("MESSAGING_LOG_FORMAT", "set to json for JSON log lines"),
];

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // An empty variable is treated as unset: `FOO= cmd` is a common way to clear one.
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());

        let backend = match get("MESSAGING_BACKEND").as_deref().map(str::trim) {
            None | Some("embedded") => Backend::Embedded,
            Some("dynamodb") => Backend::DynamoDb {
                table_prefix: get("MESSAGING_TABLE_PREFIX").unwrap_or_else(|| "messaging-".into()),
                create_resources: match get("MESSAGING_CREATE_RESOURCES").as_deref() {
                    None | Some("0") => false,
                    Some("1") => true,
                    Some(other) => {
                        return Err(ConfigError {
                            name: "MESSAGING_CREATE_RESOURCES",
                            value: other.into(),
                            reason: "expected 1 or 0".into(),
                        })
                    }
                },
            },
            Some(other) => {
                return Err(ConfigError {
                    name: "MESSAGING_BACKEND",
                    value: other.into(),
                    reason: "expected embedded or dynamodb".into(),
                })
            }
        };

        let addr = match get("MESSAGING_ADDR") {
            Some(value) => parse("MESSAGING_ADDR", &value)?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let data_dir = get("MESSAGING_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let sweep_after_secs: u64 = positive(&get, "MESSAGING_SWEEP_AFTER_SECS", 30)?;
        let ws_recheck_secs: u64 = positive(&get, "MESSAGING_WS_RECHECK_SECS", 30)?;

        let limits = Limits::from_lookup(&lookup).map_err(|error| ConfigError {
            name: error.name,
            value: error.value,
            reason: error.reason,
        })?;

        let rate_limit = RateLimit::from_lookup(&lookup).map_err(|error| ConfigError {
            name: messaging_http::RATE_LIMIT_VAR,
            value: error.value,
            reason: "expected a whole number of sends per minute (0 = off)".into(),
        })?;

        Ok(Config {
            addr,
            data_dir,
            limits,
            sweep_after: Duration::from_secs(sweep_after_secs),
            backend,
            rate_limit,
            ws_recheck: Duration::from_secs(ws_recheck_secs),
        })
    }
}

fn parse<T: FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError {
        name,
        value: value.to_string(),
        reason: e.to_string(),
    })
}

/// A positive integer, because zero would disable a limit or make a loop spin.
fn positive<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialEq + Default,
    T::Err: std::fmt::Display,
{
    let Some(value) = get(name) else {
        return Ok(default);
    };
    let parsed: T = parse(name, &value)?;
    if parsed == T::default() {
        return Err(ConfigError {
            name,
            value,
            reason: "must be greater than zero".into(),
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn given_no_variables_then_the_documented_defaults_apply() {
        let got = config(&[]).unwrap();
        assert_eq!(got.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(got.data_dir, PathBuf::from("./data"));
        assert_eq!(got.limits, Limits::default());
        assert_eq!(got.sweep_after, Duration::from_secs(30));
        assert_eq!(got.rate_limit, RateLimit { per_minute: 600 });
        assert_eq!(got.ws_recheck, Duration::from_secs(30));
    }

    #[test]
    fn given_a_rate_limit_then_it_is_used_and_zero_turns_it_off() {
        let got = config(&[("MESSAGING_RATE_LIMIT_PER_MINUTE", "30")]).unwrap();
        assert_eq!(got.rate_limit.per_minute, 30);
        let off = config(&[("MESSAGING_RATE_LIMIT_PER_MINUTE", "0")]).unwrap();
        assert!(!off.rate_limit.is_on());
    }

    #[test]
    fn given_variables_then_they_are_used() {
        let got = config(&[
            ("MESSAGING_ADDR", "0.0.0.0:0"),
            ("MESSAGING_DATA_DIR", "/tmp/x"),
            ("MESSAGING_SWEEP_AFTER_SECS", "5"),
            ("MESSAGING_MAX_BODY_BYTES", "1024"),
            ("MESSAGING_BACKEND", "embedded"),
            ("MESSAGING_WS_RECHECK_SECS", "2"),
        ])
        .unwrap();
        assert_eq!(got.addr, "0.0.0.0:0".parse().unwrap());
        assert_eq!(got.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(got.sweep_after, Duration::from_secs(5));
        assert_eq!(got.limits.max_body_bytes, 1024);
        assert_eq!(got.ws_recheck, Duration::from_secs(2));
    }

    #[test]
    fn given_bad_values_then_startup_is_refused_naming_the_variable() {
        for (name, value) in [
            ("MESSAGING_ADDR", "localhost"),
            ("MESSAGING_ADDR", "127.0.0.1:99999"),
            ("MESSAGING_SWEEP_AFTER_SECS", "0"),
            ("MESSAGING_SWEEP_AFTER_SECS", "-1"),
            ("MESSAGING_SWEEP_AFTER_SECS", "soon"),
            ("MESSAGING_WS_RECHECK_SECS", "0"),
            ("MESSAGING_MAX_PAGE_SIZE", "0"),
            ("MESSAGING_BACKEND", "postgres"),
            ("MESSAGING_RATE_LIMIT_PER_MINUTE", "-1"),
            ("MESSAGING_RATE_LIMIT_PER_MINUTE", "fast"),
        ] {
            let error = config(&[(name, value)]).unwrap_err();
            assert_eq!(error.name, name);
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn given_the_dynamodb_backend_then_its_prefix_and_creation_flag_are_read() {
        let got = config(&[
            ("MESSAGING_BACKEND", "dynamodb"),
            ("MESSAGING_TABLE_PREFIX", "dev-"),
            ("MESSAGING_CREATE_RESOURCES", "1"),
        ])
        .unwrap();
        assert_eq!(
            got.backend,
            Backend::DynamoDb {
                table_prefix: "dev-".into(),
                create_resources: true
            }
        );
        assert_eq!(config(&[]).unwrap().backend, Backend::Embedded);
    }

    #[test]
    fn given_an_empty_variable_then_it_counts_as_unset() {
        let got = config(&[("MESSAGING_ADDR", ""), ("MESSAGING_DATA_DIR", " ")]).unwrap();
        assert_eq!(got.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(got.data_dir, PathBuf::from("./data"));
    }
}
