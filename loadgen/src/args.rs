//! The command line.

use std::path::PathBuf;
use std::time::Duration;

/// `loadgen --help`.
pub const USAGE: &str = "\
loadgen: drives the messaging REST API and reports throughput, latency, errors and backlog drain

Usage: loadgen (--base-url URL | --spawn) (--rate N | --clients N) [options]

Target:
  --base-url URL          a running server, e.g. http://127.0.0.1:8080
  --spawn                 start the server itself on a fresh temporary data directory, port 0,
                          MESSAGING_RATE_LIMIT_PER_MINUTE=0, RUST_LOG=warn (unless set)
  --server-bin PATH       the binary --spawn starts (default: `messaging` beside loadgen, or
                          target/release/messaging)
  --server-env KEY=VALUE  extra environment for the spawned server (repeatable)

Load:
  --rate N                open loop: N operations per second in total, spread over
                          --connections workers; latency counts from the intended start
  --connections N         open-loop workers, one kept-alive connection each (default 64)
  --clients N             closed loop: N workers, each sending its next request on the reply
  --duration SECS         how long the load runs (default 10)
  --mix SPEC              weights, e.g. direct=85,group10=8,group100=2,history=5 or the preset
                          `realistic` (that one); default direct=100
  --message-bytes N       message text length (default 100)
  --threads N             the client's runtime threads (default 2)
  --timeout SECS          per-request timeout (default 10)

Population:
  --users N               registered users (default 1000)
  --groups10 N            groups of 10 members (default 20)
  --groups100 N           groups of 100 members (default 5)
  --watchers N            users whose get-new-messages is polled to measure send-to-visible
                          (default 100); messages to the others are not timed
  --long-poll MODE        auto (default: detect `wait=`), on, off
  --wait SECS             long-poll wait (default 5)
  --poll-interval MS      pause between polls without long polling (default 100)
  --drain-timeout SECS    how long to wait for the backlog after the load (default 30)

Report:
  --health                also run GET /health with the same client and worker count for the
                          same duration, and print the send / health throughput ratio
  --json                  print the report as JSON instead of a table
";

/// How the load is paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Open loop: `rate` operations per second over `connections` workers.
    Open { rate: u64, connections: usize },
    /// Closed loop: `clients` workers back to back.
    Closed { clients: usize },
}

impl Pace {
    /// The number of workers (and connections) the load uses.
    pub fn workers(&self) -> usize {
        match *self {
            Pace::Open { connections, .. } => connections,
            Pace::Closed { clients } => clients,
        }
    }
}

/// Relative weights of the operations of the mix.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Mix {
    /// `POST /send-message`.
    pub direct: u32,
    /// `POST /send-group-message` to a group of 10.
    pub group10: u32,
    /// `POST /send-group-message` to a group of 100.
    pub group100: u32,
    /// `GET /get-all-messages` (one page of 50).
    pub history: u32,
}

impl Mix {
    /// The "realistic" preset: mostly direct messages, some group traffic, some history reads.
    pub const REALISTIC: Mix = Mix {
        direct: 85,
        group10: 8,
        group100: 2,
        history: 5,
    };

    fn parse(spec: &str) -> Result<Mix, String> {
        if spec == "realistic" {
            return Ok(Mix::REALISTIC);
        }
        let mut mix = Mix {
            direct: 0,
            group10: 0,
            group100: 0,
            history: 0,
        };
        for part in spec.split(',') {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix: expected name=weight, got {part:?}"))?;
            let weight: u32 = weight
                .parse()
                .map_err(|_| format!("--mix: {weight:?} is not a weight"))?;
            match name {
                "direct" => mix.direct = weight,
                "group10" => mix.group10 = weight,
                "group100" => mix.group100 = weight,
                "history" => mix.history = weight,
                other => return Err(format!("--mix: unknown operation {other:?}")),
            }
        }
        if mix.direct + mix.group10 + mix.group100 + mix.history == 0 {
            return Err("--mix: every weight is 0".into());
        }
        Ok(mix)
    }
}

/// Whether pollers use `GET /get-new-messages?wait=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongPoll {
    /// Use it if the server validates `wait=` (an invalid value answers 400).
    Auto,
    /// Always.
    On,
    /// Never: poll every `--poll-interval`.
    Off,
}

