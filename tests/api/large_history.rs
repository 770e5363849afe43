//! A user with a large history: get-new-messages stays correct.
//!
//! On the embedded store every one of the 10,000 messages goes through the API. On DynamoDB
//! (moto) that would take most of an hour (moto is single-threaded Python, and each message
//! costs some twenty DynamoDB and SQS requests), so there the history is 3,000 messages (the
//! server projects every seeded one through moto: 9,800 took two minutes of the test run; that
//! no request grows with a 10,000-message history on DynamoDB is `server/tests/cost_meter.rs`'s
//! proof) and the test builds most of it directly: it appends `MessageDelivered` events to the recipient's inbox stream in the
//! events table, copied from a real delivery, and the server's own stream projector projects
//! them into the read tables. The last messages, and everything the test asserts, go through
//! the API as on the embedded store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// Messages in the recipient's history.
const TOTAL: usize = 10_000;
/// Messages in the recipient's history on DynamoDB (moto).
const TOTAL_ON_DYNAMODB: usize = 3_000;
const SENDERS: usize = 8;
const CONCURRENCY_PER_SENDER: usize = 5;
/// On DynamoDB: how many of the messages are sent through the API (the rest are seeded).
const SENT_ON_DYNAMODB: usize = 200;
/// Puts per BatchWriteItem (DynamoDB's limit).
const BATCH_WRITE: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_new_messages_with_a_large_history() {
    let srv = Arc::new(TestServer::spawn());
    let r = srv.register().await;
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        senders.push(srv.register().await);
    }

    let wanted = if backend_is_dynamodb() {
        TOTAL_ON_DYNAMODB
    } else {
        TOTAL
    };
    let (seeded, to_send) = if backend_is_dynamodb() {
        let t = Instant::now();
        let seeded = seed_inbox(&srv, &senders[0], &r, wanted - SENT_ON_DYNAMODB).await;
        eprintln!(
            "large history: seeded {} deliveries into the events table in {:?}",
            seeded.len(),
            t.elapsed()
        );
        (seeded, SENT_ON_DYNAMODB)
    } else {
        (Vec::new(), TOTAL)
    };

    // Send the rest: SENDERS * CONCURRENCY_PER_SENDER sequential lanes.
    let t0 = Instant::now();
    let lanes = SENDERS * CONCURRENCY_PER_SENDER;
    let per_lane = to_send / lanes;
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
    let mut sent: HashSet<String> = seeded.into_iter().collect();
    for h in handles {
        for id in h.await.expect("sender lane") {
            sent.insert(id);
        }
    }
    let total = sent.len();
    assert_eq!(total, wanted, "distinct message ids");
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
            // On moto the server projects the seeded history first: some 20,000 writes.
            let limit = Duration::from_secs(if backend_is_dynamodb() { 180 } else { 60 });
            assert!(
                t1.elapsed() < limit,
                "only {} of {total} delivered after {limit:?}",
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

/// Appends `count` deliveries to `recipient`'s inbox stream (positions 1..=count) straight into
/// the events table, and returns their message ids. Each is a copy of a real delivery from
/// `sender` to a user of its own, with a new message id, event id and text and `recipient` as
/// the recipient, so the item is in exactly the format the server writes.
async fn seed_inbox(
    srv: &TestServer,
    sender: &User,
    recipient: &User,
    count: usize,
) -> Vec<String> {
    let events = srv.dynamodb_table("events");
    let other = srv.register().await;
    let template_id = srv.send(sender, &other.id, "template").await;
    srv.wait_history_contains(&other, std::slice::from_ref(&template_id))
        .await;
    let template = srv
        .dynamodb_call(
            "GetItem",
            &json!({
                "TableName": events,
                "Key": {"stream": {"S": format!("inbox-{}", other.id)}, "version": {"N": "1"}},
                "ConsistentRead": true,
            }),
        )
        .await;
    let template = template
        .get("Item")
        .unwrap_or_else(|| panic!("no delivery at inbox-{} version 1: {template}", other.id))
        .clone();
    let template_data: Value = serde_json::from_str(
        template["data"]["S"]
            .as_str()
            .unwrap_or_else(|| panic!("event item without a `data` string: {template}")),
    )
    .expect("event data is JSON");
    assert_eq!(
        template["type"]["S"].as_str(),
        Some("MessageDelivered"),
        "the first event of an inbox: {template}"
    );
    assert_eq!(
        template_data["message_id"].as_str(),
        Some(template_id.as_str()),
        "the template delivery: {template}"
    );

    let mut ids = Vec::with_capacity(count);
    let mut items = Vec::with_capacity(count);
    for position in 1..=count {
        let message_id = random_id();
        let mut data = template_data.clone();
        data["message_id"] = json!(message_id);
        data["recipient"] = json!(recipient.id);
        data["receiver"] = json!(recipient.id);
        data["text"] = json!(format!("seeded #{position}"));
        let mut item = template.clone();
        item["stream"] = json!({"S": format!("inbox-{}", recipient.id)});
        item["version"] = json!({"N": position.to_string()});
        item["event_id"] = json!({"S": random_id()});
        item["data"] = json!({"S": data.to_string()});
        items.push(json!({"PutRequest": {"Item": item}}));
        ids.push(message_id);
    }
    for batch in items.chunks(BATCH_WRITE) {
        let out = srv
            .dynamodb_call(
                "BatchWriteItem",
                &json!({"RequestItems": {events.as_str(): batch}}),
            )
            .await;
        let unprocessed = out
            .get("UnprocessedItems")
            .and_then(Value::as_object)
            .map_or(0, |u| u.len());
        assert_eq!(
            unprocessed, 0,
            "BatchWriteItem left items unprocessed: {out}"
        );
    }
    ids
}
