//! Bad input: a 4xx problem response, never a 5xx, and nothing written.

use serde_json::{json, Value};

use crate::helpers::*;

/// A named bad body with the statuses and problem codes it may get.
type BadBody = (
    &'static str,
    Vec<u8>,
    &'static [u16],
    &'static [&'static str],
);

const INVALID: &[&str] = &["invalid_request"];
const TOO_BIG: &[&str] = &["payload_too_large", "invalid_request"];
/// Malformed JSON / wrong types may be 400 or 422.
const SHAPE: &[u16] = &[400, 422];

async fn post_bytes(srv: &TestServer, path: &str, u: &User, body: &[u8]) -> Resp {
    srv.post_raw(
        path,
        Some(&u.token),
        Some("application/json"),
        body.to_vec(),
        &[],
    )
    .await
}

#[tokio::test]
async fn bad_sends_are_rejected_and_write_nothing() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let ok = |m: &str| json!({"sender_id": a.id, "receiver_id": b.id, "message": m});

    let mut cases: Vec<BadBody> = vec![
        (
            "truncated JSON",
            br#"{"sender_id": "#.to_vec(),
            SHAPE,
            INVALID,
        ),
        ("not JSON at all", b"hello there".to_vec(), SHAPE, INVALID),
        ("empty body", Vec::new(), SHAPE, INVALID),
        ("JSON array", b"[]".to_vec(), SHAPE, INVALID),
        ("JSON null", b"null".to_vec(), SHAPE, INVALID),
        ("empty object", b"{}".to_vec(), SHAPE, INVALID),
        (
            "invalid UTF-8",
            b"{\"message\": \"\xff\xfe\"}".to_vec(),
            SHAPE,
            INVALID,
        ),
    ];
    let json_cases: Vec<(&str, Value, &[u16], &[&str])> = vec![
        (
            "message is a number",
            json!({"sender_id": a.id, "receiver_id": b.id, "message": 5}),
            SHAPE,
            INVALID,
        ),
        (
            "message is null",
            json!({"sender_id": a.id, "receiver_id": b.id, "message": null}),
            SHAPE,
            INVALID,
        ),
        (
            "receiver_id is a number",
            json!({"sender_id": a.id, "receiver_id": 42, "message": "x"}),
            SHAPE,
            INVALID,
        ),
        (
            "message missing",
            json!({"sender_id": a.id, "receiver_id": b.id}),
            SHAPE,
            INVALID,
        ),
        (
            "receiver_id missing",
            json!({"sender_id": a.id, "message": "x"}),
            SHAPE,
            INVALID,
        ),
        (
            "sender_id missing",
            json!({"receiver_id": b.id, "message": "x"}),
            &[400, 422, 403],
            &["invalid_request", "forbidden"],
        ),
        ("empty message", ok(""), &[400], INVALID),
        (
            "4097-byte message",
            ok(&"x".repeat(4097)),
            &[400, 413],
            TOO_BIG,
        ),
        (
            "4098-byte message of 2049 two-byte characters",
            ok(&"é".repeat(2049)),
            &[400, 413],
            TOO_BIG,
        ),
        (
            "malformed receiver id",
            json!({"sender_id": a.id, "receiver_id": "not-a-uuid", "message": "x"}),
            &[400],
            INVALID,
        ),
        (
            "unknown receiver",
            json!({"sender_id": a.id, "receiver_id": random_id(), "message": "x"}),
            &[404],
            &["not_found"],
        ),
    ];
    for (name, v, st, codes) in json_cases {
        cases.push((name, serde_json::to_vec(&v).unwrap(), st, codes));
    }
    for (name, body, statuses, codes) in &cases {
        let r = post_bytes(&srv, "/send-message", &a, body).await;
        assert_problem(&r, statuses, codes, &format!("send-message: {name}"));
    }

    // A body over 64 KiB: 413.
    let huge = ok(&"x".repeat(70 * 1024));
    let r = srv.post_json("/send-message", Some(&a.token), &huge).await;
    assert_problem(
        &r,
        &[413],
        &["payload_too_large"],
        "send-message: 70 KiB body",
    );

    // Wrong content type.
    let r = srv
        .post_raw(
            "/send-message",
            Some(&a.token),
            Some("text/plain"),
            serde_json::to_vec(&ok("x")).unwrap(),
            &[],
        )
        .await;
    assert_problem(&r, &[400, 415], &[], "send-message: text/plain body");

    // Nothing was written: only the sentinel shows up, for both.
    let sentinel = srv.send(&a, &b.id, "sentinel").await;
    let new = srv
        .collect_new_until(&b, std::slice::from_ref(&sentinel))
        .await;
    srv.wait_history_contains(&b, std::slice::from_ref(&sentinel))
        .await;
    settle().await;
    let mut new_ids = ids(&new);
    new_ids.extend(ids(&srv.new_messages(&b, None, None).await.messages));
    assert_eq!(new_ids, vec![sentinel.clone()], "recipient's new messages");
    assert_eq!(
        srv.all_ids(&b).await,
        vec![sentinel.clone()],
        "recipient's history"
    );
    assert_eq!(srv.all_ids(&a).await, vec![sentinel], "sender's history");
}