/// Everything the command line says.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server to drive, unless `spawn`.
    pub base_url: Option<String>,
    /// Start the server.
    pub spawn: bool,
    /// The binary to start.
    pub server_bin: Option<PathBuf>,
    /// Extra environment for the started server.
    pub server_env: Vec<(String, String)>,
    /// Open or closed loop.
    pub pace: Pace,
    /// Length of the load.
    pub duration: Duration,
    /// The operation weights.
    pub mix: Mix,
    /// Message text length in bytes.
    pub message_bytes: usize,
    /// Client runtime threads.
    pub threads: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Registered users.
    pub users: usize,
    /// Groups of 10.
    pub groups10: usize,
    /// Groups of 100.
    pub groups100: usize,
    /// Polled users.
    pub watchers: usize,
    /// Long-poll mode.
    pub long_poll: LongPoll,
    /// Long-poll wait in seconds.
    pub wait_secs: u64,
    /// Pause between short polls.
    pub poll_interval: Duration,
    /// Backlog wait after the load.
    pub drain_timeout: Duration,
    /// Run the `/health` comparison.
    pub health: bool,
    /// JSON output.
    pub json: bool,
}

/// What the command line asked for.
pub enum Command {
    /// Print the usage.
    Help,
    /// Run.
    Run(Box<Options>),
}

/// Parses the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut o = Options {
        base_url: None,
        spawn: false,
        server_bin: None,
        server_env: Vec::new(),
        pace: Pace::Closed { clients: 0 },
        duration: Duration::from_secs(10),
        mix: Mix {
            direct: 100,
            group10: 0,
            group100: 0,
            history: 0,
        },
        message_bytes: 100,
        threads: 2,
        timeout: Duration::from_secs(10),
        users: 1000,
        groups10: 20,
        groups100: 5,
        watchers: 100,
        long_poll: LongPoll::Auto,
        wait_secs: 5,
        poll_interval: Duration::from_millis(100),
        drain_timeout: Duration::from_secs(30),
        health: false,
        json: false,
    };
    let mut rate = None;
    let mut clients = None;
    let mut connections = 64;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--base-url" => o.base_url = Some(value()?),
            "--spawn" => o.spawn = true,
            "--server-bin" => o.server_bin = Some(PathBuf::from(value()?)),
            "--server-env" => {
                let pair = value()?;
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--server-env: expected KEY=VALUE, got {pair:?}"))?;
                o.server_env.push((k.to_string(), v.to_string()));
            }
            "--rate" => rate = Some(number(flag, &value()?)?),
            "--connections" => connections = number(flag, &value()?)? as usize,
            "--clients" => clients = Some(number(flag, &value()?)? as usize),
            "--duration" => o.duration = Duration::from_secs_f64(seconds(flag, &value()?)?),
            "--mix" => o.mix = Mix::parse(&value()?)?,
            "--message-bytes" => o.message_bytes = number(flag, &value()?)? as usize,
            "--threads" => o.threads = number(flag, &value()?)?.max(1) as usize,
            "--timeout" => o.timeout = Duration::from_secs_f64(seconds(flag, &value()?)?),
            "--users" => o.users = number(flag, &value()?)? as usize,
            "--groups10" => o.groups10 = number(flag, &value()?)? as usize,
            "--groups100" => o.groups100 = number(flag, &value()?)? as usize,
            "--watchers" => o.watchers = number(flag, &value()?)? as usize,
            "--long-poll" => {
                o.long_poll = match value()?.as_str() {
                    "auto" => LongPoll::Auto,
                    "on" => LongPoll::On,
                    "off" => LongPoll::Off,
                    other => return Err(format!("--long-poll: auto, on or off, not {other:?}")),
                }
            }
            "--wait" => o.wait_secs = number(flag, &value()?)?,
            "--poll-interval" => o.poll_interval = Duration::from_millis(number(flag, &value()?)?),
            "--drain-timeout" => {
                o.drain_timeout = Duration::from_secs_f64(seconds(flag, &value()?)?)
            }
            "--health" => o.health = true,
            "--json" => o.json = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    o.pace = match (rate, clients) {
        (Some(rate), None) if rate > 0 && connections > 0 => Pace::Open { rate, connections },
        (None, Some(clients)) if clients > 0 => Pace::Closed { clients },
        _ => return Err("give exactly one of --rate N or --clients N (N > 0)".into()),
    };
    if o.base_url.is_some() == o.spawn {
        return Err("give exactly one of --base-url URL or --spawn".into());
    }
    if o.users < 2 {
        return Err("--users must be at least 2".into());
    }
    let needed = [(o.groups10, 10), (o.groups100, 100)];
    for (groups, size) in needed {
        if groups > 0 && o.users < size {
            return Err(format!("groups of {size} need --users {size} or more"));
        }
    }
    if (o.mix.group10 > 0 && o.groups10 == 0) || (o.mix.group100 > 0 && o.groups100 == 0) {
        return Err("the mix sends to groups, but --groups10/--groups100 is 0".into());
    }
    o.watchers = o.watchers.min(o.users);
    Ok(Command::Run(Box::new(o)))
}

fn number(flag: &str, text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{flag}: {text:?} is not a whole number"))
}

fn seconds(flag: &str, text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        _ => Err(format!("{flag}: {text:?} is not a number of seconds")),
    }
}
