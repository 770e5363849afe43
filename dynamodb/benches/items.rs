//! Micro-benchmarks of the event table's item format: a recorded event to a DynamoDB item
//! (`EventItem::from_recorded` + `serde_dynamo`) and back (`from_item` + `into_recorded`,
//! which decodes through the upcaster). `cargo bench -p messaging-dynamodb --bench items`.

use criterion::{criterion_group, criterion_main, Criterion};
use messaging_dynamodb::EventItem;
use messaging_events::{Event, GroupId, MessageId, RecordedEvent, StreamId, Timestamp, UserId};
use std::hint::black_box;

fn delivered() -> RecordedEvent {
    let recipient = UserId::new_random();
    RecordedEvent {
        stream: StreamId::inbox(recipient),
        version: 42,
        event_id: uuid::Uuid::new_v4(),
        recorded_at: Timestamp(1_700_000_000_000_000),
        event: Event::MessageDelivered {
            message_id: MessageId::new_random(),
            recipient,
            sender: UserId::new_random(),
            receiver: Some(recipient),
            group_id: None,
            text: "x".repeat(100),
            sent_at: Timestamp(1_700_000_000_000_000),
        },
    }
}

fn group_created(members: usize) -> RecordedEvent {
    let group_id = GroupId::new_random();
    let users: Vec<UserId> = (0..members).map(|_| UserId::new_random()).collect();
    RecordedEvent {
        stream: StreamId::group(group_id),
        version: 1,
        event_id: uuid::Uuid::new_v4(),
        recorded_at: Timestamp(1_700_000_000_000_000),
        event: Event::GroupCreated {
            group_id,
            name: "bench".into(),
            admin: users[0],
            members: users,
        },
    }
}

fn round_trip(c: &mut Criterion, name: &str, event: &RecordedEvent) {
    let item = EventItem::from_recorded(event).to_item().expect("encodes");
    c.bench_function(&format!("{name}: to item"), |b| {
        b.iter(|| EventItem::from_recorded(black_box(event)).to_item())
    });
    c.bench_function(&format!("{name}: from item"), |b| {
        b.iter(|| {
            EventItem::from_item(black_box(item.clone()))
                .expect("decodes")
                .into_recorded()
        })
    });
}

fn items(c: &mut Criterion) {
    round_trip(c, "MessageDelivered", &delivered());
    round_trip(c, "GroupCreated (1,000 members)", &group_created(1000));
}

criterion_group!(benches, items);
criterion_main!(benches);
