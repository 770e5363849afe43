//! get-new-messages: exactly once without `since`, repeatable with it,
//! under concurrency.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;

const SENDERS: usize = 4;
const PER_SENDER: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_while_the_recipient_polls() {
    let srv = Arc::new(TestServer::spawn());
    let r = srv.register().await;
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        senders.push(srv.register().await);
    }

    let done = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for (i, s) in senders.iter().cloned().enumerate() {
        let srv = srv.clone();
        let rid = r.id.clone();
        handles.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for k in 0..PER_SENDER {
                accepted.push(srv.send(&s, &rid, &format!("s{i}-{k}")).await);
            }
            (s.id.clone(), accepted)
        }));
    }

    let poller = {
        let srv = srv.clone();
        let r = r.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut polled = Vec::new();
            let limits = [None, Some(7), Some(100), Some(1)];
            let mut n = 0usize;
            let mut done_since: Option<Instant> = None;
            loop {
                let page = srv.new_messages(&r, None, limits[n % limits.len()]).await;
                n += 1;
                polled.extend(page.messages);
                if polled.len() >= SENDERS * PER_SENDER {
                    break;
                }
                if done.load(Ordering::SeqCst) {
                    let t = *done_since.get_or_insert_with(Instant::now);
                    // On moto the deliveries trail the sends: moto is one single-threaded
                    // process that the whole suite shares (alone the tail is ~5 s; next to
                    // large_history, whose server projects 20,000 rows, it has taken ~35 s).
                    let settle = if backend_is_dynamodb() { 60 } else { 15 };
                    if t.elapsed() > Duration::from_secs(settle) {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if let Some(t) = done_since {
                eprintln!(
                    "concurrent senders: the last messages arrived {:?} after the last send",
                    t.elapsed()
                );
            }
            (polled, n)
        })
    };

    let mut accepted_by_sender = Vec::new();
    for h in handles {
        accepted_by_sender.push(h.await.expect("sender task"));
    }
    done.store(true, Ordering::SeqCst);
    let (polled, polls) = poller.await.expect("poller task");

    let accepted: HashSet<String> = accepted_by_sender
        .iter()
        .flat_map(|(_, ids)| ids.iter().cloned())
        .collect();
    assert_eq!(accepted.len(), SENDERS * PER_SENDER, "distinct message ids");
    let polled_ids = ids(&polled);
    assert_no_duplicates(&polled_ids, "get-new-messages under concurrency");
    let polled_set: HashSet<String> = polled_ids.iter().cloned().collect();
    let missing: Vec<&String> = accepted.difference(&polled_set).collect();
    let extra: Vec<&String> = polled_set.difference(&accepted).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "after {polls} polls: {} accepted ids never returned (e.g. {:?}), {} unexpected ids returned",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.len()
    );

    let per_sender = by_sender(&polled);
    for (sender, accepted) in &accepted_by_sender {
        assert_eq!(
            per_sender.get(sender),
            Some(accepted),
            "messages of sender {sender} out of acceptance order in get-new-messages"
        );
    }

    // Nothing more comes, and the history agrees.
    settle().await;
    let after = srv.new_messages(&r, None, None).await;
    assert!(
        after.messages.is_empty(),
        "{} messages returned again after all were read",
        after.messages.len()
    );
    let hist = srv.all_messages(&r).await;
    assert_eq!(hist.len(), SENDERS * PER_SENDER, "history size");
    let per_sender_hist = by_sender(&hist);
    for (sender, accepted) in &accepted_by_sender {
        assert_eq!(
            per_sender_hist.get(sender),
            Some(accepted),
            "messages of sender {sender} out of acceptance order in get-all-messages"
        );
    }
}

