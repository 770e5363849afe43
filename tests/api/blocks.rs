//! Blocks: directional, silent, per pair, honoured in groups, undone by
//! unblock for later messages only.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::*;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn header_names(r: &Resp) -> BTreeSet<String> {
    r.headers
        .keys()
        .map(|k| k.as_str().to_ascii_lowercase())
        .filter(|k| k != "date" && k != "content-length")
        .collect()
}

/// Asserts that `id` is in neither the history nor the new messages of `u`,
/// after `sentinel` (sent to `u` later) has arrived.
async fn assert_never_delivered(srv: &TestServer, u: &User, id: &str, sentinel: &str, ctx: &str) {
    let new = srv.collect_new_until(u, &[sentinel.to_string()]).await;
    srv.wait_history_contains(u, &[sentinel.to_string()]).await;
    settle().await;
    let mut new_ids = ids(&new);
    new_ids.extend(ids(&srv.new_messages(u, None, None).await.messages));
    assert!(
        !new_ids.contains(&id.to_string()),
        "{ctx}: blocked message {id} was returned by get-new-messages of {}",
        u.id
    );
    let hist = srv.all_ids(u).await;
    assert!(
        !hist.contains(&id.to_string()),
        "{ctx}: blocked message {id} is in the history of {}",
        u.id
    );
}

#[tokio::test]
async fn block_is_silent_to_the_blocked_sender() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let c = srv.register().await;
    let d = srv.register().await;

    srv.block(&a, &b.id).await;

    let blocked = srv.try_send(&b, &a.id, "to A (blocked)").await;
    let control = srv.try_send(&b, &c.id, "to C (not blocked)").await;
    blocked.expect_status(202, "blocked sender's send");
    control.expect_status(202, "control send");
    assert_eq!(
        keys(blocked.body()),
        keys(control.body()),
        "the blocked send's response body differs in shape from a normal one: {} vs {}",
        blocked.text,
        control.text
    );
    assert_eq!(
        header_names(&blocked),
        header_names(&control),
        "the blocked send's response headers differ from a normal one"
    );
    let blocked_id = blocked.str_field("message_id");
    let control_id = control.str_field("message_id");
    assert_ne!(blocked_id, control_id);

    srv.collect_new_until(&c, std::slice::from_ref(&control_id))
        .await;

    // B's own history shows both sent messages, looking alike.
    let hist = srv
        .wait_history_contains(&b, &[blocked_id.clone(), control_id.clone()])
        .await;
    assert_eq!(
        ids(&hist),
        vec![blocked_id.clone(), control_id.clone()],
        "B's history"
    );
    assert_eq!(
        keys(&hist[0]),
        keys(&hist[1]),
        "B's view of the blocked message differs in shape from a delivered one: {} vs {}",
        hist[0],
        hist[1]
    );
    assert_message_shape(&hist[0], "B's view of its blocked message");
    assert_eq!(hist[0]["receiver_id"].as_str(), Some(a.id.as_str()));

    // Nothing tells B: no bounce, no notice.
    settle().await;
    let b_new = srv.new_messages(&b, None, None).await;
    assert!(
        b_new.messages.is_empty(),
        "B received something after a blocked send: {:?}",
        b_new.messages
    );

    // A never gets it.
    let sentinel = srv.send(&d, &a.id, "sentinel from D").await;
    assert_never_delivered(&srv, &a, &blocked_id, &sentinel, "A blocked B").await;
}

#[tokio::test]
async fn block_is_directional() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    srv.block(&a, &b.id).await;

    // A (the blocker) still reaches B.
    let m = srv.send(&a, &b.id, "A to B").await;
    let got = srv.collect_new_until(&b, std::slice::from_ref(&m)).await;
    assert_eq!(ids(&got), vec![m.clone()]);
    srv.wait_history_contains(&b, &[m]).await;

    // B's reply does not reach A.
    let reply = srv.send(&b, &a.id, "B to A").await;
    let c = srv.register().await;
    let sentinel = srv.send(&c, &a.id, "sentinel").await;
    assert_never_delivered(&srv, &a, &reply, &sentinel, "reply to blocker").await;
}

