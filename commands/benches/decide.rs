//! Micro-benchmarks of the pure decisions: folding a stream into state and deciding delivery.
//! `cargo bench -p messaging-commands --bench decide`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use messaging_commands::delivery::{decide_direct, decide_group};
use messaging_commands::group::{decide_create, decide_send};
use messaging_commands::{blocks, BlockersState, GroupState};
use messaging_events::{Event, GroupId, UserId};
use std::hint::black_box;

fn users(n: usize) -> Vec<UserId> {
    (0..n).map(|_| UserId::new_random()).collect()
}

/// A group's stream: its creation with `members` members, then `churn` adds and removals.
fn group_stream(members: &[UserId], churn: usize) -> Vec<Event> {
    let group_id = GroupId::new_random();
    let admin = members[0];
    let mut events = vec![Event::GroupCreated {
        group_id,
        name: "bench".into(),
        admin,
        members: members.to_vec(),
    }];
    for i in 0..churn {
        let user_id = UserId::new_random();
        events.push(Event::MemberAdded {
            group_id,
            user_id,
            by: admin,
        });
        if i % 2 == 0 {
            events.push(Event::MemberRemoved {
                group_id,
                user_id,
                by: admin,
            });
        }
    }
    events
}

fn direct(c: &mut Criterion) {
    let blocked = UserId::new_random();
    let blockers = BlockersState::from_events(
        users(10)
            .into_iter()
            .map(|blocker| Event::UserBlocked { blocker, blocked })
            .collect::<Vec<_>>()
            .iter(),
    );
    let receiver = UserId::new_random();
    c.bench_function("decide_direct (10 blockers)", |b| {
        b.iter(|| decide_direct(black_box(&blockers), black_box(receiver)))
    });
    let events: Vec<Event> = users(10)
        .into_iter()
        .map(|blocker| Event::UserBlocked { blocker, blocked })
        .collect();
    c.bench_function("BlockersState::from_events (10 blocks)", |b| {
        b.iter(|| BlockersState::from_events(black_box(&events).iter()))
    });
    let state = BlockersState::default();
    c.bench_function("decide_block", |b| {
        b.iter(|| blocks::decide_block(black_box(&state), receiver, blocked))
    });
}

fn group(c: &mut Criterion) {
    let mut group = c.benchmark_group("group");
    for size in [10usize, 100, 1000] {
        let members = users(size);
        let stream = group_stream(&members, 10);
        let state = GroupState::from_events(stream.iter());
        let sender = members[size / 2];
        let blockers = BlockersState::default();
        group.bench_with_input(BenchmarkId::new("fold stream", size), &stream, |b, s| {
            b.iter(|| GroupState::from_events(black_box(s).iter()))
        });
        group.bench_with_input(BenchmarkId::new("decide_send", size), &state, |b, s| {
            b.iter(|| decide_send(black_box(s), sender))
        });
        group.bench_with_input(BenchmarkId::new("decide_group", size), &state, |b, s| {
            b.iter(|| decide_group(black_box(s), &blockers, sender))
        });
        group.bench_with_input(BenchmarkId::new("decide_create", size), &members, |b, m| {
            b.iter(|| {
                decide_create(
                    &GroupState::default(),
                    GroupId::new_random(),
                    "bench".into(),
                    m[0],
                    black_box(&m[1..]),
                    1000,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, direct, group);
criterion_main!(benches);
