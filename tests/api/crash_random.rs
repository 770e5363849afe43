//! kill -9 of the real server at a seeded random point of a mixed load (direct and group sends,
//! blocks and unblocks, polls), sometimes a second time while it recovers, then a restart on
//! the same data: every 202 is delivered exactly once to each eligible recipient, blocks
//! acknowledged before a send are honoured, requests whose answer the crash swallowed are
//! retried with their `Idempotency-Key` and write nothing twice, and get-new-messages never
//! returns a message twice nor skips one.
//!
//! Each test prints its seed; `SOAK_SEED=<seed>` replays its kill points and workload.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// SplitMix64: the seeded source of every choice of a run.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

fn seed(offset: u64) -> u64 {
    let seed = match std::env::var("SOAK_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SOAK_SEED={text:?} is not a u64")),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            Rng(nanos ^ offset.wrapping_mul(0x2545_f491_4f6c_dd1d)).next_u64() % 1_000_000_000
        }
    };
    eprintln!("seed {seed} (SOAK_SEED={seed} repeats it)");
    seed
}

/// A request as a client keeps it until it has its answer: a retry after a crash sends the
/// same body with the same key.
#[derive(Clone, Debug)]
struct Request {
    path: &'static str,
    token: String,
    body: Value,
    key: String,
    start: Instant,
}

/// An accepted send: message id, sender, where to, asked, answered.
type Sent = (String, String, Target, Instant, Instant);
/// A block change: blocker, blocked, blocks?, asked, answered (`None`: not yet, or never).
type BlockChange = (String, String, bool, Instant, Option<Instant>);
/// One user's polling: last cursor, whether to repeat from it, every id returned.
type PollState = (Option<String>, bool, Vec<String>);

/// What the clients were told, across crashes.
#[derive(Default)]
struct Record {
    /// Accepted sends: message id → (sender, direct receiver or group, asked, answered).
    accepted: Mutex<Vec<Sent>>,
    /// Block changes: (blocker, blocked, blocks?, asked, answered).
    blocks: Mutex<Vec<BlockChange>>,
    /// Requests whose answer a crash swallowed.
    in_doubt: Mutex<Vec<Request>>,
    /// Non-2xx answers (there should be none).
    refused: Mutex<Vec<String>>,
    /// Per user: last get-new-messages cursor, whether to repeat from it, all ids returned.
    /// Held across each call: one user's polls are one client's, one at a time.
    polls: tokio::sync::Mutex<HashMap<String, PollState>>,
    /// The cursor of an empty inbox, as the server writes it.
    first_cursor: Mutex<Option<String>>,
    /// Answers that counted towards the kill point.
    answered: AtomicUsize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Direct(usize),
    Group(usize),
}

/// The fixed cast of a run.
struct Cast {
    users: Vec<User>,
    /// Groups: id and member indexes (admin first); membership does not change.
    groups: Vec<(String, Vec<usize>)>,
}

impl Cast {
    fn index(&self, id: &str) -> usize {
        self.users
            .iter()
            .position(|u| u.id == id)
            .expect("a known user")
    }
}

