//! `messaging replay` against a server that keeps serving: after a randomised workload,
//! `--verify` finds no difference, `--rebuild` changes nothing any GET endpoint returns (read
//! markers included), and a corrupted read model is caught by `--verify` and repaired by
//! `--rebuild`. Runs on both backends.

use crate::helpers::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// A small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below.max(1) as u64) as usize
    }
}

fn seed() -> u64 {
    std::env::var("REPLAY_TEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        })
}

/// Everything get-all-messages returns, for every user.
async fn histories(server: &TestServer, users: &[User]) -> BTreeMap<String, Vec<Value>> {
    let mut all = BTreeMap::new();
    for user in users {
        all.insert(user.id.clone(), server.all_messages(user).await);
    }
    all
}

/// Waits until the histories stop changing: every accepted message has its outcome.
async fn quiescent(server: &TestServer, users: &[User]) -> BTreeMap<String, Vec<Value>> {
    let quiet_for = Duration::from_secs(3);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = histories(server, users).await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = histories(server, users).await;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet_for {
            return last;
        }
        assert!(Instant::now() < deadline, "the workload never settled");
    }
}

/// Polls get-new-messages until it returns nothing; the ids in order.
async fn drain_new(server: &TestServer, user: &User) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let page = server.new_messages(user, None, None).await;
        if page.messages.is_empty() {
            return got;
        }
        got.extend(ids(&page.messages));
    }
}

/// Runs `replay` and asserts its exit status; returns its stdout.
fn replay(server: &TestServer, args: &[&str], expect_success: bool) -> String {
    let mut full = vec!["--settle-secs", "3"];
    full.extend_from_slice(args);
    let output = server.replay(&full);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.success(),
        expect_success,
        "replay {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        truncate(&String::from_utf8_lossy(&output.stderr), 3000)
    );
    stdout
}

#[tokio::test]
async fn after_a_random_workload_verify_is_clean_and_rebuild_changes_no_answer() {
    let seed = seed();
    eprintln!("replay workload seed: {seed} (REPLAY_TEST_SEED={seed} repeats it)");
    let mut rng = Rng(seed);
    let server = TestServer::spawn();
    let users = server.register_many(5).await;
    // (group id, admin index)
    let mut groups: Vec<(String, usize)> = Vec::new();
    // What each user has already been shown by get-new-messages.
    let mut shown: HashMap<String, BTreeSet<String>> = HashMap::new();

    for step in 0..70 {
        let a = rng.next(users.len());
        let b = (a + 1 + rng.next(users.len() - 1)) % users.len();
        let (ua, ub) = (&users[a], &users[b]);
        match rng.next(10) {
            0..=2 => {
                server.send(ua, &ub.id, &format!("direct {step}")).await;
            }
            3 => {
                let _ = server.try_block(ua, &ub.id).await;
            }
            4 => {
                let _ = server.try_unblock(ua, &ub.id).await;
            }
            5 if groups.len() < 3 => {
                let group = server
                    .create_group(ua, &format!("group {step}"), &[&ub.id])
                    .await;
                groups.push((group, a));
            }
            5 | 6 if !groups.is_empty() => {
                let (group, admin) = &groups[rng.next(groups.len())];
                let member = &users[rng.next(users.len())].id;
                if rng.next(2) == 0 {
                    let _ = server.try_add_member(&users[*admin], group, member).await;
                } else {
                    let _ = server
                        .try_remove_member(&users[*admin], group, member)
                        .await;
                }
            }
            7 if !groups.is_empty() => {
                let (group, _) = &groups[rng.next(groups.len())];
                // Non-members are refused at once (403); members' messages are delivered.
                let _ = server
                    .try_send_group(ua, group, &format!("group {step}"))
                    .await;
            }
            _ => {
                let page = server.new_messages(ua, None, None).await;
                shown
                    .entry(ua.id.clone())
                    .or_default()
                    .extend(ids(&page.messages));
            }
        }
    }

    let before = quiescent(&server, &users).await;
    let verified = replay(&server, &["--verify"], true);
    assert!(verified.contains(" 0 differences"), "{verified}");

    let rebuilt = replay(&server, &["--rebuild"], true);
    assert!(rebuilt.contains("into generation"), "{rebuilt}");
    // The server re-reads the generation pointer every second.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    assert_eq!(
        histories(&server, &users).await,
        before,
        "get-all-messages answers the same from the rebuilt generation"
    );
    for user in &users {
        // The inbox is what others sent the user and got delivered; the read marker must
        // still hide exactly what get-new-messages already showed.
        let received: Vec<String> = before[&user.id]
            .iter()
            .filter(|m| m.get("sender_id").and_then(Value::as_str) != Some(user.id.as_str()))
            .map(msg_id)
            .collect();
        let already = shown.get(&user.id).cloned().unwrap_or_default();
        let unread: BTreeSet<String> = received
            .into_iter()
            .filter(|id| !already.contains(id))
            .collect();
        let new = drain_new(&server, user).await;
        assert_no_duplicates(&new, "get-new-messages after the rebuild");
        assert_eq!(
            new.into_iter().collect::<BTreeSet<_>>(),
            unread,
            "get-new-messages after the rebuild returns exactly the unread messages of {}",
            user.id
        );
    }
    let status = replay(&server, &["--status"], true);
    assert!(status.contains("no replay under way"), "{status}");
    let verified = replay(&server, &["--verify"], true);
    assert!(verified.contains(" 0 differences"), "{verified}");
}

