//! Idempotency-Key: a retry returns the same response and writes nothing.

use serde_json::json;

use crate::helpers::*;

fn key() -> String {
    format!("test-{}", random_id())
}

#[tokio::test]
async fn send_message_retry_returns_the_same_message_and_delivers_once() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let k = key();
    let body = json!({"sender_id": a.id, "receiver_id": b.id, "message": "once"});
    let h = [("Idempotency-Key", k.as_str())];

    let r1 = srv
        .post_json_with("/send-message", Some(&a.token), &body, &h)
        .await;
    r1.expect_status(202, "first send");
    let r2 = srv
        .post_json_with("/send-message", Some(&a.token), &body, &h)
        .await;
    r2.expect_status(202, "retried send");
    assert_eq!(r1.body(), r2.body(), "a retry returns the same body");
    let mid = r1.str_field("message_id");

    let sentinel = srv.send(&a, &b.id, "sentinel").await;
    let new = srv
        .collect_new_until(&b, &[mid.clone(), sentinel.clone()])
        .await;
    settle().await;
    let mut new_ids = ids(&new);
    new_ids.extend(ids(&srv.new_messages(&b, None, None).await.messages));
    assert_eq!(
        new_ids,
        vec![mid.clone(), sentinel.clone()],
        "recipient's new messages after a retried send"
    );
    assert_eq!(
        srv.all_ids(&b).await,
        vec![mid.clone(), sentinel.clone()],
        "recipient's history after a retried send"
    );
    assert_eq!(
        srv.all_ids(&a).await,
        vec![mid, sentinel],
        "sender's history after a retried send"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_write_once() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let k = key();
    let body = json!({"sender_id": a.id, "receiver_id": b.id, "message": "racing"});
    let h = [("Idempotency-Key", k.as_str())];
    let rs = futures::future::join_all(
        (0..4).map(|_| srv.post_json_with("/send-message", Some(&a.token), &body, &h)),
    )
    .await;
    let mut ok_ids = Vec::new();
    for r in &rs {
        match r.status {
            202 => ok_ids.push(r.str_field("message_id")),
            409 => assert_problem(r, &[409], &["conflict"], "concurrent retry"),
            _ => panic!("concurrent retry answered {}", r.describe()),
        }
    }
    assert!(!ok_ids.is_empty(), "no concurrent attempt succeeded");
    assert!(
        ok_ids.iter().all(|i| *i == ok_ids[0]),
        "concurrent retries with one key got different message ids: {ok_ids:?}"
    );
    let sentinel = srv.send(&a, &b.id, "sentinel").await;
    srv.wait_history_contains(&b, &[ok_ids[0].clone(), sentinel.clone()])
        .await;
    settle().await;
    assert_eq!(
        srv.all_ids(&b).await,
        vec![ok_ids[0].clone(), sentinel],
        "recipient's history after concurrent retries"
    );
}

#[tokio::test]
async fn send_group_message_retry_delivers_once() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let g = srv.create_group(&a, "g", &[&b.id]).await;
    let k = key();
    let body = json!({"sender_id": a.id, "group_id": g, "message": "once to the group"});
    let h = [("Idempotency-Key", k.as_str())];
    let r1 = srv
        .post_json_with("/send-group-message", Some(&a.token), &body, &h)
        .await;
    r1.expect_status(202, "first group send");
    let r2 = srv
        .post_json_with("/send-group-message", Some(&a.token), &body, &h)
        .await;
    r2.expect_status(202, "retried group send");
    assert_eq!(r1.body(), r2.body());
    let mid = r1.str_field("message_id");
    let sentinel = srv.send_group(&a, &g, "sentinel").await;
    srv.collect_new_until(&b, std::slice::from_ref(&sentinel))
        .await;
    settle().await;
    assert_eq!(srv.all_ids(&b).await, vec![mid, sentinel]);
}

