//! `messaging replay`: rebuild, verify and manage read-model generations from the event log,
//! on either backend, with the same configuration as `serve`.

use crate::config::{Backend, Config};
use anyhow::Context;
use messaging_embedded::{Embedded, EmbeddedCatalog};
use messaging_events::EventLog;
use messaging_projections::replay::{
    all_projections, describe, names, Progress, ProgressSink, Replay, ReplayOptions,
};
use messaging_projections::{GenerationCatalog, Projection};
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// How often the server re-reads the generation pointer; replay's settle time must exceed it.
pub const SERVER_REFRESH: Duration = Duration::from_secs(1);

/// The settle time on DynamoDB: more than twice the Lambda functions' refresh interval (a
/// warm function that was idle re-reads the pointer on its next invocation, before it writes).
const DYNAMODB_SETTLE: Duration =
    Duration::from_secs(messaging_lambda::config::GENERATIONS_REFRESH.as_secs() * 2 + 2);

/// What `replay` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayAction {
    /// Rebuild into a new generation and switch to it.
    Rebuild,
    /// Rebuild into a scratch generation and compare.
    Verify,
    /// Print the pointer.
    Status,
    /// Abandon the generation under construction.
    Abort,
    /// Delete generations nothing refers to.
    DropUnused,
}

/// A parsed `replay` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayCommand {
    /// The action.
    pub action: ReplayAction,
    /// The projections to rebuild or verify (all when none is named).
    pub projections: BTreeSet<Projection>,
    /// Overrides the wait for live stores to notice a new generation.
    pub settle: Option<Duration>,
    /// Events per page.
    pub page_size: usize,
    /// Parallel scan segments (DynamoDB).
    pub segments: u32,
}

/// The `replay` usage text.
pub const REPLAY_USAGE: &str = "\
Usage: messaging replay ACTION [--projection NAME]... [--settle-secs N] [--page-size N] [--segments N]

Actions:
  --rebuild      rebuild the read models from the event log into a new generation, then switch
                 to it (resumes an interrupted rebuild of the same projections)
  --verify       rebuild into a scratch generation and compare it item by item with the live
                 one; prints the differences and exits with status 1 if there are any
  --status       print which generation each projection lives in, and any replay under way
  --abort        abandon (and delete) the generation under construction
  --drop-unused  delete the generations that no projection uses any more

Options:
  --projection NAME  only this projection (repeatable): users, blocks, groups, inbox, history,
                     read_markers, pending; default all
  --settle-secs N    wait after announcing a generation, before reading the log (default 3 on
                     the embedded store, 12 on DynamoDB: longer than the live refresh interval)
  --page-size N      events per page (default 1000)
  --segments N       parallel scan segments on DynamoDB (default 4)
";

impl ReplayCommand {
    /// Parses the arguments after `replay`.
    pub fn parse(args: &[&str]) -> Result<ReplayCommand, String> {
        let mut action = None;
        let mut projections = BTreeSet::new();
        let mut settle = None;
        let mut page_size = 1_000;
        let mut segments = 4;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .map(|value| value.to_string())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let chosen = match *arg {
                "--rebuild" => Some(ReplayAction::Rebuild),
                "--verify" => Some(ReplayAction::Verify),
                "--status" => Some(ReplayAction::Status),
                "--abort" => Some(ReplayAction::Abort),
                "--drop-unused" => Some(ReplayAction::DropUnused),
                "--projection" => {
                    let name = value("--projection")?;
                    let projection = Projection::parse(&name)
                        .ok_or_else(|| format!("unknown projection {name:?}"))?;
                    projections.insert(projection);
                    None
                }
                "--settle-secs" => {
                    let secs: u64 = number(&value("--settle-secs")?, "--settle-secs")?;
                    settle = Some(Duration::from_secs(secs));
                    None
                }
                "--page-size" => {
                    page_size = number(&value("--page-size")?, "--page-size")?;
                    if page_size == 0 {
                        return Err("--page-size must be positive".into());
                    }
                    None
                }
                "--segments" => {
                    segments = number(&value("--segments")?, "--segments")?;
                    if segments == 0 {
                        return Err("--segments must be positive".into());
                    }
                    None
                }
                other => return Err(format!("unknown argument {other:?}")),
            };
            if let Some(chosen) = chosen {
                if action.replace(chosen).is_some() {
                    return Err("give one action".into());
                }
            }
        }
        let action = action
            .ok_or("give an action: --rebuild, --verify, --status, --abort or --drop-unused")?;
        if projections.is_empty() {
            projections = all_projections();
        }
        Ok(ReplayCommand {
            action,
            projections,
            settle,
            page_size,
            segments,
        })
    }
}

fn number<T: std::str::FromStr>(value: &str, name: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{name}: {value:?} is not a number"))
}

/// How a replay ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Done, nothing to report.
    Ok,
    /// `--verify` found differences.
    Differences,
}