#[tokio::test]
async fn verify_catches_a_lost_inbox_item_and_rebuild_repairs_it() {
    let server = TestServer::spawn();
    let users = server.register_many(2).await;
    let (ada, bob) = (&users[0], &users[1]);
    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(server.send(ada, &bob.id, &format!("m{n}")).await);
    }
    server.wait_history_contains(bob, &sent).await;

    server.delete_inbox_item(bob, 2).await;
    let page = server.new_messages(bob, None, None).await;
    assert_eq!(
        ids(&page.messages),
        sent[..1].to_vec(),
        "with position 2 missing, get-new-messages stops before the gap"
    );

    let found = replay(&server, &["--verify", "--projection", "inbox"], false);
    assert!(
        found.contains("differs: inbox") && found.contains(" 1 differences"),
        "{found}"
    );
    replay(&server, &["--rebuild", "--projection", "inbox"], true);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let verified = replay(&server, &["--verify"], true);
    assert!(verified.contains(" 0 differences"), "{verified}");
    assert_eq!(
        drain_new(&server, bob).await,
        sent[1..].to_vec(),
        "after the rebuild the rest is delivered, in order, once"
    );
}

impl TestServer {
    /// Runs `messaging replay ARGS` on this server's configuration (data directory, or tables
    /// on moto) while the server keeps running.
    fn replay(&self, args: &[&str]) -> std::process::Output {
        let bin = std::env::var("MESSAGING_E2E_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_messaging").to_string());
        let mut command = std::process::Command::new(bin);
        command
            .arg("replay")
            .args(args)
            .env("MESSAGING_DATA_DIR", self.data_dir())
            .env("RUST_LOG", "warn");
        if backend_is_dynamodb() {
            command.envs(dynamodb_env(self.data_dir()));
        }
        command.output().expect("runs messaging replay")
    }

    /// Deletes `user`'s inbox item at `position` from the live (generation 0) read model, as
    /// a lost write or an operator's mistake would.
    async fn delete_inbox_item(&self, user: &User, position: u64) {
        if backend_is_dynamodb() {
            let deleted = self
                .dynamodb_call(
                    "DeleteItem",
                    &serde_json::json!({
                        "TableName": self.dynamodb_table("inbox"),
                        "Key": {"user": {"S": user.id}, "position": {"N": position.to_string()}},
                        "ReturnValues": "ALL_OLD",
                    }),
                )
                .await;
            assert!(
                deleted.get("Attributes").is_some(),
                "the inbox item existed"
            );
        } else {
            let conn = rusqlite::Connection::open(self.data_dir().join("read.sqlite3"))
                .expect("opens the read models");
            conn.busy_timeout(Duration::from_secs(5))
                .expect("busy timeout");
            let deleted = conn
                .execute(
                    "DELETE FROM inbox WHERE user = ?1 AND position = ?2",
                    rusqlite::params![user.id, position as i64],
                )
                .expect("deletes");
            assert_eq!(deleted, 1, "the inbox item existed");
        }
    }
}
