//! Token revocation: `POST /revoke-token` revokes the caller's token (with `{"all": true}`
//! every token of the user); the very next request with it gets 401, indistinguishable from an
//! unknown token; a retry with the same Idempotency-Key gets the same answer; bad input writes
//! nothing.

use serde_json::{json, Value};

use crate::helpers::*;

async fn revoke(
    srv: &TestServer,
    token: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Resp {
    match body {
        Some(body) => {
            srv.post_json_with("/revoke-token", Some(token), &body, headers)
                .await
        }
        None => {
            srv.post_raw("/revoke-token", Some(token), None, Vec::new(), headers)
                .await
        }
    }
}

/// (Through the history, which a read does not change, unlike get-new-messages.)
async fn assert_token_works(srv: &TestServer, user: &User, ctx: &str) {
    srv.try_all_messages(user, &[])
        .await
        .expect_status(200, ctx);
}

/// The 401 of a revoked token says no more than the 401 of a token that never existed.
fn assert_refused_like_an_unknown_token(resp: &Resp, unknown: &Resp, ctx: &str) {
    assert_problem(resp, &[401], &["unauthenticated"], ctx);
    assert_eq!(resp.body()["detail"], unknown.body()["detail"], "{ctx}");
    assert_eq!(
        resp.headers.get("www-authenticate"),
        unknown.headers.get("www-authenticate"),
        "{ctx}"
    );
    assert!(resp.headers.contains_key("x-request-id"), "{ctx}");
}

#[tokio::test]
async fn a_revoked_token_is_refused_from_the_very_next_request() {
    let srv = TestServer::spawn();
    let alice = srv.register().await;
    let bob = srv.register().await;
    let before = srv
        .send(&alice, &bob.id, "sent before the revocation")
        .await;
    assert_token_works(&srv, &alice, "before").await;

    let resp = revoke(&srv, &alice.token, None, &[]).await;
    resp.expect_status(200, "revoke");
    assert_eq!(resp.body(), &json!({ "revoked": 1 }));
    assert!(resp.headers.contains_key("x-request-id"));

    let unknown = srv
        .get(
            "/get-new-messages",
            Some(&"A".repeat(43)),
            &[("user_id", &alice.id)],
        )
        .await;
    let read = srv.try_new_messages(&alice, &[]).await;
    assert_refused_like_an_unknown_token(&read, &unknown, "read with a revoked token");
    let send = srv.try_send(&alice, &bob.id, "after").await;
    assert_refused_like_an_unknown_token(&send, &unknown, "send with a revoked token");
    let again = revoke(&srv, &alice.token, None, &[]).await;
    assert_refused_like_an_unknown_token(&again, &unknown, "revoke a revoked token");

    // Others are unaffected, and what was accepted before is still delivered.
    assert_token_works(&srv, &bob, "bob").await;
    srv.collect_new_until(&bob, &[before]).await;
}

#[tokio::test]
async fn a_retried_revocation_with_the_same_key_gets_the_same_answer() {
    let srv = TestServer::spawn();
    let alice = srv.register().await;
    let key = [("Idempotency-Key", "revoke-1")];
    let first = revoke(&srv, &alice.token, None, &key).await;
    first.expect_status(200, "revoke");
    let retry = revoke(&srv, &alice.token, None, &key).await;
    retry.expect_status(200, "retry with the same key");
    assert_eq!(retry.body(), first.body());
    let other_key = revoke(&srv, &alice.token, None, &[("Idempotency-Key", "revoke-2")]).await;
    assert_problem(&other_key, &[401], &["unauthenticated"], "a new request");
    assert_problem(
        &srv.try_new_messages(&alice, &[]).await,
        &[401],
        &["unauthenticated"],
        "revoked",
    );
}

#[tokio::test]
async fn all_revokes_every_token_of_the_user() {
    let srv = TestServer::spawn();
    let alice = srv.register().await;
    let resp = revoke(&srv, &alice.token, Some(json!({ "all": true })), &[]).await;
    resp.expect_status(200, "revoke all");
    assert_eq!(
        resp.body()["revoked"],
        1,
        "a user has the one token /register issued"
    );
    assert_problem(
        &srv.try_new_messages(&alice, &[]).await,
        &[401],
        &["unauthenticated"],
        "revoked",
    );
}

#[tokio::test]
async fn bad_revocations_are_4xx_and_revoke_nothing() {
    let srv = TestServer::spawn();
    let alice = srv.register().await;
    for (body, ctx) in [
        (json!({ "all": "yes" }), "all is not a boolean"),
        (json!({ "everything": true }), "unknown field"),
        (json!([true]), "not an object"),
    ] {
        let resp = revoke(&srv, &alice.token, Some(body), &[]).await;
        assert_problem(&resp, &[400], &["invalid_request"], ctx);
        assert_token_works(&srv, &alice, ctx).await;
    }
    let malformed = srv
        .post_raw(
            "/revoke-token",
            Some(&alice.token),
            Some("application/json"),
            b"{".to_vec(),
            &[],
        )
        .await;
    assert_problem(&malformed, &[400], &["invalid_request"], "malformed JSON");
    let anonymous = srv
        .post_raw("/revoke-token", None, None, Vec::new(), &[])
        .await;
    assert_problem(&anonymous, &[401], &["unauthenticated"], "no token");
    let bogus = revoke(&srv, "not-a-token", None, &[]).await;
    assert_problem(&bogus, &[401], &["unauthenticated"], "bogus token");
    assert_token_works(&srv, &alice, "after the bad requests").await;
}

/// Everything the server stored: the data directory's files (embedded), or the event and
/// claims tables (DynamoDB).
async fn stored_text(srv: &TestServer) -> String {
    if backend_is_dynamodb() {
        let mut text = String::new();
        for table in ["events", "claims"] {
            let scan = srv
                .dynamodb_call("Scan", &json!({ "TableName": srv.dynamodb_table(table) }))
                .await;
            text.push_str(&scan.to_string());
        }
        return text;
    }
    let mut text = String::new();
    let mut dirs = vec![srv.data_dir().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the data directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    text
}

#[tokio::test]
async fn tokens_never_appear_in_the_store_or_the_logs() {
    let srv = TestServer::spawn_with_env(&[("RUST_LOG", "debug")]);
    let alice = srv.register().await;
    let keyed = srv
        .post_raw(
            "/register",
            None,
            None,
            Vec::new(),
            &[("Idempotency-Key", "reg-1")],
        )
        .await;
    keyed.expect_status(201, "register with a key");
    let bob = User {
        id: keyed.str_field("user_id"),
        token: keyed.str_field("token"),
    };
    srv.send(&alice, &bob.id, "hi").await;
    srv.try_new_messages(&bob, &[])
        .await
        .expect_status(200, "read");
    revoke(&srv, &alice.token, None, &[])
        .await
        .expect_status(200, "revoke");
    srv.try_new_messages(&alice, &[])
        .await
        .expect_status(401, "revoked");

    let stored = stored_text(&srv).await;
    assert!(stored.contains(&alice.id), "the scan must see the data");
    let logs = srv.stderr_tail(100_000);
    assert!(logs.contains(&alice.id), "debug logs name users");
    for user in [&alice, &bob] {
        assert!(!stored.contains(&user.token), "a token is stored in clear");
        assert!(!logs.contains(&user.token), "a token is logged");
    }
}
