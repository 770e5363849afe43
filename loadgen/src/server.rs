//! `--spawn`: starts the server binary on a fresh data directory and a free port, and stops
//! it when dropped.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the server may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A server started by the load generator.
pub struct Spawned {
    /// `http://ADDR` from the server's `listening on` line.
    pub base_url: String,
    /// The server's process id (for its CPU time).
    pub pid: u32,
    /// Where its stderr goes.
    pub log: PathBuf,
    child: Child,
    // Kept for the server's lifetime; removed on drop.
    _data_dir: tempfile::TempDir,
}

impl Spawned {
    /// Starts `binary` (or the default) with `extra` environment on top of the benchmark's.
    pub async fn start(binary: Option<&Path>, extra: &[(String, String)]) -> anyhow::Result<Self> {
        let binary = match binary {
            Some(path) => path.to_path_buf(),
            None => default_binary()?,
        };
        let data_dir = tempfile::Builder::new()
            .prefix("loadgen-")
            .tempdir()
            .context("creating the data directory")?;
        let log = data_dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).context("creating the server log")?;
        let mut command = Command::new(&binary);
        command
            .env("MESSAGING_ADDR", "127.0.0.1:0")
            .env("MESSAGING_DATA_DIR", data_dir.path())
            .env("MESSAGING_RATE_LIMIT_PER_MINUTE", "0")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.trim().strip_prefix("listening on ") {
                    return Ok(Some(url.to_string()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let base_url = match listening {
            Ok(Ok(Some(url))) => url,
            Ok(Ok(None)) => anyhow::bail!("the server exited; see {}", log.display()),
            Ok(Err(error)) => return Err(error).context("reading the server's stdout"),
            Err(_) => anyhow::bail!("the server did not start in time; see {}", log.display()),
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Spawned {
            base_url,
            pid,
            log,
            child,
            _data_dir: data_dir,
        })
    }

    /// Stops the server (SIGKILL: its data directory is thrown away anyway).
    pub async fn stop(mut self) {
        if let Err(error) = self.child.kill().await {
            eprintln!("loadgen: stopping the server: {error}");
        }
    }
}

/// `messaging` beside this executable (both live in `target/release`), else the usual path.
fn default_binary() -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("messaging")));
    match beside {
        Some(path) if path.is_file() => Ok(path),
        _ => {
            let fallback = PathBuf::from("target/release/messaging");
            if fallback.is_file() {
                Ok(fallback)
            } else {
                anyhow::bail!(
                    "no server binary: build it (cargo build --release) or pass --server-bin"
                )
            }
        }
    }
}
