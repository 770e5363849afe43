//! Abuse limits: sends (direct and group) are limited per user by
//! `MESSAGING_RATE_LIMIT_PER_MINUTE`; over the limit a send gets a 429 problem with
//! `Retry-After` and writes nothing; other users and reads are not affected; `0` is no limit.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::helpers::*;

const LIMIT_VAR: &str = "MESSAGING_RATE_LIMIT_PER_MINUTE";

/// `Retry-After` as whole seconds; panics unless present and numeric.
fn retry_after(resp: &Resp) -> u64 {
    resp.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {}", resp.describe()))
}

fn assert_rate_limited(resp: &Resp, ctx: &str) -> u64 {
    assert_problem(resp, &[429], &["rate_limited"], ctx);
    assert!(
        resp.headers.contains_key("x-request-id"),
        "{ctx}: no x-request-id"
    );
    retry_after(resp)
}

#[tokio::test]
async fn sends_over_the_limit_get_429_with_retry_after_and_write_nothing() {
    // 3 a minute: a burst of 3, then one every 20 s.
    let srv = TestServer::spawn_with_env(&[(LIMIT_VAR, "3")]);
    let alice = srv.register().await;
    let bob = srv.register().await;
    let group = srv.create_group(&alice, "g", &[&bob.id]).await;

    let mut accepted = Vec::new();
    accepted.push(srv.send(&alice, &bob.id, "one").await);
    accepted.push(srv.send_group(&alice, &group, "two").await);
    accepted.push(srv.send(&alice, &bob.id, "three").await);

    let refused = srv.try_send(&alice, &bob.id, "over the limit").await;
    let wait = assert_rate_limited(&refused, "4th send");
    assert!((1..=20).contains(&wait), "Retry-After {wait} s at 3/min");
    // Direct and group sends share one allowance.
    let refused = srv
        .try_send_group(&alice, &group, "over the limit, group")
        .await;
    assert_rate_limited(&refused, "group send over the limit");

    // Other users, reads and other commands are not limited.
    let from_bob = srv.send(&bob, &alice.id, "bob is fine").await;
    srv.try_all_messages(&alice, &[])
        .await
        .expect_status(200, "reads are not limited");
    srv.block(&alice, &bob.id).await;
    srv.unblock(&alice, &bob.id).await;

    // Nothing of the refused sends was written: bob receives exactly the accepted ones.
    let received = srv.collect_new_until(&bob, &accepted).await;
    settle().await;
    let more = srv.new_messages(&bob, None, None).await.messages;
    let got: HashSet<String> = ids(&received).into_iter().chain(ids(&more)).collect();
    assert_eq!(got, accepted.iter().cloned().collect::<HashSet<_>>());
    let history = srv.wait_history_contains(&alice, &[from_bob]).await;
    let texts: Vec<&str> = history
        .iter()
        .filter_map(|m| m.get("message").and_then(|v| v.as_str()))
        .collect();
    assert_eq!(history.len(), 4, "3 sent and 1 received: {texts:?}");
    assert!(
        !texts.iter().any(|t| t.contains("over the limit")),
        "{texts:?}"
    );
}

#[tokio::test]
async fn a_send_after_the_advertised_wait_is_accepted() {
    // 20 a minute: a burst of 20, then one every 3 s.
    let srv = TestServer::spawn_with_env(&[(LIMIT_VAR, "20")]);
    let alice = srv.register().await;
    let bob = srv.register().await;
    let started = Instant::now();
    let mut admitted = 0;
    let refused = loop {
        let resp = srv.try_send(&alice, &bob.id, "m").await;
        match resp.status {
            202 => admitted += 1,
            _ => break resp,
        }
        assert!(admitted <= 60, "no 429 after {admitted} sends at 20/min");
    };
    let wait = assert_rate_limited(&refused, "over the burst");
    // The burst, plus whatever refilled (one per 3 s) while sending.
    let refilled = started.elapsed().as_secs() / 3 + 1;
    assert!(
        admitted >= 20 && admitted <= 20 + refilled,
        "{admitted} admitted in {:?}",
        started.elapsed()
    );
    assert!((1..=3).contains(&wait), "Retry-After {wait} s at 20/min");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    srv.send(&alice, &bob.id, "after the wait").await;
}

#[tokio::test]
async fn zero_turns_the_limit_off() {
    let srv = TestServer::spawn_with_env(&[(LIMIT_VAR, "0")]);
    let alice = srv.register().await;
    let bob = srv.register().await;
    for i in 0..40 {
        srv.send(&alice, &bob.id, &format!("m{i}")).await;
    }
}
