//! The WebSocket connections table on moto: a user's connections, removal by user or by
//! connection id alone (`$disconnect`), by the token they were opened with (revocation), and
//! expired items skipped before TTL deletes them.

use messaging_dynamodb::testing::{moto_clients, unique_names};
use messaging_dynamodb::{create_connections_table, DynamoConnections};
use messaging_events::UserId;
use uuid::Uuid;

async fn open() -> DynamoConnections {
    let clients = moto_clients().await;
    let names = unique_names();
    create_connections_table(&clients, &names)
        .await
        .expect("creates the table");
    // A second creation is harmless.
    create_connections_table(&clients, &names)
        .await
        .expect("creating again is a no-op");
    DynamoConnections::new(&clients, &names)
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn a_users_connections_are_listed_and_removed() {
    let connections = open().await;
    let (alice, bob) = (UserId::new_random(), UserId::new_random());
    connections
        .put(alice, "a1=", Uuid::new_v4(), 2_000)
        .await
        .unwrap();
    connections
        .put(alice, "a2=", Uuid::new_v4(), 2_000)
        .await
        .unwrap();
    connections
        .put(bob, "b1=", Uuid::new_v4(), 2_000)
        .await
        .unwrap();
    assert_eq!(
        sorted(connections.connections_of(alice, 1_000).await.unwrap()),
        vec!["a1=", "a2="]
    );
    assert_eq!(
        connections.connections_of(bob, 1_000).await.unwrap(),
        vec!["b1="]
    );

    connections.remove(alice, "a1=").await.unwrap();
    connections.remove(alice, "a1=").await.unwrap(); // idempotent
    assert_eq!(
        connections.connections_of(alice, 1_000).await.unwrap(),
        vec!["a2="]
    );
    assert!(connections
        .connections_of(UserId::new_random(), 1_000)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn disconnect_finds_the_owner_by_connection_id() {
    let connections = open().await;
    let user = UserId::new_random();
    connections
        .put(user, "c1=", Uuid::new_v4(), 2_000)
        .await
        .unwrap();
    connections
        .put(user, "c2=", Uuid::new_v4(), 2_000)
        .await
        .unwrap();
    assert_eq!(
        connections.remove_connection("c1=").await.unwrap(),
        Some(user)
    );
    assert_eq!(connections.remove_connection("c1=").await.unwrap(), None);
    assert_eq!(
        connections.connections_of(user, 1_000).await.unwrap(),
        vec!["c2="]
    );
}

#[tokio::test]
async fn expired_connections_are_skipped() {
    let connections = open().await;
    let user = UserId::new_random();
    connections
        .put(user, "old=", Uuid::new_v4(), 1_000)
        .await
        .unwrap();
    connections
        .put(user, "new=", Uuid::new_v4(), 3_000)
        .await
        .unwrap();
    assert_eq!(
        connections.connections_of(user, 2_000).await.unwrap(),
        vec!["new="]
    );
}

#[tokio::test]
async fn the_connections_of_one_token_are_found_by_its_id() {
    let connections = open().await;
    let user = UserId::new_random();
    let (revoked, kept) = (Uuid::new_v4(), Uuid::new_v4());
    connections.put(user, "r1=", revoked, 3_000).await.unwrap();
    connections.put(user, "r2=", revoked, 3_000).await.unwrap();
    connections.put(user, "old=", revoked, 1_000).await.unwrap();
    connections.put(user, "k1=", kept, 3_000).await.unwrap();
    connections
        .put(UserId::new_random(), "other=", revoked, 3_000)
        .await
        .unwrap();
    assert_eq!(
        sorted(
            connections
                .connections_of_token(user, revoked, 2_000)
                .await
                .unwrap()
        ),
        vec!["r1=", "r2="]
    );
    assert_eq!(
        connections
            .connections_of_token(user, kept, 2_000)
            .await
            .unwrap(),
        vec!["k1="]
    );
    assert!(connections
        .connections_of_token(user, Uuid::new_v4(), 2_000)
        .await
        .unwrap()
        .is_empty());
}
