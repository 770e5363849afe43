//! Every endpoint's happy path and response shapes.

use serde_json::{json, Value};

use crate::helpers::*;

fn assert_json_content_type(r: &Resp, ctx: &str) {
    assert!(
        r.content_type
            .to_ascii_lowercase()
            .starts_with("application/json"),
        "{ctx}: expected content-type application/json, got {}",
        r.describe()
    );
}

#[tokio::test]
async fn health_is_200_without_a_token() {
    let srv = TestServer::spawn();
    let r = srv.get("/health", None, &[]).await;
    r.expect_status(200, "GET /health");
}

#[tokio::test]
async fn register_returns_a_uuid_and_an_unguessable_token() {
    let srv = TestServer::spawn();

    let r = srv.post_raw("/register", None, None, Vec::new(), &[]).await;
    r.expect_status(201, "POST /register without a body");
    assert_json_content_type(&r, "POST /register");
    let id1 = r.str_field("user_id");
    let token1 = r.str_field("token");
    assert!(
        uuid::Uuid::parse_str(&id1).is_ok(),
        "user_id {id1:?} is not a UUID"
    );
    assert!(
        token1.len() >= 22,
        "token {token1:?} is too short to carry 128 random bits"
    );

    let r = srv
        .post_json("/register", None, &json!({"display_name": "Ada"}))
        .await;
    r.expect_status(201, "POST /register with a display_name");
    let id2 = r.str_field("user_id");
    let token2 = r.str_field("token");
    assert!(uuid::Uuid::parse_str(&id2).is_ok());
    assert_ne!(id1, id2, "two registrations must give two users");
    assert_ne!(token1, token2, "two registrations must give two tokens");

    // The new token works right away.
    let u = User {
        id: id2,
        token: token2,
    };
    let page = srv.new_messages(&u, None, None).await;
    assert!(page.messages.is_empty());
}

#[tokio::test]
async fn direct_message_round_trip_and_message_shape() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let text = "héllo ✓ \"quoted\" \\ back\nsecond line 😀";

    let r = srv.try_send(&a, &b.id, text).await;
    r.expect_status(202, "POST /send-message");
    assert_json_content_type(&r, "POST /send-message");
    let mid = r.str_field("message_id");
    assert!(!mid.is_empty());

    // Recipient: new messages.
    let got = srv.collect_new_until(&b, std::slice::from_ref(&mid)).await;
    assert_eq!(ids(&got), vec![mid.clone()], "B's new messages");
    let m = &got[0];
    assert_message_shape(m, "B's new message");
    assert_eq!(m["sender_id"], json!(a.id));
    assert_eq!(m["receiver_id"], json!(b.id));
    assert_eq!(
        m["message"],
        json!(text),
        "message text must round-trip exactly"
    );
    assert!(
        m.get("group_id").map(Value::is_null).unwrap_or(true),
        "a direct message has no group_id: {m}"
    );

    // The raw response shape of get-new-messages.
    let raw = srv.try_new_messages(&b, &[]).await;
    raw.expect_status(200, "GET /get-new-messages");
    assert_json_content_type(&raw, "GET /get-new-messages");
    assert!(raw.body()["messages"].is_array());
    assert!(raw.body()["cursor"].is_string());
    assert_eq!(
        raw.body()["messages"].as_array().unwrap().len(),
        0,
        "already returned messages are not new again"
    );

    // Both histories contain it.
    for (who, u) in [("sender", &a), ("recipient", &b)] {
        let raw = srv.try_all_messages(u, &[]).await;
        raw.expect_status(200, "GET /get-all-messages");
        assert_json_content_type(&raw, "GET /get-all-messages");
        let body = raw.body();
        assert!(body["messages"].is_array(), "{who}: {}", raw.text);
        assert!(
            body.get("next_cursor").is_some(),
            "{who}: next_cursor member must be present (null on the last page): {}",
            raw.text
        );
        let all = srv
            .wait_history_contains(u, std::slice::from_ref(&mid))
            .await;
        assert_eq!(ids(&all), vec![mid.clone()], "{who}'s history");
        let h = &all[0];
        assert_message_shape(h, &format!("{who}'s history"));
        assert_eq!(h["sender_id"], json!(a.id));
        assert_eq!(h["receiver_id"], json!(b.id));
        assert_eq!(h["message"], json!(text));
        assert_eq!(
            h["sent_at"], m["sent_at"],
            "sent_at is the same in every view"
        );
    }
}

