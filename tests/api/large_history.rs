//! A user with a large history: get-new-messages stays correct.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Messages in the recipient's history.
const TOTAL: usize = 10_000;
const SENDERS: usize = 8;
const CONCURRENCY_PER_SENDER: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_new_messages_with_a_large_history() {
    let srv = Arc::new(TestServer::spawn());
    let r = srv.register().await;
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        senders.push(srv.register().await);
    }

    // Send TOTAL messages: SENDERS * CONCURRENCY_PER_SENDER sequential lanes.
    let t0 = Instant::now();
    let lanes = SENDERS * CONCURRENCY_PER_SENDER;
    let per_lane = TOTAL / lanes;
    let mut handles = Vec::new();
    for lane in 0..lanes {
        let srv = srv.clone();
        let s = senders[lane % SENDERS].clone();
        let rid = r.id.clone();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per_lane);
            for k in 0..per_lane {
                out.push(srv.send(&s, &rid, &format!("lane {lane} #{k}")).await);
            }
            out
        }));
    }
    let mut sent = HashSet::new();
    for h in handles {
        for id in h.await.expect("sender lane") {
            sent.insert(id);
        }
    }
    let total = sent.len();
    assert_eq!(total, lanes * per_lane, "distinct message ids");
    eprintln!(
        "large history: {total} sends accepted in {:?}",
        t0.elapsed()
    );

    // Read them all as new, 100 at a time.
    let t1 = Instant::now();
    let mut seen = Vec::with_capacity(total);
    let mut calls = 0usize;
    let mut slowest = Duration::ZERO;
    while seen.len() < total {
        let t = Instant::now();
        let p = srv.new_messages(&r, None, Some(100)).await;
        slowest = slowest.max(t.elapsed());
        calls += 1;
        if p.messages.is_empty() {
            assert!(
                t1.elapsed() < Duration::from_secs(60),
                "only {} of {total} delivered after 60 s",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen.extend(ids(&p.messages));
    }
    eprintln!(
        "large history: drained {} new messages in {calls} calls, {:?} (slowest call {slowest:?})",
        seen.len(),
        t1.elapsed()
    );
    assert_no_duplicates(&seen, "draining a large inbox");
    let seen_set: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen_set, sent, "drained ids = accepted ids");

    // With the history full: only the new messages, limit respected.
    let a = &senders[0];
    let m1 = srv.send(a, &r.id, "new 1").await;
    let m2 = srv.send(a, &r.id, "new 2").await;
    let m3 = srv.send(a, &r.id, "new 3").await;
    srv.wait_history_contains(&r, std::slice::from_ref(&m3))
        .await;
    let mut got = Vec::new();
    let mut durations = Vec::new();
    let start = Instant::now();
    while got.len() < 3 {
        let t = Instant::now();
        let p = srv.new_messages(&r, None, Some(2)).await;
        durations.push(t.elapsed());
        assert!(
            p.messages.len() <= 2,
            "limit=2 returned {}",
            p.messages.len()
        );
        got.extend(ids(&p.messages));
        assert!(start.elapsed() < EVENTUALLY, "new messages did not arrive");
    }
    assert_eq!(
        got,
        vec![m1, m2, m3],
        "with {total} old messages, only the 3 new ones, in order"
    );
    let p = srv.new_messages(&r, None, Some(2)).await;
    assert!(p.messages.is_empty(), "nothing is new any more");
    eprintln!("large history: get-new-messages call durations {durations:?}");

    // The history holds everything.
    let t2 = Instant::now();
    let hist = srv.all_messages(&r).await;
    assert_eq!(hist.len(), total + 3, "history size");
    eprintln!(
        "large history: read the whole history ({} messages) in {:?}",
        hist.len(),
        t2.elapsed()
    );
}