#[tokio::test]
async fn since_makes_the_call_repeatable() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;

    let m1 = srv.send(&a, &b.id, "m1").await;
    let m2 = srv.send(&a, &b.id, "m2").await;
    srv.wait_history_contains(&b, &[m1.clone(), m2.clone()])
        .await;
    let first = srv.collect_new_until(&b, &[m1.clone(), m2.clone()]).await;
    assert_eq!(ids(&first), vec![m1.clone(), m2.clone()]);
    // The cursor after m1, m2.
    let c0 = srv.new_messages(&b, None, None).await;
    assert!(c0.messages.is_empty());
    let c0 = c0.cursor;

    let m3 = srv.send(&a, &b.id, "m3").await;
    let m4 = srv.send(&a, &b.id, "m4").await;
    let want = vec![m3.clone(), m4.clone()];

    // Repeatable: poll with since=C0 until both are there...
    let page1 = eventually("since=C0 returns m3 and m4", || {
        let (srv, b, c0, want) = (&srv, &b, &c0, &want);
        async move {
            let p = srv.new_messages(b, Some(c0), None).await;
            if ids(&p.messages) == *want {
                Ok(p)
            } else if ids(&p.messages).len() > want.len() {
                panic!("since=C0 returned more than m3, m4: {:?}", ids(&p.messages))
            } else {
                Err(format!("got {:?}", ids(&p.messages)))
            }
        }
    })
    .await;
    // ...then twice more: the same answer.
    let page2 = srv.new_messages(&b, Some(&c0), None).await;
    let page3 = srv.new_messages(&b, Some(&c0), None).await;
    assert_eq!(ids(&page2.messages), want, "second call with since=C0");
    assert_eq!(ids(&page3.messages), want, "third call with since=C0");
    assert_eq!(
        page2.messages, page3.messages,
        "repeated since=C0 calls return identical messages"
    );
    assert_eq!(page1.messages, page2.messages);

    // A call without since does not return them again (they were returned).
    let plain = srv.new_messages(&b, None, None).await;
    assert!(
        plain.messages.is_empty(),
        "a call without since repeated {:?} after since=C0 returned them",
        ids(&plain.messages)
    );

    // The cursor of a since call continues from there.
    let after = srv.new_messages(&b, Some(&page3.cursor), None).await;
    assert!(after.messages.is_empty(), "since=<cursor after m4>");

    // A later message is new once.
    let m5 = srv.send(&a, &b.id, "m5").await;
    let got = srv.collect_new_until(&b, std::slice::from_ref(&m5)).await;
    assert_eq!(ids(&got), vec![m5.clone()]);
    // ...and since=C0 now returns m3, m4, m5.
    let p = srv.new_messages(&b, Some(&c0), None).await;
    assert_eq!(ids(&p.messages), vec![m3, m4, m5]);
}

#[tokio::test]
async fn since_with_a_limit_pages_through_without_loss() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let c0 = srv.new_messages(&b, None, None).await.cursor;
    let mut sent = Vec::new();
    for i in 0..7 {
        sent.push(srv.send(&a, &b.id, &format!("m{i}")).await);
    }
    srv.wait_history_contains(&b, &sent).await;
    // The inbox projection may lag the history: wait until since=C0 sees all.
    eventually("all 7 in the inbox", || {
        let (srv, b, c0) = (&srv, &b, &c0);
        async move {
            let p = srv.new_messages(b, Some(c0), Some(100)).await;
            if p.messages.len() == 7 {
                Ok(())
            } else {
                Err(format!("{} of 7", p.messages.len()))
            }
        }
    })
    .await;

    // Pretend responses were lost: page with since and limit=3.
    let mut cursor = c0.clone();
    let mut got = Vec::new();
    for _ in 0..10 {
        let p = srv.new_messages(&b, Some(&cursor), Some(3)).await;
        if p.messages.is_empty() {
            break;
        }
        got.extend(ids(&p.messages));
        cursor = p.cursor;
    }
    assert_eq!(got, sent, "paging with since + limit=3");
}

#[tokio::test]
async fn limit_is_respected_and_the_rest_stays_new() {
    let srv = TestServer::spawn();
    let a = srv.register().await;
    let b = srv.register().await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(srv.send(&a, &b.id, &format!("m{i}")).await);
    }
    srv.wait_history_contains(&b, &sent).await;

    // The inbox may lag the history; read with limit only once all 5 are new.
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < 5 {
        let p = srv.new_messages(&b, None, Some(2)).await;
        assert!(
            p.messages.len() <= 2,
            "limit=2 returned {}",
            p.messages.len()
        );
        got.extend(ids(&p.messages));
        assert!(
            start.elapsed() < EVENTUALLY,
            "only {} of 5 returned",
            got.len()
        );
    }
    assert_eq!(got, sent, "limit=2 pages, oldest first, nothing lost");
    let p = srv.new_messages(&b, None, Some(2)).await;
    assert!(p.messages.is_empty());
}

#[tokio::test]
async fn an_empty_inbox_answers_with_a_usable_cursor() {
    let srv = TestServer::spawn();
    let b = srv.register().await;
    let p = srv.new_messages(&b, None, None).await;
    assert!(p.messages.is_empty());
    let again = srv.new_messages(&b, Some(&p.cursor), None).await;
    assert!(again.messages.is_empty());
    let a = srv.register().await;
    let m = srv.send(&a, &b.id, "first").await;
    let got = eventually("since=<empty cursor> returns the first message", || {
        let (srv, b, c) = (&srv, &b, &p.cursor);
        async move {
            let q = srv.new_messages(b, Some(c), None).await;
            if q.messages.is_empty() {
                Err("nothing yet".to_string())
            } else {
                Ok(q)
            }
        }
    })
    .await;
    assert_eq!(ids(&got.messages), vec![m]);
}