#[tokio::test]
async fn block_and_unblock_answer_200() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let r = srv.try_block(&a, &b.id).await;
    r.expect_status(200, "POST /block-user");
    let r = srv.try_unblock(&a, &b.id).await;
    r.expect_status(200, "POST /unblock-user");
    // After the unblock, B reaches A.
    let mid = srv.send(&b, &a.id, "after unblock").await;
    srv.collect_new_until(&a, &[mid]).await;
}

#[tokio::test]
async fn group_endpoints_happy_path_and_group_message_shape() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let c = srv.register().await;

    let r = srv.try_create_group(&a, "friends", &[&b.id]).await;
    r.expect_status(201, "POST /create-group");
    assert_json_content_type(&r, "POST /create-group");
    let g = r.str_field("group_id");
    assert!(!g.is_empty());

    srv.try_add_member(&a, &g, &c.id)
        .await
        .expect_status(200, "POST /add-user-to-group");

    let r = srv.try_send_group(&b, &g, "hi group").await;
    r.expect_status(202, "POST /send-group-message");
    assert_json_content_type(&r, "POST /send-group-message");
    let mid = r.str_field("message_id");

    for (who, u) in [("admin A", &a), ("added C", &c)] {
        let got = srv.collect_new_until(u, std::slice::from_ref(&mid)).await;
        assert_eq!(ids(&got), vec![mid.clone()], "{who}'s new messages");
        let m = &got[0];
        assert_message_shape(m, &format!("{who}'s group message"));
        assert_eq!(m["sender_id"], json!(b.id));
        assert_eq!(m["group_id"], json!(g));
        assert_eq!(m["message"], json!("hi group"));
        assert!(
            m.get("receiver_id").map(Value::is_null).unwrap_or(true),
            "a group message has no receiver_id: {m}"
        );
    }
    let hist = srv
        .wait_history_contains(&b, std::slice::from_ref(&mid))
        .await;
    assert_eq!(ids(&hist), vec![mid.clone()], "the sender's history");
    assert_eq!(hist[0]["group_id"], json!(g));

    srv.try_remove_member(&a, &g, &c.id)
        .await
        .expect_status(200, "POST /remove-user-from-group");
    // C is out: C can no longer send.
    let r = srv.try_send_group(&c, &g, "still here?").await;
    assert_problem(&r, &[403], &["forbidden"], "removed member sends");
}

#[tokio::test]
async fn history_mixes_sent_and_received_direct_and_group_oldest_first() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let g = srv.create_group(&a, "g", &[&b.id]).await;

    let mut expected = Vec::new();
    // Each message waits for delivery before the next, so the order is
    // unambiguous in every view.
    let m1 = srv.send(&a, &b.id, "1 a->b").await;
    srv.wait_history_contains(&b, std::slice::from_ref(&m1))
        .await;
    expected.push(m1);
    let m2 = srv.send(&b, &a.id, "2 b->a").await;
    srv.wait_history_contains(&a, std::slice::from_ref(&m2))
        .await;
    expected.push(m2);
    let m3 = srv.send_group(&a, &g, "3 a->g").await;
    srv.wait_history_contains(&b, std::slice::from_ref(&m3))
        .await;
    expected.push(m3);
    let m4 = srv.send_group(&b, &g, "4 b->g").await;
    srv.wait_history_contains(&a, std::slice::from_ref(&m4))
        .await;
    expected.push(m4);

    for (who, u) in [("A", &a), ("B", &b)] {
        let all = srv.wait_history_contains(u, &expected).await;
        assert_eq!(ids(&all), expected, "{who}'s history, oldest first");
        let mut last = None;
        for m in &all {
            assert_message_shape(m, &format!("{who}'s history"));
            let t = parse_rfc3339(m["sent_at"].as_str().unwrap());
            if let Some(prev) = last {
                assert!(t >= prev, "{who}'s history is not oldest first by sent_at");
            }
            last = Some(t);
        }
    }
}
