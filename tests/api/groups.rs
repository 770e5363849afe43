//! Group roles, membership windows and limits.

use crate::helpers::*;

/// Everything `u` can see: what is (still) new plus the whole history.
async fn seen_by(srv: &TestServer, u: &User) -> Vec<String> {
    let mut seen = ids(&srv.new_messages(u, None, None).await.messages);
    seen.extend(srv.all_ids(u).await);
    seen
}

#[tokio::test]
async fn only_the_admin_adds_and_removes_members() {
    let srv = TestServer::spawn();
    let a = srv.register().await; // admin
    let b = srv.register().await;
    let c = srv.register().await;
    let d = srv.register().await; // outsider
    let g = srv.create_group(&a, "roles", &[&b.id, &c.id]).await;

    let r = srv.try_add_member(&b, &g, &d.id).await;
    assert_problem(&r, &[403], &["forbidden"], "non-admin member adds a user");
    let r = srv.try_remove_member(&b, &g, &c.id).await;
    assert_problem(
        &r,
        &[403],
        &["forbidden"],
        "non-admin member removes another member",
    );
    let r = srv.try_add_member(&d, &g, &d.id).await;
    assert_problem(&r, &[403], &["forbidden"], "outsider adds themselves");
    let r = srv.try_remove_member(&d, &g, &b.id).await;
    assert_problem(&r, &[403], &["forbidden"], "outsider removes a member");

    // Nothing changed: D is still out, C still in.
    let r = srv.try_send_group(&d, &g, "am I in?").await;
    assert_problem(&r, &[403], &["forbidden"], "D (refused add) sends");
    let m = srv.send_group(&a, &g, "still three of us").await;
    srv.collect_new_until(&c, std::slice::from_ref(&m)).await;
    srv.collect_new_until(&b, &[m]).await;

    // The admin can.
    srv.add_member(&a, &g, &d.id).await;
    srv.remove_member(&a, &g, &c.id).await;
    srv.send_group(&d, &g, "D is in").await;
    let r = srv.try_send_group(&c, &g, "C is out").await;
    assert_problem(&r, &[403], &["forbidden"], "removed C sends");
}

#[tokio::test]
async fn a_member_can_leave_and_stops_receiving() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let c = srv.register().await;
    let g = srv.create_group(&a, "leavers", &[&b.id, &c.id]).await;

    let g1 = srv.send_group(&a, &g, "before C leaves").await;
    srv.collect_new_until(&c, std::slice::from_ref(&g1)).await;

    srv.try_remove_member(&c, &g, &c.id)
        .await
        .expect_status(200, "member removes themselves (leave)");

    let g2 = srv.send_group(&a, &g, "after C left").await;
    srv.collect_new_until(&b, std::slice::from_ref(&g2)).await;
    srv.wait_history_contains(&b, std::slice::from_ref(&g2))
        .await;
    settle().await;
    let seen = seen_by(&srv, &c).await;
    assert!(
        !seen.contains(&g2),
        "C received a group message sent after leaving"
    );
    assert_eq!(
        srv.all_ids(&c).await,
        vec![g1],
        "C's history keeps what C got while a member, and only that"
    );

    let r = srv.try_send_group(&c, &g, "I left").await;
    assert_problem(&r, &[403], &["forbidden"], "member who left sends");
}

#[tokio::test]
async fn a_member_added_later_sees_only_later_messages() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let d = srv.register().await;
    let g = srv.create_group(&a, "late", &[&b.id]).await;

    let g1 = srv.send_group(&a, &g, "early from A").await;
    let g2 = srv.send_group(&b, &g, "early from B").await;
    srv.collect_new_until(&b, std::slice::from_ref(&g1)).await;
    srv.collect_new_until(&a, std::slice::from_ref(&g2)).await;

    srv.add_member(&a, &g, &d.id).await;
    let g3 = srv.send_group(&a, &g, "after D joined").await;

    let got = srv.collect_new_until(&d, std::slice::from_ref(&g3)).await;
    assert_eq!(
        ids(&got),
        vec![g3.clone()],
        "D's new messages must hold only what was sent after D joined"
    );
    let hist = srv
        .wait_history_contains(&d, std::slice::from_ref(&g3))
        .await;
    assert_eq!(
        ids(&hist),
        vec![g3],
        "D's history must hold only what was sent after D joined"
    );
}

