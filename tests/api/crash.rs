//! kill -9 in the middle of a burst of sends: every 202 survives, exactly once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

const TASKS: usize = 8;
const PER_TASK: usize = 38; // 304 in all
const KILL_AFTER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_burst_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = TestServer::spawn_in(dir.path());
    let r = srv.register().await;
    let mut senders = Vec::new();
    for _ in 0..TASKS {
        senders.push(srv.register().await);
    }

    let accepted_count = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for (i, s) in senders.iter().cloned().enumerate() {
        let base = srv.base.clone();
        let client = srv.client.clone();
        let rid = r.id.clone();
        let accepted_count = accepted_count.clone();
        let finished = finished.clone();
        handles.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused: Vec<String> = Vec::new();
            for k in 0..PER_TASK {
                let res = client
                    .post(format!("{base}/send-message"))
                    .bearer_auth(&s.token)
                    .json(&json!({"sender_id": s.id, "receiver_id": rid, "message": format!("t{i}-{k}")}))
                    .send()
                    .await;
                let resp = match res {
                    Ok(resp) => resp,
                    Err(_) => break, // the server died
                };
                let status = resp.status().as_u16();
                let text = match resp.text().await {
                    Ok(t) => t,
                    Err(_) => break,
                };
                if status != 202 {
                    refused.push(format!("{status} {}", truncate(&text, 200)));
                    break;
                }
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("202 with a non-JSON body {text:?}: {e}"));
                let id = v["message_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("202 without message_id: {text}"))
                    .to_string();
                accepted.push(id);
                accepted_count.fetch_add(1, Ordering::SeqCst);
            }
            finished.fetch_add(1, Ordering::SeqCst);
            (s, accepted, refused)
        }));
    }

    let start = Instant::now();
    while accepted_count.load(Ordering::SeqCst) < KILL_AFTER
        && finished.load(Ordering::SeqCst) < TASKS
        && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let at_kill = accepted_count.load(Ordering::SeqCst);
    srv.kill_9();

    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("sender task"));
    }
    drop(srv);
    for (s, _, refused) in &results {
        assert!(
            refused.is_empty(),
            "sender {} got a non-202 answer before the kill: {refused:?}",
            s.id
        );
    }
    let total: usize = results.iter().map(|(_, a, _)| a.len()).sum();
    eprintln!(
        "kill -9 after {at_kill} accepted sends; {total} of {} accepted in all",
        TASKS * PER_TASK
    );
    assert!(
        total >= KILL_AFTER,
        "only {total} sends were accepted before the kill"
    );
    assert!(
        total < TASKS * PER_TASK,
        "the burst finished before the kill: the test proved nothing"
    );
    let accepted: Vec<String> = results
        .iter()
        .flat_map(|(_, a, _)| a.iter().cloned())
        .collect();
    assert_no_duplicates(&accepted, "message ids handed out before the crash");
    let accepted_set: HashSet<String> = accepted.iter().cloned().collect();

    // Restart on the same data directory.
    let srv = TestServer::spawn_in(dir.path());
    let hist = srv
        .wait_history_contains_within(recovery_window(), &r, &accepted)
        .await;
    let hist_ids = ids(&hist);
    assert_no_duplicates(&hist_ids, "recipient's history after kill -9 and restart");
    let per_sender = by_sender(&hist);
    for (s, acc, _) in &results {
        let in_hist: Vec<String> = per_sender
            .get(&s.id)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| accepted_set.contains(i))
            .collect();
        assert_eq!(
            &in_hist, acc,
            "sender {}: accepted messages out of order (or missing) in the recipient's history",
            s.id
        );
        // The sender's own history has each accepted message once.
        let own = srv.all_ids(s).await;
        assert_no_duplicates(&own, "sender's history after kill -9");
        for id in acc {
            assert!(own.contains(id), "sender's history lacks accepted {id}");
        }
    }

    // get-new-messages returns each accepted id, each at most once.
    let new = srv
        .collect_new_until_within(recovery_window(), &r, &accepted)
        .await;
    settle().await;
    let mut new_ids = ids(&new);
    new_ids.extend(ids(&srv.new_messages(&r, None, None).await.messages));
    assert_no_duplicates(&new_ids, "get-new-messages after kill -9 and restart");
    let hist_set: HashSet<String> = hist_ids.iter().cloned().collect();
    for id in &new_ids {
        assert!(
            hist_set.contains(id) || srv.all_ids(&r).await.contains(id),
            "get-new-messages returned {id}, which is not in the history"
        );
    }
}

/// How long recovery may take: on DynamoDB/SQS, work held by the killed process comes back
/// only when its SQS visibility timeout (15 s locally) expires.
fn recovery_window() -> Duration {
    if backend_is_dynamodb() {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(20)
    }
}