#[tokio::test]
async fn message_size_is_1_to_4096_bytes_of_utf8() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let texts = [
        "x".to_string(),
        "x".repeat(4096),
        "é".repeat(2048),  // 4096 bytes
        "😀".repeat(1024), // 4096 bytes
    ];
    let mut sent = Vec::new();
    for t in &texts {
        let r = srv.try_send(&a, &b.id, t).await;
        r.expect_status(202, &format!("message of {} bytes", t.len()));
        sent.push(r.str_field("message_id"));
    }
    let hist = srv.wait_history_contains(&b, &sent).await;
    assert_eq!(ids(&hist), sent);
    for (m, t) in hist.iter().zip(&texts) {
        assert_eq!(
            m["message"].as_str(),
            Some(t.as_str()),
            "a {}-byte message must round-trip intact",
            t.len()
        );
    }
    let r = srv.try_send(&a, &b.id, &"😀".repeat(1025)).await;
    assert_problem(&r, &[400, 413], TOO_BIG, "4100-byte message of emoji");
}

#[tokio::test]
async fn oversize_bodies_are_413_on_every_post() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let g = srv.create_group(&a, "g", &[&b.id]).await;
    let big = "x".repeat(66 * 1024);
    let cases = [
        ("/register", None, json!({"display_name": big})),
        (
            "/send-message",
            Some(&a.token),
            json!({"sender_id": a.id, "receiver_id": b.id, "message": big}),
        ),
        (
            "/send-group-message",
            Some(&a.token),
            json!({"sender_id": a.id, "group_id": g, "message": big}),
        ),
        (
            "/create-group",
            Some(&a.token),
            json!({"group_name": big, "creator_id": a.id, "members": [b.id]}),
        ),
        (
            "/block-user",
            Some(&a.token),
            json!({"user_id": a.id, "blocked_user_id": b.id, "padding": big}),
        ),
        (
            "/add-user-to-group",
            Some(&a.token),
            json!({"group_id": g, "user_id": b.id, "padding": big}),
        ),
    ];
    for (path, token, body) in cases {
        let r = srv.post_json(path, token.map(String::as_str), &body).await;
        assert_problem(
            &r,
            &[413],
            &["payload_too_large"],
            &format!("{path}: 66 KiB body"),
        );
    }
    // Nothing from those reached B.
    let sentinel = srv.send_group(&a, &g, "sentinel").await;
    srv.wait_history_contains(&b, std::slice::from_ref(&sentinel))
        .await;
    settle().await;
    assert_eq!(srv.all_ids(&b).await, vec![sentinel]);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let g = srv.create_group(&a, "g", &[&b.id]).await;
    let ghost = random_id();
    let nf: &[&str] = &["not_found"];

    let r = srv.try_send(&a, &ghost, "x").await;
    assert_problem(&r, &[404], nf, "send-message to an unknown receiver");
    let r = srv.try_send_group(&a, &random_id(), "x").await;
    assert_problem(&r, &[404], nf, "send-group-message to an unknown group");
    let r = srv.try_add_member(&a, &g, &ghost).await;
    assert_problem(&r, &[404], nf, "add an unknown user");
    let r = srv.try_add_member(&a, &random_id(), &b.id).await;
    assert_problem(&r, &[404], nf, "add to an unknown group");
    let r = srv.try_remove_member(&a, &random_id(), &b.id).await;
    assert_problem(&r, &[404], nf, "remove from an unknown group");
    let r = srv.try_remove_member(&a, &g, &ghost).await;
    assert_problem(&r, &[404], nf, "remove an unknown user");
    let r = srv.try_block(&a, &ghost).await;
    assert_problem(&r, &[404], nf, "block an unknown user");
    let r = srv.try_unblock(&a, &ghost).await;
    assert_problem(&r, &[404], nf, "unblock an unknown user");
    let r = srv.try_create_group(&a, "ghosts", &[&ghost]).await;
    assert_problem(&r, &[404], nf, "create-group with an unknown member");

    // Nothing changed for B.
    let m = srv.send_group(&a, &g, "sentinel").await;
    srv.wait_history_contains(&b, std::slice::from_ref(&m))
        .await;
    settle().await;
    assert_eq!(srv.all_ids(&b).await, vec![m]);
}