#[tokio::test]
async fn a_removed_member_cannot_send_and_stops_receiving_until_readded() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let c = srv.register().await;
    let g = srv.create_group(&a, "removal", &[&b.id, &c.id]).await;

    srv.remove_member(&a, &g, &b.id).await;
    let r = srv.try_send_group(&b, &g, "removed").await;
    assert_problem(&r, &[403], &["forbidden"], "removed member sends");

    let g1 = srv.send_group(&a, &g, "while B is out").await;
    srv.collect_new_until(&c, std::slice::from_ref(&g1)).await;
    srv.wait_history_contains(&c, std::slice::from_ref(&g1))
        .await;
    settle().await;
    assert!(
        !seen_by(&srv, &b).await.contains(&g1),
        "removed member B received a later group message"
    );

    srv.add_member(&a, &g, &b.id).await;
    let g2 = srv.send_group(&a, &g, "B is back").await;
    let got = srv.collect_new_until(&b, std::slice::from_ref(&g2)).await;
    assert!(!ids(&got).contains(&g1));
    let hist = srv
        .wait_history_contains(&b, std::slice::from_ref(&g2))
        .await;
    assert_eq!(
        ids(&hist),
        vec![g2],
        "B's history after re-joining: only messages sent while a member"
    );
    srv.send_group(&b, &g, "B can send again").await;
}

/// Every 100th version of a group's stream stores the group's state (a claim taken with the
/// change that reaches it), and loading starts there: membership as of a message's acceptance
/// must hold across it, through every backend's claims.
#[tokio::test]
async fn membership_holds_across_a_groups_snapshot() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let c = srv.register().await;
    let g = srv.create_group(&a, "churn", &[&b.id]).await;
    // Version 1 + 104 changes: past the snapshot at 100, with C out at the end.
    for change in 0..104 {
        if change % 2 == 0 {
            srv.add_member(&a, &g, &c.id).await;
        } else {
            srv.remove_member(&a, &g, &c.id).await;
        }
    }

    let out = srv.send_group(&a, &g, "C is out").await;
    srv.collect_new_until(&b, std::slice::from_ref(&out)).await;
    let r = srv.try_send_group(&c, &g, "let me in").await;
    assert_problem(
        &r,
        &[403],
        &["forbidden"],
        "removed member sends after the snapshot",
    );
    srv.add_member(&a, &g, &c.id).await;
    let back = srv.send_group(&a, &g, "C is back").await;

    let got = srv.collect_new_until(&c, std::slice::from_ref(&back)).await;
    assert!(!ids(&got).contains(&out), "C got a message sent while out");
    srv.collect_new_until(&b, std::slice::from_ref(&back)).await;
}

#[tokio::test]
async fn a_non_member_cannot_send_and_nothing_is_written() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let e = srv.register().await;
    let g = srv.create_group(&a, "closed", &[&b.id]).await;

    let r = srv.try_send_group(&e, &g, "let me in").await;
    assert_problem(&r, &[403], &["forbidden"], "non-member sends to a group");

    let sentinel = srv.send_group(&a, &g, "sentinel").await;
    let got = srv
        .collect_new_until(&b, std::slice::from_ref(&sentinel))
        .await;
    assert_eq!(ids(&got), vec![sentinel.clone()], "B's new messages");
    settle().await;
    assert_eq!(srv.all_ids(&b).await, vec![sentinel], "B's history");
    assert!(
        srv.all_ids(&e).await.is_empty(),
        "the refused sender's history must stay empty"
    );
}

