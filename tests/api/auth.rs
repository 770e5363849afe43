//! Identity: 401 without a valid token, 403 when acting as somebody else.

use serde_json::{json, Value};

use crate::helpers::*;

/// Every authenticated endpoint with a body/query valid for `u`.
fn endpoints(u: &User, other: &User, group: &str) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "POST",
            "/send-message",
            json!({"sender_id": u.id, "receiver_id": other.id, "message": "x"}),
        ),
        (
            "POST",
            "/block-user",
            json!({"user_id": u.id, "blocked_user_id": other.id}),
        ),
        (
            "POST",
            "/unblock-user",
            json!({"user_id": u.id, "blocked_user_id": other.id}),
        ),
        (
            "POST",
            "/create-group",
            json!({"group_name": "g", "creator_id": u.id, "members": [other.id]}),
        ),
        (
            "POST",
            "/add-user-to-group",
            json!({"group_id": group, "user_id": other.id}),
        ),
        (
            "POST",
            "/remove-user-from-group",
            json!({"group_id": group, "user_id": other.id}),
        ),
        (
            "POST",
            "/send-group-message",
            json!({"sender_id": u.id, "group_id": group, "message": "x"}),
        ),
        ("GET", "/get-new-messages", json!({"user_id": u.id})),
        ("GET", "/get-all-messages", json!({"user_id": u.id})),
    ]
}

async fn call(
    srv: &TestServer,
    method: &str,
    path: &str,
    body: &Value,
    auth: Option<&str>,
) -> Resp {
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    if method == "GET" {
        let q: Vec<(&str, &str)> = body
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        srv.get_with(path, None, &q, &headers).await
    } else {
        srv.post_json_with(path, None, body, &headers).await
    }
}

#[tokio::test]
async fn missing_wrong_or_malformed_tokens_are_401() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let g = srv.create_group(&a, "g", &[&b.id]).await;
    let wrong = format!("Bearer {}", "A".repeat(43));
    let basic = format!("Basic {}", a.token);
    let no_scheme = a.token.clone();
    let tampered = format!("Bearer {}x", a.token);
    let truncated = format!("Bearer {}", &a.token[..a.token.len() - 1]);
    let auths: Vec<(&str, Option<&str>)> = vec![
        ("no Authorization header", None),
        ("an unknown token", Some(wrong.as_str())),
        ("a Basic scheme", Some(basic.as_str())),
        ("no scheme", Some(no_scheme.as_str())),
        ("Bearer without a token", Some("Bearer")),
        ("Bearer with a blank token", Some("Bearer  ")),
        ("a tampered token", Some(tampered.as_str())),
        ("a truncated token", Some(truncated.as_str())),
    ];
    for (method, path, body) in endpoints(&a, &b, &g) {
        for (what, auth) in &auths {
            let r = call(&srv, method, path, &body, *auth).await;
            assert_problem(
                &r,
                &[401],
                &["unauthenticated"],
                &format!("{method} {path} with {what}"),
            );
        }
    }
    // Nothing was written by any of them: B got nothing, and the block /
    // removal attempts did not happen.
    let m = srv.send(&a, &b.id, "sentinel").await;
    let gm = srv.send_group(&a, &g, "group sentinel").await;
    let got = srv.collect_new_until(&b, &[m.clone(), gm.clone()]).await;
    assert_eq!(ids(&got), vec![m.clone(), gm.clone()]);
    settle().await;
    assert_eq!(srv.all_ids(&b).await, vec![m, gm]);
}

