//! What this box allows for durable work per request, without any of the messaging server's
//! logic: the issue's calibration ("one durable SQLite row per request through a single
//! group-committing writer") made repeatable, and extended to the rows a send writes.
//!
//! `POST /write` makes `--reads` point reads (an index lookup each, on a pooled reading
//! connection of file A, on the runtime thread as the real server does), then commits
//! `--accept` rows to file A through A's group-committing writer and answers 202 after the
//! commit. When `--deliver` or `--project` is set, each accepted request is then handed on, as
//! the real server hands an accepted message to its dispatcher and projector: a first stage
//! commits `--deliver` rows per request to file A, a second `--project` rows per request to
//! file B, each stage taking whatever has queued up (at most 2,000 requests) per commit.
//! `GET /health` answers 200 with no work; `GET /backlog` the number of requests handed on
//! and not yet through the last stage (a run's drain is how long it takes to reach 0).
//!
//! Every row has a key and 300 bytes of data. By default the key is a random UUID, so an
//! index insert lands anywhere in its index; with `--users N` it is one of N user ids and a
//! growing number, so inserts cluster per user as a real inbox's or stream's do; with
//! `--indexed 0` the key is not indexed and a row is only appended at the table's end, the
//! cheapest durable row there is (the issue's calibration).
//! Both files: WAL, `synchronous=FULL`, SQLite's own automatic checkpoint, a 32-MiB page cache
//! per connection (the real server's read-model writer's).
//!
//! ```sh
//! cargo run --release -p messaging-loadgen --example durable_floor -- --accept 1
//! wrk -t2 -c32 -d10s http://127.0.0.1:8090/health
//! wrk -t2 -c32 -d10s -s post.lua http://127.0.0.1:8090/write   # post.lua: wrk.method = "POST"
//! ```
//! `scripts/durable-floor` runs both measurements in one go for a list of shapes.

use anyhow::{bail, Context};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::{mpsc as async_mpsc, oneshot};

/// Most requests one background stage commits at once (the real dispatcher's batch).
const STAGE_BATCH: usize = 2_000;
/// Bytes of data per row: about an event's or a projected message's size.
const ROW_BYTES: usize = 300;

/// How much work one request does.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// Whether rows are indexed by their key (else appended at the table's end only).
    indexed: bool,
    /// Keys start with one of this many user ids, as inbox rows and stream events do (0: every
    /// key a random UUID).
    users: usize,
    reads: usize,
    accept: usize,
    deliver: usize,
    project: usize,
}

/// Makes row keys: random UUIDs, or a user's id followed by an increasing number.
struct Keys {
    users: Vec<String>,
    next: AtomicU64,
}

impl Keys {
    fn new(users: usize) -> Keys {
        Keys {
            users: (0..users)
                .map(|_| uuid::Uuid::new_v4().to_string())
                .collect(),
            next: AtomicU64::new(0),
        }
    }

    /// A new row's key.
    fn fresh(&self) -> String {
        if self.users.is_empty() {
            return uuid::Uuid::new_v4().to_string();
        }
        let user = &self.users[rand::random_range(0..self.users.len())];
        format!("{user}/{:012}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// A key to look up: likely one that exists when keys belong to users.
    fn existing(&self) -> String {
        if self.users.is_empty() {
            return uuid::Uuid::new_v4().to_string();
        }
        let user = &self.users[rand::random_range(0..self.users.len())];
        let below = self.next.load(Ordering::Relaxed).max(1);
        format!("{user}/{:012}", rand::random_range(0..below))
    }
}

/// Rows to insert, and who waits for their commit.
struct Job {
    rows: usize,
    done: oneshot::Sender<Result<(), String>>,
}

/// A single writing connection on a thread of its own, committing every queued job together.
#[derive(Clone)]
struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    fn start(path: PathBuf, name: &str, indexed: bool, keys: Arc<Keys>) -> anyhow::Result<Writer> {
        let conn = open(&path, indexed)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || write_loop(&conn, &queue, &keys))
            .context("a writer thread")?;
        Ok(Writer { jobs })
    }

    /// Inserts `rows` rows durably; returns once their commit is synced.
    async fn write(&self, rows: usize) -> Result<(), String> {
        let (done, committed) = oneshot::channel();
        self.jobs
            .send(Job { rows, done })
            .map_err(|_| "the writer stopped".to_string())?;
        committed
            .await
            .map_err(|_| "the writer dropped a job".to_string())?
    }
}

fn open(path: &Path, indexed: bool) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -32768;
         CREATE TABLE IF NOT EXISTS rows (
             seq  INTEGER PRIMARY KEY,
             key  TEXT NOT NULL,
             data TEXT NOT NULL
         );",
    )?;
    if indexed {
        conn.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS rows_by_key ON rows (key);")?;
    }
    Ok(conn)
}

fn write_loop(conn: &Connection, queue: &mpsc::Receiver<Job>, keys: &Keys) {
    let data = "x".repeat(ROW_BYTES);
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        let result = commit(conn, &batch, &data, keys).map_err(|e| e.to_string());
        for job in batch {
            let _ = job.done.send(result.clone());
        }
    }
}