#[tokio::test]
async fn the_sender_does_not_get_its_own_group_message_as_new() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let g = srv.create_group(&a, "echo", &[&b.id]).await;

    let g1 = srv.send_group(&a, &g, "from A").await;
    srv.collect_new_until(&b, std::slice::from_ref(&g1)).await;
    let g2 = srv.send_group(&b, &g, "reply from B").await;

    let got = srv.collect_new_until(&a, std::slice::from_ref(&g2)).await;
    settle().await;
    let mut a_new = ids(&got);
    a_new.extend(ids(&srv.new_messages(&a, None, None).await.messages));
    assert_eq!(
        a_new,
        vec![g2.clone()],
        "A's new messages must hold B's reply and not A's own message"
    );
    let hist = srv
        .wait_history_contains(&a, &[g1.clone(), g2.clone()])
        .await;
    assert_eq!(
        ids(&hist),
        vec![g1, g2],
        "A's history holds both, oldest first"
    );
}

#[tokio::test]
async fn create_group_with_or_without_the_creator_in_members() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;

    let g1 = srv.create_group(&a, "without", &[&b.id]).await;
    let g2 = srv.create_group(&a, "with", &[&a.id, &b.id]).await;
    assert_ne!(g1, g2, "two groups, two ids");

    for g in [&g1, &g2] {
        let m = srv.send_group(&a, g, "creator is a member").await;
        let got = srv.collect_new_until(&b, std::slice::from_ref(&m)).await;
        assert_eq!(
            ids(&got),
            vec![m.clone()],
            "B gets the creator's message exactly once"
        );
        // The creator is the admin.
        let c = srv.register().await;
        srv.add_member(&a, g, &c.id).await;
    }
}

#[tokio::test]
async fn group_name_length_is_1_to_128_characters() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;

    let name128 = "n".repeat(128);
    srv.create_group(&a, &name128, &[&b.id]).await;
    // 128 characters of two bytes each: still 128 characters.
    let name128_wide = "é".repeat(128);
    let r = srv.try_create_group(&a, &name128_wide, &[&b.id]).await;
    r.expect_status(201, "group name of 128 two-byte characters");

    let r = srv.try_create_group(&a, "", &[&b.id]).await;
    assert_problem(&r, &[400], &["invalid_request"], "empty group name");
    let r = srv.try_create_group(&a, &"n".repeat(129), &[&b.id]).await;
    assert_problem(&r, &[400], &["invalid_request"], "129-character group name");
}

#[tokio::test]
async fn unknown_member_is_404() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let ghost = random_id();
    let r = srv.try_create_group(&a, "ghosts", &[&b.id, &ghost]).await;
    assert_problem(
        &r,
        &[404],
        &["not_found"],
        "create-group with an unknown member",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_size_is_at_most_1000_members() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let users = srv.register_many(1001).await;
    let ids_all: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();

    // Creator + 1000 others = 1001 members: refused.
    let r = srv.try_create_group(&a, "too big", &ids_all[..1000]).await;
    assert_problem(
        &r,
        &[400, 413],
        &["invalid_request", "payload_too_large"],
        "group of 1001",
    );

    // Creator + 999 others = 1000 members: fine.
    let g = srv.create_group(&a, "just right", &ids_all[..999]).await;

    // The 1001st member is refused.
    let r = srv.try_add_member(&a, &g, ids_all[1000]).await;
    assert_problem(
        &r,
        &[400, 409],
        &["invalid_request", "conflict"],
        "adding a member to a full group",
    );
    let r = srv.try_send_group(&users[1000], &g, "am I in?").await;
    assert_problem(&r, &[403], &["forbidden"], "refused 1001st member sends");

    // The full group works: a message reaches the last member (999 deliveries; on moto that
    // takes a while).
    let m = srv.send_group(&a, &g, "hello 999").await;
    let window = if backend_is_dynamodb() {
        std::time::Duration::from_secs(90)
    } else {
        EVENTUALLY
    };
    srv.collect_new_until_within(window, &users[998], &[m])
        .await;
}