/// Runs a replay command against the configured backend, printing to stdout.
pub async fn run_replay(config: &Config, command: &ReplayCommand) -> anyhow::Result<ReplayOutcome> {
    let (log, catalog, default_settle) = open(config, command).await?;
    let options = ReplayOptions {
        page_size: command.page_size,
        settle: command.settle.unwrap_or(default_settle),
        ..ReplayOptions::default()
    };
    let replay = Replay::new(log, catalog.clone(), options, progress_printer());
    let mut out = std::io::stdout().lock();
    match command.action {
        ReplayAction::Rebuild => {
            let report = replay.rebuild(command.projections.clone()).await?;
            let seconds = report.elapsed.as_secs_f64();
            writeln!(
                out,
                "rebuilt {} into generation {} from {} events in {:.1} s ({:.0} events/s){}",
                names(&report.projections),
                report.generation,
                report.events,
                seconds,
                report.events as f64 / seconds.max(f64::EPSILON),
                if report.resumed { ", resumed" } else { "" }
            )?;
            Ok(ReplayOutcome::Ok)
        }
        ReplayAction::Verify => {
            let report = replay.verify(command.projections.clone()).await?;
            for difference in &report.differences {
                writeln!(
                    out,
                    "differs: {} {}\n  live:    {}\n  rebuilt: {}",
                    difference.projection,
                    difference.key,
                    difference.live.as_deref().unwrap_or("(missing)"),
                    difference.rebuilt.as_deref().unwrap_or("(missing)"),
                )?;
            }
            writeln!(
                out,
                "verified {} from {} events: {} items, {} differences",
                names(&command.projections),
                report.events,
                report.items,
                report.differences.len()
            )?;
            Ok(if report.differences.is_empty() {
                ReplayOutcome::Ok
            } else {
                ReplayOutcome::Differences
            })
        }
        ReplayAction::Status => {
            let map = catalog.load().await?;
            for (projection, generation) in describe(&map) {
                writeln!(out, "{projection:<13} generation {generation}")?;
            }
            match &map.building {
                Some(building) => writeln!(
                    out,
                    "under construction: generation {} ({:?} of {}), {} events applied",
                    building.generation,
                    building.purpose,
                    names(&building.projections),
                    building.events_done
                )?,
                None => writeln!(out, "no replay under way")?,
            }
            let existing = catalog.existing().await?;
            writeln!(out, "generations in storage: {existing:?}")?;
            Ok(ReplayOutcome::Ok)
        }
        ReplayAction::Abort => {
            match replay.abort().await? {
                Some(generation) => writeln!(out, "abandoned generation {generation}")?,
                None => writeln!(out, "no replay under way")?,
            }
            Ok(ReplayOutcome::Ok)
        }
        ReplayAction::DropUnused => {
            let dropped = replay.drop_unused().await?;
            writeln!(out, "dropped generations {dropped:?}")?;
            Ok(ReplayOutcome::Ok)
        }
    }
}

/// The event log and the generations of the configured backend, and its default settle time.
async fn open(
    config: &Config,
    command: &ReplayCommand,
) -> anyhow::Result<(Arc<dyn EventLog>, Arc<dyn GenerationCatalog>, Duration)> {
    match &config.backend {
        Backend::Embedded => {
            let data_dir = config.data_dir.clone();
            let (embedded, catalog) = tokio::task::spawn_blocking(move || {
                let embedded = Embedded::open(&data_dir)?;
                let catalog = EmbeddedCatalog::open(&data_dir, embedded.read.clone())?;
                Ok::<_, messaging_embedded::EmbeddedError>((embedded, catalog))
            })
            .await
            .context("opening the store")?
            .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
            Ok((embedded.events, Arc::new(catalog), SERVER_REFRESH * 3))
        }
        Backend::DynamoDb {
            table_prefix,
            create_resources,
        } => {
            let (log, catalog) =
                crate::dynamodb_replay_ports(table_prefix, *create_resources, command.segments)
                    .await?;
            Ok((log, catalog, DYNAMODB_SETTLE))
        }
    }
}

/// Prints progress lines to stderr.
fn progress_printer() -> ProgressSink {
    Arc::new(|progress: &Progress| {
        let total = progress
            .total
            .map_or_else(|| "?".to_string(), |total| total.to_string());
        let eta = progress.eta.map_or_else(
            || "?".to_string(),
            |eta| format!("{:.0} s", eta.as_secs_f64()),
        );
        eprintln!(
            "replay: {} / {} events, {:.0} events/s, ETA {}",
            progress.events_done, total, progress.per_second, eta
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_is_required_and_projections_default_to_all() {
        assert!(ReplayCommand::parse(&[]).is_err());
        let command = ReplayCommand::parse(&["--verify"]).expect("valid");
        assert_eq!(command.action, ReplayAction::Verify);
        assert_eq!(command.projections, all_projections());
        assert_eq!(command.settle, None);
    }

    #[test]
    fn options_are_read() {
        let command = ReplayCommand::parse(&[
            "--rebuild",
            "--projection",
            "inbox",
            "--projection",
            "read_markers",
            "--settle-secs",
            "0",
            "--page-size",
            "50",
        ])
        .expect("valid");
        assert_eq!(command.action, ReplayAction::Rebuild);
        assert_eq!(
            command.projections,
            BTreeSet::from([Projection::Inbox, Projection::ReadMarkers])
        );
        assert_eq!(command.settle, Some(Duration::ZERO));
        assert_eq!(command.page_size, 50);
    }

    #[test]
    fn mistakes_are_refused() {
        for args in [
            &["--rebuild", "--verify"][..],
            &["--rebuild", "--projection", "inboxes"],
            &["--rebuild", "--projection"],
            &["--rebuild", "--page-size", "0"],
            &["--rebuild", "--settle-secs", "soon"],
            &["--rebuild", "--everything"],
        ] {
            assert!(ReplayCommand::parse(args).is_err(), "{args:?}");
        }
    }
}