fn commit(conn: &Connection, batch: &[Job], data: &str, keys: &Keys) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let inserted = (|| {
        let mut insert = conn.prepare_cached("INSERT INTO rows (key, data) VALUES (?1, ?2)")?;
        for job in batch {
            for _ in 0..job.rows {
                insert.execute(params![keys.fresh(), data])?;
            }
        }
        Ok(())
    })();
    match inserted {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The server's state: file A's writer and readers, and the first background stage's queue.
#[derive(Clone)]
struct Floor {
    shape: Shape,
    a: Writer,
    readers: Arc<Mutex<Vec<Connection>>>,
    a_path: PathBuf,
    keys: Arc<Keys>,
    accepted: async_mpsc::UnboundedSender<()>,
    /// Requests handed on to the background stages, and those through the last one.
    handed_on: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
}

impl Floor {
    fn point_reads(&self) -> anyhow::Result<()> {
        if self.shape.reads == 0 {
            return Ok(());
        }
        let pooled = self
            .readers
            .lock()
            .map_err(|_| anyhow::anyhow!("pool"))?
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => Connection::open(&self.a_path)?,
        };
        for _ in 0..self.shape.reads {
            let _: Option<i64> = conn
                .prepare_cached("SELECT seq FROM rows WHERE key = ?1")?
                .query_row([self.keys.existing()], |row| row.get(0))
                .optional()?;
        }
        self.readers
            .lock()
            .map_err(|_| anyhow::anyhow!("pool"))?
            .push(conn);
        Ok(())
    }
}

async fn write(State(floor): State<Floor>) -> (StatusCode, &'static str) {
    if floor.point_reads().is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "read failed");
    }
    if floor.a.write(floor.shape.accept).await.is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "write failed");
    }
    if floor.shape.deliver + floor.shape.project > 0 {
        if floor.accepted.send(()).is_err() {
            return (StatusCode::INTERNAL_SERVER_ERROR, "stage stopped");
        }
        floor.handed_on.fetch_add(1, Ordering::Relaxed);
    }
    (StatusCode::ACCEPTED, "")
}

/// Requests handed on and not yet through the last stage.
async fn backlog(State(floor): State<Floor>) -> String {
    let handed_on = floor.handed_on.load(Ordering::Relaxed);
    let finished = floor.finished.load(Ordering::Relaxed);
    handed_on.saturating_sub(finished).to_string()
}

/// A background stage: per batch of handed-on requests, one commit of `rows` rows each, then
/// the batch goes on to the next stage (if any).
async fn stage(
    mut input: async_mpsc::UnboundedReceiver<()>,
    writer: Option<Writer>,
    rows: usize,
    next: Option<async_mpsc::UnboundedSender<()>>,
    done: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(STAGE_BATCH);
    while input.recv_many(&mut batch, STAGE_BATCH).await > 0 {
        if let Some(writer) = writer.as_ref().filter(|_| rows > 0) {
            if let Err(e) = writer.write(rows * batch.len()).await {
                eprintln!("durable_floor: a stage's commit failed: {e}");
                return;
            }
        }
        match &next {
            Some(next) => {
                for _ in batch.drain(..) {
                    if next.send(()).is_err() {
                        return;
                    }
                }
            }
            None => {
                done.fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
            }
        }
    }
}

fn parse_args() -> anyhow::Result<(String, PathBuf, Shape)> {
    let mut addr = "127.0.0.1:8090".to_string();
    let mut dir = None;
    let mut shape = Shape {
        indexed: true,
        users: 0,
        reads: 0,
        accept: 1,
        deliver: 0,
        project: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let count = || {
            value
                .parse::<usize>()
                .with_context(|| format!("{flag} {value}"))
        };
        match flag.as_str() {
            "--addr" => addr = value.clone(),
            "--data-dir" => dir = Some(PathBuf::from(&value)),
            "--indexed" => shape.indexed = count()? != 0,
            "--users" => shape.users = count()?,
            "--reads" => shape.reads = count()?,
            "--accept" => shape.accept = count()?,
            "--deliver" => shape.deliver = count()?,
            "--project" => shape.project = count()?,
            other => bail!("unknown flag {other}"),
        }
    }
    let dir = match dir {
        Some(dir) => dir,
        None => tempfile::tempdir()?.keep(),
    };
    Ok((addr, dir, shape))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (addr, dir, shape) = parse_args()?;
    std::fs::create_dir_all(&dir)?;
    let a_path = dir.join("a.sqlite3");
    let keys = Arc::new(Keys::new(shape.users));
    let a = Writer::start(a_path.clone(), "writer-a", shape.indexed, keys.clone())?;
    let b = Writer::start(
        dir.join("b.sqlite3"),
        "writer-b",
        shape.indexed,
        keys.clone(),
    )?;
    let (accepted, delivering) = async_mpsc::unbounded_channel();
    let (delivered, projecting) = async_mpsc::unbounded_channel();
    let finished = Arc::new(AtomicU64::new(0));
    tokio::spawn(stage(
        delivering,
        Some(a.clone()),
        shape.deliver,
        Some(delivered),
        finished.clone(),
    ));
    tokio::spawn(stage(
        projecting,
        Some(b),
        shape.project,
        None,
        finished.clone(),
    ));
    let floor = Floor {
        shape,
        a,
        readers: Arc::default(),
        a_path,
        keys,
        accepted,
        handed_on: Arc::default(),
        finished,
    };
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/write", post(write))
        .route("/backlog", get(backlog))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "listening on http://{} ({shape:?}, data in {})",
        listener.local_addr()?,
        dir.display()
    );
    axum::serve(listener, app).await?;
    Ok(())
}