/// Sends `request`; `None` when the transport failed (the server died).
async fn send(client: &reqwest::Client, base: &str, request: &Request) -> Option<(u16, Value)> {
    let response = client
        .post(format!("{base}{}", request.path))
        .bearer_auth(&request.token)
        .header("idempotency-key", &request.key)
        .json(&request.body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let text = response.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Records the answer to a request (first attempt or a retry after a restart).
fn answered(record: &Record, cast: &Cast, request: &Request, status: u16, body: &Value) {
    let ok = matches!(status, 200 | 202);
    if !ok {
        record
            .refused
            .lock()
            .unwrap()
            .push(format!("{} {status} {body}", request.path));
        return;
    }
    let now = Instant::now();
    let b = &request.body;
    match request.path {
        "/send-message" | "/send-group-message" => {
            let id = body["message_id"].as_str().expect("202 with a message id");
            let sender = b["sender_id"].as_str().unwrap().to_string();
            let target = match b.get("receiver_id").and_then(Value::as_str) {
                Some(receiver) => Target::Direct(cast.index(receiver)),
                None => Target::Group(
                    cast.groups
                        .iter()
                        .position(|(g, _)| Some(g.as_str()) == b["group_id"].as_str())
                        .unwrap(),
                ),
            };
            record.accepted.lock().unwrap().push((
                id.to_string(),
                sender,
                target,
                request.start,
                now,
            ));
        }
        "/block-user" | "/unblock-user" => {
            let mut blocks = record.blocks.lock().unwrap();
            let blocker = b["user_id"].as_str().unwrap();
            let blocked = b["blocked_user_id"].as_str().unwrap();
            // A retried change was recorded as unanswered by the crash: it is answered now.
            if let Some(entry) = blocks
                .iter_mut()
                .find(|e| e.0 == blocker && e.1 == blocked && e.3 == request.start && e.4.is_none())
            {
                entry.4 = Some(now);
            } else {
                blocks.push((
                    blocker.to_string(),
                    blocked.to_string(),
                    request.path == "/block-user",
                    request.start,
                    Some(now),
                ));
            }
        }
        _ => {}
    }
}

/// One client: random requests until the server dies or `ops` are done.
async fn client(
    base: String,
    http: reqwest::Client,
    cast: Arc<Cast>,
    record: Arc<Record>,
    mut rng: Rng,
    ops: usize,
) {
    for step in 0..ops {
        let n = cast.users.len();
        let roll = rng.below(100);
        let text = format!("s{step}-{}", rng.next_u64() % 10_000);
        let (path, sender, body) = if roll < 55 {
            let (s, r) = (rng.below(n), rng.below(n));
            if s == r {
                continue;
            }
            let body = json!({"sender_id": cast.users[s].id, "receiver_id": cast.users[r].id, "message": text});
            ("/send-message", s, body)
        } else if roll < 80 {
            let (group, members) = &cast.groups[rng.below(cast.groups.len())];
            let s = members[rng.below(members.len())];
            let body = json!({"sender_id": cast.users[s].id, "group_id": group, "message": text});
            ("/send-group-message", s, body)
        } else if roll < 92 {
            let (a, b) = (rng.below(n), rng.below(n));
            if a == b {
                continue;
            }
            let path = if rng.below(2) == 0 {
                "/block-user"
            } else {
                "/unblock-user"
            };
            let body = json!({"user_id": cast.users[a].id, "blocked_user_id": cast.users[b].id});
            (path, a, body)
        } else {
            if !poll(&base, &http, &cast.users[rng.below(n)], &record).await {
                return;
            }
            continue;
        };
        let request = Request {
            path,
            token: cast.users[sender].token.clone(),
            body,
            key: random_id(),
            start: Instant::now(),
        };
        if matches!(path, "/block-user" | "/unblock-user") {
            // Unanswered until answered: a crash leaves it in doubt.
            let b = &request.body;
            record.blocks.lock().unwrap().push((
                b["user_id"].as_str().unwrap().to_string(),
                b["blocked_user_id"].as_str().unwrap().to_string(),
                path == "/block-user",
                request.start,
                None,
            ));
        }
        match send(&http, &base, &request).await {
            Some((status, body)) => {
                answered(&record, &cast, &request, status, &body);
                record.answered.fetch_add(1, Ordering::SeqCst);
            }
            None => {
                record.in_doubt.lock().unwrap().push(request);
                return;
            }
        }
    }
}

/// One get-new-messages call, repeating from the last cursor with `since` after a call whose
/// answer was lost. False when the server is gone.
async fn poll(base: &str, http: &reqwest::Client, user: &User, record: &Record) -> bool {
    let mut polls = record.polls.lock().await;
    let (cursor, repeat) = {
        let state = polls.get(&user.id).cloned().unwrap_or_default();
        (state.0, state.1)
    };
    let mut query = vec![("user_id", user.id.clone())];
    if repeat {
        query.push(("since", cursor.clone().unwrap_or_else(|| "0".into())));
    }
    let result = async {
        let response = http
            .get(format!("{base}/get-new-messages"))
            .bearer_auth(&user.token)
            .query(&query)
            .send()
            .await
            .ok()?;
        if response.status().as_u16() != 200 {
            return None;
        }
        serde_json::from_str::<Value>(&response.text().await.ok()?).ok()
    }
    .await;
    let state = polls.entry(user.id.clone()).or_default();
    match result {
        Some(body) => {
            let messages = ids(body["messages"].as_array().unwrap());
            state.0 = body["cursor"].as_str().map(str::to_string);
            // Recovering a lost answer pages on with `since` until a page comes back empty.
            state.1 = repeat && !messages.is_empty();
            state.2.extend(messages);
            true
        }
        None => {
            // The first call of a user repeats from the start of the inbox.
            if state.0.is_none() {
                state.0 = record.first_cursor.lock().unwrap().clone();
            }
            state.1 = true;
            false
        }
    }
}

/// Runs the load on `srv` and kills it once `kill_after` more requests were answered.
async fn load_and_kill(
    srv: &mut TestServer,
    cast: &Arc<Cast>,
    record: &Arc<Record>,
    rng: &mut Rng,
    kill_after: usize,
    clients: usize,
) -> usize {
    let before = record.answered.load(Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(client(
            srv.base.clone(),
            srv.client.clone(),
            cast.clone(),
            record.clone(),
            Rng(rng.next_u64()),
            10_000,
        )));
    }
    let start = Instant::now();
    while record.answered.load(Ordering::SeqCst) < before + kill_after
        && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let at_kill = record.answered.load(Ordering::SeqCst) - before;
    srv.kill_9();
    for task in tasks {
        task.await.expect("a client task");
    }
    at_kill
}

/// Retries every request whose answer a crash swallowed, with its key and body.
async fn retry_in_doubt(srv: &TestServer, cast: &Cast, record: &Record) -> usize {
    let in_doubt: Vec<Request> = std::mem::take(&mut *record.in_doubt.lock().unwrap());
    for request in &in_doubt {
        let (status, body) = send(&srv.client, &srv.base, request)
            .await
            .expect("the restarted server answers");
        answered(record, cast, request, status, &body);
    }
    in_doubt.len()
}

/// Whether `blocker` blocked `sender` for a message asked at `start` and accepted at `end`:
/// `Some` when the acknowledged changes determine it (every change asked before the message was
/// accepted was acknowledged before it was asked, and the last ones agree).
fn blocked(
    changes: &[BlockChange],
    blocker: &str,
    sender: &str,
    start: Instant,
    end: Instant,
) -> Option<bool> {
    let before: Vec<_> = changes
        .iter()
        .filter(|c| c.0 == blocker && c.1 == sender && c.3 <= end)
        .collect();
    if before.iter().any(|c| c.4.is_none_or(|e| e >= start)) {
        return None;
    }
    let last: Vec<_> = before
        .iter()
        .filter(|c| !before.iter().any(|o| o.3 > c.4.unwrap()))
        .collect();
    match last.first() {
        None => Some(false),
        Some(first) if last.iter().all(|c| c.2 == first.2) => Some(first.2),
        Some(_) => None,
    }
}

async fn kill_at_random_points(offset: u64) {
    let seed = seed(offset);
    let mut rng = Rng(seed);
    let dynamodb = backend_is_dynamodb();
    let (n_users, clients, max_kill) = if dynamodb { (5, 3, 30) } else { (8, 6, 250) };
    let dir = tempfile::tempdir().unwrap();
    let mut srv = TestServer::spawn_in(dir.path());

    let users = srv.register_many(n_users).await;
    let mut groups = Vec::new();
    for g in 0..2 {
        let mut members = vec![g];
        while members.len() < 4 {
            let m = rng.below(n_users);
            if !members.contains(&m) {
                members.push(m);
            }
        }
        let ids: Vec<&str> = members[1..].iter().map(|&m| users[m].id.as_str()).collect();
        let group = srv
            .create_group(&users[g], &format!("crash {g}"), &ids)
            .await;
        groups.push((group, members));
    }
    let cast = Arc::new(Cast { users, groups });
    let record = Arc::new(Record::default());
    // Nothing was delivered yet: the cursor of an empty inbox.
    let first = srv.new_messages(&cast.users[0], None, None).await;
    *record.first_cursor.lock().unwrap() = Some(first.cursor);

    // The first kill at a random point of the load; half the runs kill again while the
    // restarted server recovers (its sweep and redeliveries under way, new load arriving).
    let kills = 1 + rng.below(2);
    let mut kill_points = Vec::new();
    for k in 0..kills {
        let kill_after = if k == 0 {
            10 + rng.below(max_kill)
        } else {
            rng.below(max_kill / 4 + 1)
        };
        if k > 0 {
            srv = TestServer::spawn_in(dir.path());
            retry_in_doubt(&srv, &cast, &record).await;
        }
        let at = load_and_kill(&mut srv, &cast, &record, &mut rng, kill_after, clients).await;
        kill_points.push(at);
    }
    let srv = TestServer::spawn_in(dir.path());
    let retried = retry_in_doubt(&srv, &cast, &record).await;
    let refused = record.refused.lock().unwrap().clone();
    assert!(
        refused.is_empty(),
        "seed {seed}: refused requests: {refused:?}"
    );

    let accepted = record.accepted.lock().unwrap().clone();
    let changes = record.blocks.lock().unwrap().clone();
    eprintln!(
        "seed {seed}: killed after {kill_points:?} answers; {} sends accepted, {} block changes, {retried} requests retried after the crash",
        accepted.len(),
        changes.len()
    );
    let ids_accepted: Vec<String> = accepted.iter().map(|a| a.0.clone()).collect();
    assert_no_duplicates(&ids_accepted, "message ids of accepted sends");

    // Who must, must not and may get each message.
    let mut must: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut must_not: HashSet<(usize, String)> = HashSet::new();
    let mut may: HashSet<(usize, String)> = HashSet::new();
    for (id, sender, target, start, end) in &accepted {
        let recipients: Vec<usize> = match target {
            Target::Direct(r) => vec![*r],
            Target::Group(g) => cast.groups[*g]
                .1
                .iter()
                .copied()
                .filter(|m| cast.users[*m].id != *sender)
                .collect(),
        };
        for r in recipients {
            match blocked(&changes, &cast.users[r].id, sender, *start, *end) {
                Some(false) => must.entry(r).or_default().push(id.clone()),
                Some(true) => {
                    must_not.insert((r, id.clone()));
                }
                None => {
                    may.insert((r, id.clone()));
                }
            }
        }
    }
    let window = if dynamodb {
        Duration::from_secs(90)
    } else {
        Duration::from_secs(30)
    };
    let known: HashSet<&String> = ids_accepted.iter().collect();
    for (i, user) in cast.users.iter().enumerate() {
        let wanted: Vec<String> = must.get(&i).cloned().unwrap_or_default();
        let own: Vec<String> = accepted
            .iter()
            .filter(|a| a.1 == user.id)
            .map(|a| a.0.clone())
            .collect();
        let all_wanted: Vec<String> = wanted.iter().chain(own.iter()).cloned().collect();
        let history = srv
            .wait_history_contains_within(window, user, &all_wanted)
            .await;
        let history_ids = ids(&history);
        assert_no_duplicates(&history_ids, &format!("seed {seed}: history of user {i}"));
        for id in &history_ids {
            assert!(
                known.contains(id),
                "seed {seed}: user {i}'s history has {id}, which no 202 named (a retry wrote a second message?)"
            );
            assert!(
                !must_not.contains(&(i, id.clone())),
                "seed {seed}: user {i} got {id} although it blocked the sender before the send"
            );
        }
    }

    // Everything delivered reaches get-new-messages once, across the crashes.
    for (i, user) in cast.users.iter().enumerate() {
        let history = srv.all_messages(user).await;
        let received: Vec<String> = history
            .iter()
            .filter(|m| m["sender_id"].as_str() != Some(user.id.as_str()))
            .map(msg_id)
            .collect();
        // Where each message stands in the history (oldest first: acceptance order per sender)
        // and which conversation it belongs to.
        let place: HashMap<String, (usize, String)> = history
            .iter()
            .enumerate()
            .map(|(at, m)| {
                let conversation = format!(
                    "{}>{}",
                    m["sender_id"],
                    m.get("group_id").unwrap_or(&Value::Null)
                );
                (msg_id(m), (at, conversation))
            })
            .collect();
        let deadline = Instant::now() + window;
        loop {
            assert!(
                poll(&srv.base, &srv.client, user, &record).await,
                "seed {seed}: polling after the restart"
            );
            let returned = record
                .polls
                .lock()
                .await
                .get(&user.id)
                .map(|p| p.2.clone())
                .unwrap_or_default();
            assert_no_duplicates(
                &returned,
                &format!("seed {seed}: get-new-messages of user {i} across the crash"),
            );
            let got: HashSet<&String> = returned.iter().collect();
            if received.iter().all(|id| got.contains(id)) {
                let extra: Vec<&&String> = got.iter().filter(|id| !received.contains(id)).collect();
                assert!(extra.is_empty(), "seed {seed}: get-new-messages of user {i} returned {extra:?}, not in its history");
                // One sender's messages to this user (or one group) come in acceptance order.
                let mut last: HashMap<&String, usize> = HashMap::new();
                for id in &returned {
                    let (at, conversation) = &place[id];
                    if let Some(previous) = last.insert(conversation, *at) {
                        assert!(
                            previous < *at,
                            "seed {seed}: get-new-messages of user {i} returned {id} before an earlier message of the same sender: {returned:?}"
                        );
                    }
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "seed {seed}: get-new-messages of user {i} never returned {:?}",
                received
                    .iter()
                    .filter(|id| !got.contains(id))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let undetermined = may.len();
    eprintln!(
        "seed {seed}: {} deliveries required and found once, {} withheld by acknowledged blocks, {undetermined} undetermined (at most once)",
        must.values().map(Vec::len).sum::<usize>(),
        must_not.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_a_random_point_loses_nothing_and_duplicates_nothing_1() {
    kill_at_random_points(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_a_random_point_loses_nothing_and_duplicates_nothing_2() {
    kill_at_random_points(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_a_random_point_loses_nothing_and_duplicates_nothing_3() {
    kill_at_random_points(3).await;
}
