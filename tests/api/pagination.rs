//! get-all-messages pagination.

use std::collections::HashSet;

use crate::helpers::*;

#[tokio::test]
async fn get_all_messages_pages_oldest_first() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let mut sent = Vec::new();
    for i in 0..25 {
        sent.push(srv.send(&a, &b.id, &format!("message {i}")).await);
    }
    srv.wait_history_contains(&b, &sent).await;

    for (who, u) in [("recipient", &b), ("sender", &a)] {
        srv.wait_history_contains(u, &sent).await;
        // limit=10: 10, 10, 5.
        let p1 = srv.all_page(u, None, Some(10)).await;
        assert_eq!(p1.messages.len(), 10, "{who}: page 1 size");
        let c1 = p1
            .next_cursor
            .clone()
            .unwrap_or_else(|| panic!("{who}: page 1 must have a next_cursor"));
        let p2 = srv.all_page(u, Some(&c1), Some(10)).await;
        assert_eq!(p2.messages.len(), 10, "{who}: page 2 size");
        let c2 = p2
            .next_cursor
            .clone()
            .unwrap_or_else(|| panic!("{who}: page 2 must have a next_cursor"));
        let p3 = srv.all_page(u, Some(&c2), Some(10)).await;
        assert_eq!(p3.messages.len(), 5, "{who}: page 3 size");
        assert_eq!(
            p3.next_cursor, None,
            "{who}: the last page (5 of limit 10) must have next_cursor null"
        );

        let mut all = ids(&p1.messages);
        all.extend(ids(&p2.messages));
        all.extend(ids(&p3.messages));
        assert_no_duplicates(&all, &format!("{who}: pages overlap"));
        assert_eq!(
            all, sent,
            "{who}: pages concatenated = send order (oldest first)"
        );

        let mut last = None;
        for m in p1.messages.iter().chain(&p2.messages).chain(&p3.messages) {
            assert_message_shape(m, who);
            let t = parse_rfc3339(m["sent_at"].as_str().unwrap());
            if let Some(prev) = last {
                assert!(t >= prev, "{who}: sent_at goes backwards");
            }
            last = Some(t);
        }

        // get-all-messages is read-only: the same cursor gives the same page.
        let p2_again = srv.all_page(u, Some(&c1), Some(10)).await;
        assert_eq!(p2_again.messages, p2.messages, "{who}: page 2 re-read");

        // limit=100: everything on one page.
        let one = srv.all_page(u, None, Some(100)).await;
        assert_eq!(ids(&one.messages), sent, "{who}: limit=100");
        assert_eq!(one.next_cursor, None, "{who}: limit=100 next_cursor");

        // Default limit: following next_cursor yields the same sequence.
        let mut cursor: Option<String> = None;
        let mut default_all = Vec::new();
        for _ in 0..30 {
            let p = srv.all_page(u, cursor.as_deref(), None).await;
            assert!(
                !p.messages.is_empty() || p.next_cursor.is_none(),
                "{who}: an empty page with a next_cursor"
            );
            assert!(p.messages.len() <= 100, "{who}: default page size > 100");
            default_all.extend(ids(&p.messages));
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(default_all, sent, "{who}: default limit, all pages");
    }

    // limit=1: 25 pages of one.
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    for _ in 0..30 {
        let p = srv.all_page(&b, cursor.as_deref(), Some(1)).await;
        assert!(p.messages.len() <= 1);
        seen.extend(ids(&p.messages));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, sent, "limit=1 pages");

    // Reading history does not consume new messages.
    let new = srv.collect_new_until(&b, &sent).await;
    assert_eq!(
        ids(&new),
        sent,
        "get-all-messages must not move the read marker"
    );
}

#[tokio::test]
async fn a_page_boundary_at_the_end_is_handled() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(srv.send(&a, &b.id, &format!("m{i}")).await);
    }
    srv.wait_history_contains(&b, &sent).await;
    let mut cursor: Option<String> = None;
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let p = srv.all_page(&b, cursor.as_deref(), Some(10)).await;
        pages += 1;
        assert!(pages <= 3, "more than 3 pages for 20 messages at limit 10");
        got.extend(ids(&p.messages));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got, sent);
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(unique.len(), 20);

    // A message arriving after the last page is read shows up on the next
    // read from the start.
    let later = srv.send(&a, &b.id, "later").await;
    let hist = srv
        .wait_history_contains(&b, std::slice::from_ref(&later))
        .await;
    assert_eq!(ids(&hist).last(), Some(&later));
}

#[tokio::test]
async fn history_interleaves_both_directions_in_order() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let mut expected = Vec::new();
    for i in 0..5 {
        let x = srv.send(&a, &b.id, &format!("a{i}")).await;
        srv.wait_history_contains(&b, std::slice::from_ref(&x))
            .await;
        expected.push(x);
        let y = srv.send(&b, &a.id, &format!("b{i}")).await;
        srv.wait_history_contains(&a, std::slice::from_ref(&y))
            .await;
        expected.push(y);
    }
    for (who, u) in [("A", &a), ("B", &b)] {
        let hist = srv.wait_history_contains(u, &expected).await;
        assert_eq!(ids(&hist), expected, "{who}'s history");
        // With small pages too.
        let mut cursor: Option<String> = None;
        let mut got = Vec::new();
        for _ in 0..10 {
            let p = srv.all_page(u, cursor.as_deref(), Some(3)).await;
            got.extend(ids(&p.messages));
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(got, expected, "{who}'s history with limit=3");
    }
}
