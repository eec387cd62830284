//! [`cluster_map::watch`] on a real Redis Cluster (three masters, three replicas).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::time::Duration;

use redis::AsyncCommands;
use testkit::RedisCluster;
use tokio_util::sync::CancellationToken;

async fn connect(cluster: &RedisCluster) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClientBuilder::new(cluster.urls())
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .retries(1)
        .build()
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// The map read from the cluster has every slot served, by three masters.
#[tokio::test]
async fn fetch_reads_every_slot_and_its_master() {
    let cluster = RedisCluster::start();
    let conn = connect(&cluster).await;
    let map = cluster_map::fetch(&conn).await.unwrap();
    let masters = map.by_master();
    assert_eq!(masters.len(), 3);
    assert_eq!(
        masters.values().map(Vec::len).sum::<usize>(),
        cluster_map::SLOTS
    );
    let key = "{watched}:k";
    let owner = cluster.master_of(key);
    let slot = protocol::keys::slot_of(key);
    assert_eq!(
        map.owner(slot),
        Some(format!("127.0.0.1:{}", cluster.port(owner)).as_str())
    );
}

/// A master that stops answering (SIGSTOP) closes no socket: after its replica has taken over,
/// a connection left alone still sends its slot's requests to it, while a watched one is
/// moved to the replica, which has the key, and reports the slots that moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_connection_follows_a_frozen_master_to_its_replica() {
    let mut cluster = RedisCluster::start();
    let key = "{watched}:k";
    let mut unwatched = connect(&cluster).await;
    let mut watched = connect(&cluster).await;
    let () = watched.set(key, "kept").await.unwrap();
    let shutdown = CancellationToken::new();
    let (moved_tx, mut moved_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(cluster_map::watch(
        watched.clone(),
        cluster_map::WATCH_EVERY,
        shutdown.clone(),
        move |slots| {
            let _ = moved_tx.send(slots);
        },
    ));
    // Both connections have served the slot before the freeze.
    let _: Option<String> = unwatched.get(key).await.unwrap();

    let master = cluster.master_of(key);
    cluster.freeze(master);
    tokio::task::block_in_place(|| cluster.wait_failover(master));

    let moved = tokio::time::timeout(Duration::from_secs(15), moved_rx.recv())
        .await
        .expect("the watch saw the failover")
        .unwrap();
    assert!(moved.contains(&protocol::keys::slot_of(key)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match watched.get::<_, Option<String>>(key).await {
            Ok(value) => {
                assert_eq!(value.as_deref(), Some("kept"));
                break;
            }
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the watched connection never reached the new master: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(
        unwatched.get::<_, Option<String>>(key).await.is_err(),
        "without the watch the request still goes to the frozen master"
    );
    shutdown.cancel();
    cluster.thaw(master);
}