#[tokio::test]
async fn many_blocks_per_user_and_per_blocked_user() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let c = srv.register().await;
    let d = srv.register().await;
    let e = srv.register().await;

    srv.block(&a, &b.id).await;
    srv.block(&a, &c.id).await;
    srv.block(&e, &b.id).await; // B is blocked by two users

    let from_b = srv.send(&b, &a.id, "B to A").await;
    let from_c = srv.send(&c, &a.id, "C to A").await;
    let b_to_e = srv.send(&b, &e.id, "B to E").await;
    let from_d = srv.send(&d, &a.id, "D to A").await;
    let c_to_e = srv.send(&c, &e.id, "C to E").await; // C is not blocked by E

    let got = srv
        .collect_new_until(&a, std::slice::from_ref(&from_d))
        .await;
    assert!(ids(&got).contains(&from_d));
    let got_e = srv
        .collect_new_until(&e, std::slice::from_ref(&c_to_e))
        .await;
    settle().await;
    let mut a_seen = ids(&got);
    a_seen.extend(ids(&srv.new_messages(&a, None, None).await.messages));
    a_seen.extend(srv.all_ids(&a).await);
    assert!(
        !a_seen.contains(&from_b),
        "A received B's message despite the block"
    );
    assert!(
        !a_seen.contains(&from_c),
        "A received C's message despite the block"
    );
    let mut e_seen = ids(&got_e);
    e_seen.extend(ids(&srv.new_messages(&e, None, None).await.messages));
    e_seen.extend(srv.all_ids(&e).await);
    assert!(
        !e_seen.contains(&b_to_e),
        "E received B's message despite the block"
    );
    assert!(e_seen.contains(&c_to_e));
}

#[tokio::test]
async fn unblock_restores_later_messages_only() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;

    srv.block(&a, &b.id).await;
    let during = srv.send(&b, &a.id, "sent during the block").await;
    srv.unblock(&a, &b.id).await;
    let after = srv.send(&b, &a.id, "sent after the unblock").await;

    let got = srv
        .collect_new_until(&a, std::slice::from_ref(&after))
        .await;
    srv.wait_history_contains(&a, std::slice::from_ref(&after))
        .await;
    settle().await;
    let mut seen = ids(&got);
    seen.extend(ids(&srv.new_messages(&a, None, None).await.messages));
    assert!(
        !seen.contains(&during),
        "a message sent during the block was delivered after the unblock (new messages)"
    );
    let hist = srv.all_ids(&a).await;
    assert_eq!(
        hist,
        vec![after.clone()],
        "A's history must hold only the message sent after the unblock"
    );

    // Block again: honoured again.
    srv.block(&a, &b.id).await;
    let again = srv.send(&b, &a.id, "blocked again").await;
    let c = srv.register().await;
    let sentinel = srv.send(&c, &a.id, "sentinel").await;
    assert_never_delivered(&srv, &a, &again, &sentinel, "re-block").await;
}

#[tokio::test]
async fn blocks_apply_to_group_messages() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let c = srv.register().await;
    let g = srv.create_group(&c, "trio", &[&a.id, &b.id]).await;

    srv.block(&a, &b.id).await;

    // B's group message reaches C but not A.
    let gb = srv.send_group(&b, &g, "B to the group").await;
    srv.collect_new_until(&c, std::slice::from_ref(&gb)).await;
    srv.wait_history_contains(&c, std::slice::from_ref(&gb))
        .await;
    srv.wait_history_contains(&b, std::slice::from_ref(&gb))
        .await;
    settle().await;
    let a_new = ids(&srv.new_messages(&a, None, None).await.messages);
    assert!(
        !a_new.contains(&gb),
        "A got B's group message as new despite blocking B"
    );
    assert!(
        !srv.all_ids(&a).await.contains(&gb),
        "A's history has B's group message despite blocking B"
    );

    // A's group messages still reach B (and C).
    let ga = srv.send_group(&a, &g, "A to the group").await;
    srv.collect_new_until(&b, std::slice::from_ref(&ga)).await;
    srv.collect_new_until(&c, std::slice::from_ref(&ga)).await;

    // After the unblock, B's later group messages reach A again.
    srv.unblock(&a, &b.id).await;
    let gb2 = srv.send_group(&b, &g, "B again").await;
    let got = srv.collect_new_until(&a, std::slice::from_ref(&gb2)).await;
    assert!(!ids(&got).contains(&gb));
    let hist = srv
        .wait_history_contains(&a, std::slice::from_ref(&gb2))
        .await;
    assert_eq!(ids(&hist), vec![ga, gb2], "A's history");
}
