//! `messaging`: the command-line entry point of the messaging backend.

use messaging_server::{Config, ReplayCommand, ReplayOutcome, ENV_HELP, REPLAY_USAGE};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

const SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "serve",
        "serve the REST API on the embedded store (the default)",
    ),
    (
        "replay",
        "rebuild or verify the read models from the event log (messaging replay --help)",
    ),
    ("help", "print this help"),
];

fn usage() -> String {
    let mut text = String::from(
        "messaging: an event-sourced messaging backend\n\nUsage: messaging [SUBCOMMAND]\n\nSubcommands:\n",
    );
    for (name, what) in SUBCOMMANDS {
        text.push_str(&format!("  {name:<8} {what}\n"));
    }
    text.push_str("\nEnvironment:\n");
    for (name, what) in ENV_HELP {
        text.push_str(&format!("  {name:<32} {what}\n"));
    }
    text
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => serve(),
        ["replay", "--help"] | ["replay", "-h"] => {
            print!("{REPLAY_USAGE}");
            ExitCode::SUCCESS
        }
        ["replay", rest @ ..] => match ReplayCommand::parse(rest) {
            Ok(command) => replay(&command),
            Err(error) => {
                eprintln!("error: {error}\n\n{REPLAY_USAGE}");
                ExitCode::from(2)
            }
        },
        ["help"] | ["--help"] | ["-h"] => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("unknown arguments: {}\n\n{}", other.join(" "), usage());
            ExitCode::from(2)
        }
    }
}

/// Logging, the configuration from the environment and an async runtime: what every
/// subcommand starts with. A failure is printed and becomes the exit status.
fn start() -> Result<(Config, tokio::runtime::Runtime), ExitCode> {
    init_logging();
    let config = Config::from_env().map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::FAILURE
    })?;
    let runtime = tokio::runtime::Runtime::new().map_err(|error| {
        eprintln!("error: starting the async runtime: {error}");
        ExitCode::FAILURE
    })?;
    Ok((config, runtime))
}

/// Runs `replay` with the same configuration as `serve`; exit status 1 when `--verify`
/// finds differences or the replay fails.
fn replay(command: &ReplayCommand) -> ExitCode {
    let (config, runtime) = match start() {
        Ok(started) => started,
        Err(code) => return code,
    };
    match runtime.block_on(messaging_server::run_replay(&config, command)) {
        Ok(ReplayOutcome::Ok) => ExitCode::SUCCESS,
        Ok(ReplayOutcome::Differences) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> ExitCode {
    let (config, runtime) = match start() {
        Ok(started) => started,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        messaging_server::run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "server failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: stdout carries only the `listening on` line.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let json = std::env::var("MESSAGING_LOG_FORMAT").is_ok_and(|format| format == "json");
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed before serving starts,
/// so a signal arriving early is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down");
    })
}