#[tokio::test]
async fn create_group_retry_returns_the_same_group() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let k = key();
    let body = json!({"group_name": "idem", "creator_id": a.id, "members": [b.id]});
    let h = [("Idempotency-Key", k.as_str())];
    let r1 = srv
        .post_json_with("/create-group", Some(&a.token), &body, &h)
        .await;
    r1.expect_status(201, "first create-group");
    let r2 = srv
        .post_json_with("/create-group", Some(&a.token), &body, &h)
        .await;
    r2.expect_status(201, "retried create-group");
    assert_eq!(r1.body(), r2.body(), "a retry returns the same body");
    assert_eq!(r1.str_field("group_id"), r2.str_field("group_id"));
    // The group works.
    let g = r1.str_field("group_id");
    let m = srv.send_group(&a, &g, "hello").await;
    let got = srv.collect_new_until(&b, std::slice::from_ref(&m)).await;
    assert_eq!(ids(&got), vec![m]);
}

#[tokio::test]
async fn register_retry_returns_the_same_user_and_token() {
    let srv = TestServer::spawn();
    let k = key();
    let h = [("Idempotency-Key", k.as_str())];
    let r1 = srv.post_raw("/register", None, None, Vec::new(), &h).await;
    r1.expect_status(201, "first register");
    let r2 = srv.post_raw("/register", None, None, Vec::new(), &h).await;
    r2.expect_status(201, "retried register");
    assert_eq!(r1.str_field("user_id"), r2.str_field("user_id"));
    assert_eq!(r1.str_field("token"), r2.str_field("token"));
    let u = User {
        id: r1.str_field("user_id"),
        token: r1.str_field("token"),
    };
    srv.new_messages(&u, None, None).await;

    // With a body too.
    let k2 = key();
    let h2 = [("Idempotency-Key", k2.as_str())];
    let body = json!({"display_name": "Grace"});
    let r1 = srv.post_json_with("/register", None, &body, &h2).await;
    let r2 = srv.post_json_with("/register", None, &body, &h2).await;
    r1.expect_status(201, "first register with a body");
    r2.expect_status(201, "retried register with a body");
    assert_eq!(r1.body(), r2.body());

    // Same key, different body: refused.
    let r3 = srv
        .post_json_with("/register", None, &json!({"display_name": "Other"}), &h2)
        .await;
    assert_problem(
        &r3,
        &[409, 422],
        &["conflict", "invalid_request", "idempotency_key_reused"],
        "register: same key, different body",
    );
}

#[tokio::test]
async fn same_key_with_a_different_body_is_refused_and_writes_nothing() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let k = key();
    let h = [("Idempotency-Key", k.as_str())];
    let first = srv
        .post_json_with(
            "/send-message",
            Some(&a.token),
            &json!({"sender_id": a.id, "receiver_id": b.id, "message": "first"}),
            &h,
        )
        .await;
    first.expect_status(202, "first send");
    let mid = first.str_field("message_id");
    let second = srv
        .post_json_with(
            "/send-message",
            Some(&a.token),
            &json!({"sender_id": a.id, "receiver_id": b.id, "message": "different"}),
            &h,
        )
        .await;
    assert_problem(
        &second,
        &[409, 422],
        &["conflict", "invalid_request", "idempotency_key_reused"],
        "send-message: same key, different body",
    );
    if second.status == 409 {
        assert_eq!(second.str_field("code"), "conflict");
    }
    let sentinel = srv.send(&a, &b.id, "sentinel").await;
    srv.wait_history_contains(&b, std::slice::from_ref(&sentinel))
        .await;
    settle().await;
    assert_eq!(
        srv.all_ids(&b).await,
        vec![mid, sentinel],
        "the refused request wrote something"
    );
}

#[tokio::test]
async fn keys_do_not_leak_across_users() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let c = srv.register().await;
    let k = key();
    let h = [("Idempotency-Key", k.as_str())];
    let ra = srv
        .post_json_with(
            "/send-message",
            Some(&a.token),
            &json!({"sender_id": a.id, "receiver_id": c.id, "message": "from A"}),
            &h,
        )
        .await;
    ra.expect_status(202, "A's send");
    let rb = srv
        .post_json_with(
            "/send-message",
            Some(&b.token),
            &json!({"sender_id": b.id, "receiver_id": c.id, "message": "from B"}),
            &h,
        )
        .await;
    assert!(
        rb.status == 202 || rb.status == 409 || rb.status == 422,
        "B's send with A's key: {}",
        rb.describe()
    );
    assert_ne!(
        rb.json, ra.json,
        "B, reusing A's idempotency key, got A's response"
    );
}