#[tokio::test]
async fn acting_as_somebody_else_is_403() {
    let srv = TestServer::spawn();
    let a = srv.register().await; // the caller (token)
    let b = srv.register().await; // the victim
    let c = srv.register().await;
    let gb = srv.create_group(&b, "b's group", &[&c.id]).await;

    let pending = srv.send(&c, &b.id, "for B only").await;
    srv.wait_history_contains(&b, std::slice::from_ref(&pending))
        .await;

    let forbidden: &[&str] = &["forbidden"];
    let r = srv
        .post_json(
            "/send-message",
            Some(&a.token),
            &json!({"sender_id": b.id, "receiver_id": c.id, "message": "spoof"}),
        )
        .await;
    assert_problem(
        &r,
        &[403],
        forbidden,
        "send-message with sender_id of another user",
    );
    let r = srv
        .post_json(
            "/send-group-message",
            Some(&a.token),
            &json!({"sender_id": b.id, "group_id": gb, "message": "spoof"}),
        )
        .await;
    assert_problem(
        &r,
        &[403],
        forbidden,
        "send-group-message with sender_id of another user",
    );
    let r = srv
        .get(
            "/get-new-messages",
            Some(&a.token),
            &[("user_id", b.id.as_str())],
        )
        .await;
    assert_problem(&r, &[403], forbidden, "get-new-messages of another user");
    assert!(!r.text.contains(&pending), "the 403 leaked B's message id");
    let r = srv
        .get(
            "/get-all-messages",
            Some(&a.token),
            &[("user_id", b.id.as_str())],
        )
        .await;
    assert_problem(&r, &[403], forbidden, "get-all-messages of another user");
    assert!(!r.text.contains(&pending), "the 403 leaked B's message id");
    let r = srv
        .post_json(
            "/block-user",
            Some(&a.token),
            &json!({"user_id": b.id, "blocked_user_id": c.id}),
        )
        .await;
    assert_problem(
        &r,
        &[403],
        forbidden,
        "block-user on behalf of another user",
    );
    let r = srv
        .post_json(
            "/unblock-user",
            Some(&a.token),
            &json!({"user_id": b.id, "blocked_user_id": c.id}),
        )
        .await;
    assert_problem(
        &r,
        &[403],
        forbidden,
        "unblock-user on behalf of another user",
    );
    let r = srv
        .post_json(
            "/create-group",
            Some(&a.token),
            &json!({"group_name": "spoof", "creator_id": b.id, "members": [c.id]}),
        )
        .await;
    assert_problem(
        &r,
        &[403],
        forbidden,
        "create-group with creator_id of another user",
    );
    // Managing somebody else's group.
    let r = srv.try_add_member(&a, &gb, &a.id).await;
    assert_problem(
        &r,
        &[403],
        forbidden,
        "non-member adds themselves to b's group",
    );
    let r = srv.try_remove_member(&a, &gb, &c.id).await;
    assert_problem(
        &r,
        &[403],
        forbidden,
        "non-member removes a member of b's group",
    );

    // Nothing happened on B's behalf:
    // - B's read marker did not move (the pending message is still new);
    let got = srv
        .collect_new_until(&b, std::slice::from_ref(&pending))
        .await;
    assert_eq!(ids(&got), vec![pending.clone()]);
    // - B did not block C: C still reaches B;
    let m = srv.send(&c, &b.id, "after the spoofed block").await;
    srv.collect_new_until(&b, std::slice::from_ref(&m)).await;
    // - no spoofed message reached C, and C is still in B's group;
    let gm = srv.send_group(&b, &gb, "group sentinel").await;
    let c_got = srv.collect_new_until(&c, std::slice::from_ref(&gm)).await;
    assert_eq!(ids(&c_got), vec![gm.clone()], "C's new messages");
    settle().await;
    // - B's history holds only real messages.
    assert_eq!(srv.all_ids(&b).await, vec![pending, m, gm]);
    assert!(srv.all_ids(&a).await.is_empty(), "A's history");
}

#[tokio::test]
async fn a_wrong_token_is_401_even_with_someone_elses_id() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let r = srv
        .get(
            "/get-new-messages",
            Some("not-a-real-token"),
            &[("user_id", a.id.as_str())],
        )
        .await;
    assert_problem(&r, &[401], &["unauthenticated"], "bogus token");
}