#[tokio::test]
async fn malformed_ids_are_400() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let g = srv.create_group(&a, "g", &[&b.id]).await;

    let r = srv.try_send(&a, "not-a-uuid", "x").await;
    assert_problem(&r, &[400], INVALID, "send-message: malformed receiver_id");
    let r = srv.try_block(&a, "123").await;
    assert_problem(&r, &[400], INVALID, "block-user: malformed blocked_user_id");
    let r = srv.try_unblock(&a, "").await;
    assert_problem(&r, &[400], INVALID, "unblock-user: empty blocked_user_id");
    let r = srv.try_add_member(&a, &g, "zz").await;
    assert_problem(&r, &[400], INVALID, "add-user-to-group: malformed user_id");
    let r = srv.try_remove_member(&a, &g, "zz").await;
    assert_problem(
        &r,
        &[400],
        INVALID,
        "remove-user-from-group: malformed user_id",
    );
    let r = srv.try_create_group(&a, "g2", &["nope"]).await;
    assert_problem(&r, &[400], INVALID, "create-group: malformed member id");
    // Group ids may be opaque: a malformed one is 400 or 404.
    let r = srv.try_send_group(&a, "!!not a group id!!", "x").await;
    assert_problem(
        &r,
        &[400, 404],
        &["invalid_request", "not_found"],
        "send-group-message: malformed group_id",
    );
    let r = srv
        .post_json(
            "/create-group",
            Some(&a.token),
            &json!({"group_name": "g3", "creator_id": a.id, "members": b.id}),
        )
        .await;
    assert_problem(&r, SHAPE, INVALID, "create-group: members is not an array");
}

#[tokio::test]
async fn self_block_is_400() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let r = srv.try_block(&a, &a.id).await;
    assert_problem(&r, &[400], INVALID, "self-block");
    // Nothing was written that could block anyone: B still reaches A.
    let b = srv.register().await;
    let m = srv.send(&b, &a.id, "hi").await;
    srv.collect_new_until(&a, &[m]).await;
}

#[tokio::test]
async fn bad_query_parameters_are_400_and_move_nothing() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let m = srv.send(&a, &b.id, "pending").await;
    srv.wait_history_contains(&b, std::slice::from_ref(&m))
        .await;

    let bad_limits = ["0", "101", "-1", "abc", "1.5", ""];
    for l in bad_limits {
        let r = srv.try_new_messages(&b, &[("limit", l)]).await;
        assert_problem(
            &r,
            &[400],
            INVALID,
            &format!("get-new-messages limit={l:?}"),
        );
        let r = srv.try_all_messages(&b, &[("limit", l)]).await;
        assert_problem(
            &r,
            &[400],
            INVALID,
            &format!("get-all-messages limit={l:?}"),
        );
    }
    for c in ["garbage", "!!!", "not a cursor", "\u{1F600}"] {
        let r = srv.try_new_messages(&b, &[("since", c)]).await;
        assert_problem(
            &r,
            &[400],
            INVALID,
            &format!("get-new-messages since={c:?}"),
        );
        let r = srv.try_all_messages(&b, &[("cursor", c)]).await;
        assert_problem(
            &r,
            &[400],
            INVALID,
            &format!("get-all-messages cursor={c:?}"),
        );
    }
    let r = srv.get("/get-new-messages", Some(&b.token), &[]).await;
    assert_problem(&r, &[400], INVALID, "get-new-messages without user_id");
    let r = srv.get("/get-all-messages", Some(&b.token), &[]).await;
    assert_problem(&r, &[400], INVALID, "get-all-messages without user_id");

    // The pending message is still new: nothing moved the read marker.
    let got = srv.collect_new_until(&b, std::slice::from_ref(&m)).await;
    assert_eq!(ids(&got), vec![m]);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_4xx_problems() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let r = srv.get("/no-such-endpoint", Some(&a.token), &[]).await;
    assert_problem(&r, &[404], &[], "GET /no-such-endpoint");
    let r = srv.get("/send-message", Some(&a.token), &[]).await;
    assert_problem(&r, &[405], &[], "GET /send-message");
}
