//! Counting and printing: per-operation latency histograms (HdrHistogram, microseconds),
//! error counts by kind, and the final table or JSON.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Highest latency the histograms track (longer ones are clamped to it).
const MAX_MICROS: u64 = 120_000_000;

/// Successes with their latencies, and failures by kind, of one operation.
#[derive(Clone)]
pub struct OpStats {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self::new()
    }
}

impl OpStats {
    /// Nothing counted yet.
    pub fn new() -> OpStats {
        OpStats {
            // 3 significant figures from 1 µs to 2 minutes: about 0.1 % error.
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant, valid bounds"),
            errors: BTreeMap::new(),
        }
    }

    /// One success that took `latency`.
    pub fn ok(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        // In bounds by construction.
        let _ = self.latency.record(micros);
    }

    /// One failure of `kind` (a status code, `timeout`, `io`, ...).
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_insert(0) += 1;
    }

    /// Adds another's counts.
    pub fn merge(&mut self, other: &OpStats) {
        let _ = self.latency.add(&other.latency);
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_insert(0) += n;
        }
    }

    /// Successes.
    pub fn count(&self) -> u64 {
        self.latency.len()
    }

    /// The summary over `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        let secs = elapsed.as_secs_f64().max(1e-9);
        Summary {
            ok: self.count(),
            per_sec: self.count() as f64 / secs,
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            max_ms: self.latency.max() as f64 / 1000.0,
            errors: self.errors.clone(),
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Successes.
    pub ok: u64,
    /// Successes per second of the phase.
    pub per_sec: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server's base URL.
    pub base_url: String,
    /// `open N/s over C connections` or `closed, N clients`.
    pub pace: String,
    /// Load duration asked for, seconds.
    pub duration_s: f64,
    /// From the first request to the last reply of the load, seconds.
    pub elapsed_s: f64,
    /// The operation weights.
    pub mix: crate::args::Mix,
    /// Users, groups of 10, groups of 100, watched users.
    pub population: BTreeMap<&'static str, usize>,
    /// `long poll (wait=N)` or `polls every N ms`.
    pub poll_mode: String,
    /// Per operation: accept latency (sends), response latency (others).
    pub operations: BTreeMap<&'static str, Summary>,
    /// Accepted sends of every kind per second.
    pub accepted_sends_per_sec: f64,
    /// From a 202 to the message showing in a watched recipient's get-new-messages.
    pub send_to_visible: Summary,
    /// Sent to watched users and not seen by the end of the drain.
    pub never_visible: i64,
    /// From the last reply of the load to the last tracked message showing, seconds
    /// (`None`: nothing was pending when the load stopped or the backlog did not drain).
    pub drain_s: Option<f64>,
    /// The `/health` comparison, when asked for.
    pub health: Option<HealthComparison>,
    /// CPU seconds of the spawned server and of this load generator during the load.
    pub cpu_s: BTreeMap<&'static str, f64>,
    /// The load average when the load started (1, 5, 15 minutes).
    pub load_average: String,
}

/// `GET /health` with the same client and worker count.
#[derive(Debug, Clone, Serialize)]
pub struct HealthComparison {
    /// The health phase.
    pub health: Summary,
    /// Accepted direct sends per second / health requests per second.
    pub send_to_health_ratio: f64,
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(
            &mut out,
            format!(
                "target {}  |  {}  |  {:.1} s (elapsed {:.2} s)  |  load average at start {}",
                self.base_url, self.pace, self.duration_s, self.elapsed_s, self.load_average
            ),
        );
        line(
            &mut out,
            format!(
                "population {:?}  |  mix {:?}  |  {}",
                self.population, self.mix, self.poll_mode
            ),
        );
        line(&mut out, String::new());
        line(
            &mut out,
            format!(
                "{:<22} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}  errors",
                "operation", "ok", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms"
            ),
        );
        let mut rows: Vec<(&str, &Summary)> = self
            .operations
            .iter()
            .map(|(name, summary)| (*name, summary))
            .collect();
        rows.push(("send-to-visible", &self.send_to_visible));
        if let Some(health) = &self.health {
            rows.push(("health (own phase)", &health.health));
        }
        for (name, s) in rows {
            let errors = if s.errors.is_empty() {
                "0".to_string()
            } else {
                format!("{:?}", s.errors)
            };
            line(
                &mut out,
                format!(
                    "{name:<22} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {errors}",
                    s.ok, s.per_sec, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms
                ),
            );
        }
        line(&mut out, String::new());
        line(
            &mut out,
            format!(
                "accepted sends: {:.0}/s  |  never visible: {}  |  backlog drain after the load: {}",
                self.accepted_sends_per_sec,
                self.never_visible,
                match self.drain_s {
                    Some(s) => format!("{:.3} s", s),
                    None => "n/a".into(),
                }
            ),
        );
        if let Some(health) = &self.health {
            line(
                &mut out,
                format!(
                    "send-message / health throughput: {:.3} ({:.0} / {:.0} per s)",
                    health.send_to_health_ratio,
                    self.operations.get("direct").map_or(0.0, |s| s.per_sec),
                    health.health.per_sec
                ),
            );
        }
        if !self.cpu_s.is_empty() {
            line(
                &mut out,
                format!("CPU seconds during the load: {:?}", self.cpu_s),
            );
        }
        out
    }
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` says.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// User plus system CPU time of a process, from `/proc/PID/stat` (Linux only).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 of the rest (0-based 11, 12).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks: 100 per second on Linux everywhere we run.
    Some((utime + stime) / 100.0)
}
