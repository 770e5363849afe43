//! Micro-benchmarks of the projector's pure part: events to read-model changes.
//! (`apply` is the adapters' I/O; the in-memory store is test-only.)
//! `cargo bench -p messaging-projections --bench project`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use messaging_events::{Event, GroupId, MessageId, RecordedEvent, StreamId, Timestamp, UserId};
use messaging_projections::{project, project_batch};
use std::hint::black_box;

fn recorded(stream: StreamId, version: u64, event: Event) -> RecordedEvent {
    RecordedEvent {
        stream,
        version,
        event_id: uuid::Uuid::new_v4(),
        recorded_at: Timestamp(1_700_000_000_000_000),
        event,
    }
}

fn text() -> String {
    "x".repeat(100)
}

fn sent() -> RecordedEvent {
    let sender = UserId::new_random();
    recorded(
        StreamId::outbox(sender),
        7,
        Event::DirectMessageSent {
            message_id: MessageId::new_random(),
            sender,
            receiver: UserId::new_random(),
            text: text(),
            sent_at: Timestamp(1_700_000_000_000_000),
            blocks_version: 0,
        },
    )
}

fn delivered() -> RecordedEvent {
    let recipient = UserId::new_random();
    recorded(
        StreamId::inbox(recipient),
        42,
        Event::MessageDelivered {
            message_id: MessageId::new_random(),
            recipient,
            sender: UserId::new_random(),
            receiver: Some(recipient),
            group_id: None,
            text: text(),
            sent_at: Timestamp(1_700_000_000_000_000),
        },
    )
}

fn dispatched() -> RecordedEvent {
    let message_id = MessageId::new_random();
    recorded(
        StreamId::message(message_id),
        1,
        Event::MessageDispatched {
            message_id,
            delivered: 1,
            withheld: 0,
        },
    )
}

fn single(c: &mut Criterion) {
    let (sent, delivered, dispatched) = (sent(), delivered(), dispatched());
    c.bench_function("project DirectMessageSent", |b| {
        b.iter(|| project(black_box(&sent)))
    });
    c.bench_function("project MessageDelivered", |b| {
        b.iter(|| project(black_box(&delivered)))
    });
    c.bench_function("project MessageDispatched", |b| {
        b.iter(|| project(black_box(&dispatched)))
    });
}

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("project_batch");
    // One direct message's events (sent, delivered, dispatched), times n: a stream batch.
    for messages in [1usize, 33, 100] {
        let batch: Vec<RecordedEvent> = (0..messages)
            .flat_map(|_| [sent(), delivered(), dispatched()])
            .collect();
        group.throughput(Throughput::Elements(batch.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("direct messages", messages),
            &batch,
            |b, batch| b.iter(|| project_batch(black_box(batch))),
        );
    }
    for members in [10usize, 100, 1000] {
        let group_id = GroupId::new_random();
        let users: Vec<UserId> = (0..members).map(|_| UserId::new_random()).collect();
        let created = recorded(
            StreamId::group(group_id),
            1,
            Event::GroupCreated {
                group_id,
                name: "bench".into(),
                admin: users[0],
                members: users.clone(),
            },
        );
        group.bench_with_input(
            BenchmarkId::new("GroupCreated", members),
            &created,
            |b, created| b.iter(|| project(black_box(created))),
        );
    }
    group.finish();
}

criterion_group!(benches, single, batches);
criterion_main!(benches);
