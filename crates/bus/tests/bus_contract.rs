//! The [`Bus`] contract, run against every implementation: the in-memory bus, the Redis bus on
//! a real `redis-server` and the cluster bus on a real Redis Cluster (three masters, three
//! replicas).
//!
//! Frames are published the way production publishes them: for the Redis bus, a PUBLISH on the
//! session's channel (what the state scripts run); for the cluster bus, an SPUBLISH (what they
//! run on a cluster); for the memory bus, its stand-in.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, ClusterBus, Deliver, MemoryBus, RedisBus};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use protocol::{SessionId, keys};
use testkit::{RedisCluster, RedisServer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A sink that records what it is given.
#[derive(Default)]
struct Recorder {
    frames: Mutex<Vec<(String, Bytes)>>,
    lost: Mutex<Vec<(bus::Epoch, SessionId)>>,
    changed: Notify,
}

impl Deliver for Recorder {
    fn deliver(&self, session: &str, payload: Bytes) {
        self.frames
            .lock()
            .unwrap()
            .push((session.to_owned(), payload));
        self.changed.notify_waiters();
    }
    fn connection_lost(&self, epoch: bus::Epoch, sessions: Vec<SessionId>) {
        let mut lost = self.lost.lock().unwrap();
        lost.extend(sessions.into_iter().map(|s| (epoch, s)));
        self.changed.notify_waiters();
    }
}

impl Recorder {
    /// Waits until `check` holds, or panics after 5 s.
    async fn wait_until(&self, what: &str, check: impl Fn(&Recorder) -> bool) {
        self.wait_within(Duration::from_secs(5), what, check).await;
    }

    /// Waits until `check` holds, or panics after `within`.
    async fn wait_within(&self, within: Duration, what: &str, check: impl Fn(&Recorder) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if check(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}");
            }
        }
    }

    fn payloads_for(&self, session: &str) -> Vec<Bytes> {
        let frames = self.frames.lock().unwrap();
        frames
            .iter()
            .filter(|(s, _)| s == session)
            .map(|(_, p)| p.clone())
            .collect()
    }
}

fn sid(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

/// Publishes a frame on a session's channel, as the producing side does.
trait Publish: Send + Sync {
    fn publish(&self, session: &SessionId, payload: Bytes) -> BoxFuture<'_, ()>;
}

/// PUBLISH on the session's channel of a real Redis.
struct RedisPublisher(redis::aio::MultiplexedConnection);

impl Publish for RedisPublisher {
    fn publish(&self, session: &SessionId, payload: Bytes) -> BoxFuture<'_, ()> {
        let mut conn = self.0.clone();
        let channel = keys::stream_channel(session);
        async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload.as_ref())
                .query_async::<i64>(&mut conn)
                .await
                .unwrap();
        }
        .boxed()
    }
}

/// SPUBLISH on the session's channel of a real Redis Cluster (routed to the slot's master).
struct ClusterPublisher(redis::cluster_async::ClusterConnection);

impl Publish for ClusterPublisher {
    fn publish(&self, session: &SessionId, payload: Bytes) -> BoxFuture<'_, ()> {
        let mut conn = self.0.clone();
        let channel = keys::stream_channel(session);
        async move {
            redis::cmd("SPUBLISH")
                .arg(channel)
                .arg(payload.as_ref())
                .query_async::<i64>(&mut conn)
                .await
                .unwrap();
        }
        .boxed()
    }
}

impl Publish for MemoryBus {
    fn publish(&self, session: &SessionId, payload: Bytes) -> BoxFuture<'_, ()> {
        MemoryBus::publish(self, session, payload);
        futures_util::future::ready(()).boxed()
    }
}

async fn delivers_in_order_only_to_subscribed_sessions(
    bus: Arc<dyn Bus>,
    publisher: Arc<dyn Publish>,
    rec: Arc<Recorder>,
) {
    bus.subscribe(&sid("s1")).await.unwrap();
    for i in 0..100 {
        publisher
            .publish(&sid("s1"), Bytes::from(format!("f{i}")))
            .await;
    }
    publisher
        .publish(&sid("other"), Bytes::from_static(b"x"))
        .await;
    rec.wait_until("100 frames", |r| r.payloads_for("s1").len() == 100)
        .await;
    let got: Vec<Bytes> = rec.payloads_for("s1");
    let want: Vec<Bytes> = (0..100).map(|i| Bytes::from(format!("f{i}"))).collect();
    assert_eq!(got, want);
    assert!(rec.payloads_for("other").is_empty());
}

async fn subscriptions_are_reference_counted(
    bus: Arc<dyn Bus>,
    publisher: Arc<dyn Publish>,
    rec: Arc<Recorder>,
) {
    let s = sid("counted");
    bus.subscribe(&s).await.unwrap();
    bus.subscribe(&s).await.unwrap();
    bus.unsubscribe(&s);
    // A confirmed subscription on a marker session proves the unsubscribe above was applied.
    bus.subscribe(&sid("marker1")).await.unwrap();
    publisher.publish(&s, Bytes::from_static(b"still")).await;
    publisher
        .publish(&sid("marker1"), Bytes::from_static(b"m"))
        .await;
    rec.wait_until("marker1", |r| !r.payloads_for("marker1").is_empty())
        .await;
    assert_eq!(
        rec.payloads_for("counted"),
        vec![Bytes::from_static(b"still")]
    );

    bus.unsubscribe(&s);
    bus.subscribe(&sid("marker2")).await.unwrap();
    publisher.publish(&s, Bytes::from_static(b"gone")).await;
    publisher
        .publish(&sid("marker2"), Bytes::from_static(b"m"))
        .await;
    rec.wait_until("marker2", |r| !r.payloads_for("marker2").is_empty())
        .await;
    assert_eq!(
        rec.payloads_for("counted"),
        vec![Bytes::from_static(b"still")]
    );
}

/// A Redis bus on `redis`, the publisher beside it, and the sink.
struct OnRedis {
    bus: Arc<dyn Bus>,
    publisher: Arc<dyn Publish>,
    rec: Arc<Recorder>,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn redis_bus(redis: &RedisServer) -> OnRedis {
    let rec = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let client = redis::Client::open(redis.url()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let bus = RedisBus::start(client, rec.clone(), shutdown.clone())
        .await
        .unwrap();
    OnRedis {
        bus: Arc::new(bus),
        publisher: Arc::new(RedisPublisher(conn)),
        rec,
        _shutdown: shutdown.drop_guard(),
    }
}

fn memory_bus() -> (Arc<dyn Bus>, Arc<dyn Publish>, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let bus = Arc::new(MemoryBus::new(rec.clone()));
    (bus.clone(), bus, rec)
}

/// Frames reach the sink in publish order, and only for subscribed sessions (memory bus).
#[tokio::test]
async fn memory_bus_delivers_in_order_only_to_subscribed_sessions() {
    let (bus, publisher, rec) = memory_bus();
    delivers_in_order_only_to_subscribed_sessions(bus, publisher, rec).await;
}

/// Frames reach the sink in publish order, and only for subscribed sessions (Redis bus).
#[tokio::test]
async fn redis_bus_delivers_in_order_only_to_subscribed_sessions() {
    let redis = RedisServer::start();
    let r = redis_bus(&redis).await;
    delivers_in_order_only_to_subscribed_sessions(
        r.bus.clone(),
        r.publisher.clone(),
        r.rec.clone(),
    )
    .await;
}

/// A session stays subscribed until its last reference is dropped (memory bus).
#[tokio::test]
async fn memory_bus_subscriptions_are_reference_counted() {
    let (bus, publisher, rec) = memory_bus();
    subscriptions_are_reference_counted(bus, publisher, rec).await;
}

/// A session stays subscribed until its last reference is dropped (Redis bus).
#[tokio::test]
async fn redis_bus_subscriptions_are_reference_counted() {
    let redis = RedisServer::start();
    let r = redis_bus(&redis).await;
    subscriptions_are_reference_counted(r.bus.clone(), r.publisher.clone(), r.rec.clone()).await;
}

/// Many sessions share the node's one pub/sub connection.
#[tokio::test]
async fn redis_bus_uses_one_connection_for_many_sessions() {
    let redis = RedisServer::start();
    let r = redis_bus(&redis).await;
    let waits: Vec<_> = (0..300)
        .map(|i| r.bus.subscribe(&sid(&format!("s{i}"))))
        .collect();
    for w in waits {
        w.await.unwrap();
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let subscribers = clients
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .any(|f| f.starts_with("sub=") && f != "sub=0")
        })
        .count();
    assert_eq!(subscribers, 1, "{clients}");
    let channels: i64 = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("chat:stream:{s299}")
        .query_async::<(String, i64)>(&mut conn)
        .await
        .unwrap()
        .1;
    assert_eq!(channels, 1);
}

/// After Redis restarts, the bus reports the sessions of the lost connection, reconnects,
/// confirms them on the next connection and delivers again.
#[tokio::test]
async fn redis_bus_resubscribes_after_redis_restart() {
    let mut redis = RedisServer::start();
    let r = redis_bus(&redis).await;
    assert_eq!(r.bus.subscribe(&sid("kept")).await.unwrap(), 1);
    redis.restart();
    r.rec
        .wait_until("the loss reported", |r| {
            r.lost.lock().unwrap().contains(&(1, sid("kept")))
        })
        .await;
    let confirmed = tokio::time::timeout(Duration::from_secs(5), r.bus.confirmed(&sid("kept")));
    assert_eq!(confirmed.await.unwrap().unwrap(), 2);
    assert!(matches!(
        r.bus.confirmed(&sid("never")).await,
        Err(bus::Error::NotSubscribed)
    ));
    // A new connection, as a producer's connection manager makes after the restart.
    let client = redis::Client::open(redis.url()).unwrap();
    let publisher = RedisPublisher(client.get_multiplexed_async_connection().await.unwrap());
    publisher
        .publish(&sid("kept"), Bytes::from_static(b"after"))
        .await;
    r.rec
        .wait_until("frame after restart", |r| {
            !r.payloads_for("kept").is_empty()
        })
        .await;
}

/// A cluster bus on `cluster`, a publisher beside it, and the sink.
async fn cluster_bus(cluster: &RedisCluster) -> OnRedis {
    let rec = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let bus = ClusterBus::start(cluster.urls(), rec.clone(), shutdown.clone())
        .await
        .unwrap();
    OnRedis {
        bus: Arc::new(bus),
        publisher: Arc::new(ClusterPublisher(cluster_connection(cluster).await)),
        rec,
        _shutdown: shutdown.drop_guard(),
    }
}

async fn cluster_connection(cluster: &RedisCluster) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// The contract's cases on a cluster, one after the other on one cluster (sessions of
/// different cases differ), and each channel subscribed once, on the master of its slot.
#[tokio::test]
async fn cluster_bus_keeps_the_contract_with_one_sharded_subscription_per_channel() {
    let cluster = RedisCluster::start();
    let r = cluster_bus(&cluster).await;
    delivers_in_order_only_to_subscribed_sessions(
        r.bus.clone(),
        r.publisher.clone(),
        r.rec.clone(),
    )
    .await;
    subscriptions_are_reference_counted(r.bus.clone(), r.publisher.clone(), r.rec.clone()).await;

    let sessions: Vec<SessionId> = (0..300).map(|i| sid(&format!("many{i}"))).collect();
    let waits: Vec<_> = sessions.iter().map(|s| r.bus.subscribe(s)).collect();
    for w in waits {
        w.await.unwrap();
    }
    for session in &sessions {
        let channel = keys::stream_channel(session);
        let master = cluster.master_of(&channel);
        let port = cluster.port(master).to_string();
        let reply = std::process::Command::new("redis-cli")
            .args(["-p", &port, "PUBSUB", "SHARDNUMSUB", &channel])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&reply.stdout);
        assert_eq!(
            text.lines().nth(1),
            Some("1"),
            "{channel} on {port}: {text}"
        );
    }
    // Every one of them takes frames, whichever shard it is on.
    for session in &sessions {
        r.publisher
            .publish(session, Bytes::from_static(b"hi"))
            .await;
    }
    r.rec
        .wait_until("a frame on each of 300 sessions", |rec| {
            sessions
                .iter()
                .all(|s| rec.payloads_for(s.as_str()).len() == 1)
        })
        .await;
}

/// When the master of a session's slot is killed, the bus reports the session lost, subscribes
/// it again once the replica has taken over, confirms it with a later epoch, and delivers what
/// is published on the new master.
#[tokio::test]
async fn cluster_bus_resubscribes_after_a_master_fails_over() {
    let mut cluster = RedisCluster::start();
    let r = cluster_bus(&cluster).await;
    let kept = sid("kept");
    let first = r.bus.subscribe(&kept).await.unwrap();
    let master = cluster.master_of(&keys::stream_channel(&kept));
    cluster.kill(master);
    r.rec
        .wait_until("the loss reported", |rec| {
            rec.lost.lock().unwrap().contains(&(first, kept.clone()))
        })
        .await;
    cluster.wait_failover(master);
    let confirmed = tokio::time::timeout(Duration::from_secs(30), r.bus.confirmed(&kept));
    assert!(confirmed.await.unwrap().unwrap() > first);
    let publisher = ClusterPublisher(cluster_connection(&cluster).await);
    publish_until_delivered(&r, &publisher, &kept, b"after").await;
    assert_eq!(
        r.rec.payloads_for("kept"),
        vec![Bytes::from_static(b"after")]
    );
}

/// Publishes `payload` on `session` until it is delivered, as a consumer resyncing on every
/// report would: while the cluster connection moves subscriptions after a failover (the crate's
/// own refresh, then the bus's slot-map watch), a frame may be lost, but never silently: one
/// that is not delivered must be followed by a loss of `session` reported with the epoch it
/// was published under or a later one.
async fn publish_until_delivered(
    r: &OnRedis,
    publisher: &dyn Publish,
    session: &SessionId,
    payload: &'static [u8],
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let epoch = tokio::time::timeout(Duration::from_secs(30), r.bus.confirmed(session))
            .await
            .unwrap()
            .unwrap();
        let before = r.rec.payloads_for(session.as_str()).len();
        publisher
            .publish(session, Bytes::from_static(payload))
            .await;
        let delivered = r.rec.wait_until("the frame", |rec| {
            rec.payloads_for(session.as_str()).len() > before
        });
        if tokio::time::timeout(Duration::from_secs(3), delivered)
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            r.rec
                .lost
                .lock()
                .unwrap()
                .iter()
                .any(|(e, s)| s == session && *e >= epoch),
            "a frame published under epoch {epoch} was neither delivered nor reported lost"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "no frame delivered after the failover"
        );
    }
}

/// A master that stops answering without closing its sockets (SIGSTOP, as a frozen host) sends
/// no disconnection: the bus finds the failover in the cluster's slot map, reports the session
/// lost, subscribes it on the new master and delivers what is published there; when the old
/// master comes back (as a replica), nothing is delivered twice.
#[tokio::test]
async fn cluster_bus_resubscribes_after_a_frozen_master_fails_over() {
    let mut cluster = RedisCluster::start();
    let r = cluster_bus(&cluster).await;
    let kept = sid("frozen");
    let first = r.bus.subscribe(&kept).await.unwrap();
    let master = cluster.master_of(&keys::stream_channel(&kept));
    cluster.freeze(master);
    cluster.wait_failover(master);
    // The slot map is read every second; the read or the refresh may first wait out a
    // response timeout (2 s) on the frozen node.
    r.rec
        .wait_within(Duration::from_secs(10), "the loss reported", |rec| {
            rec.lost.lock().unwrap().contains(&(first, kept.clone()))
        })
        .await;
    let confirmed = tokio::time::timeout(Duration::from_secs(30), r.bus.confirmed(&kept));
    assert!(confirmed.await.unwrap().unwrap() > first);
    let publisher = ClusterPublisher(cluster_connection(&cluster).await);
    publish_until_delivered(&r, &publisher, &kept, b"after").await;
    assert_eq!(
        r.rec.payloads_for("frozen"),
        vec![Bytes::from_static(b"after")]
    );

    cluster.thaw(master);
    publisher
        .publish(&kept, Bytes::from_static(b"thawed"))
        .await;
    r.rec
        .wait_until("frame after the old master came back", |rec| {
            rec.payloads_for("frozen").len() >= 2
        })
        .await;
    assert_eq!(
        r.rec.payloads_for("frozen"),
        vec![Bytes::from_static(b"after"), Bytes::from_static(b"thawed")]
    );
}

/// A slot moved to another master (resharding) while its channel is subscribed: the bus
/// reports the session lost, subscribes it on the new master (and on it alone), and delivers
/// what is published there, once.
#[tokio::test]
async fn cluster_bus_follows_a_slot_moved_to_another_master() {
    let cluster = RedisCluster::start();
    let r = cluster_bus(&cluster).await;
    let kept = sid("moving");
    let channel = keys::stream_channel(&kept);
    let first = r.bus.subscribe(&kept).await.unwrap();
    r.publisher
        .publish(&kept, Bytes::from_static(b"before"))
        .await;
    r.rec
        .wait_until("frame before the move", |rec| {
            rec.payloads_for("moving").len() == 1
        })
        .await;

    let from = cluster.master_of(&channel);
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
    cluster.move_slot(&channel, to);
    r.rec
        .wait_within(Duration::from_secs(10), "the loss reported", |rec| {
            rec.lost.lock().unwrap().contains(&(first, kept.clone()))
        })
        .await;
    let confirmed = tokio::time::timeout(Duration::from_secs(30), r.bus.confirmed(&kept));
    assert!(confirmed.await.unwrap().unwrap() > first);
    let subscribers = |node: usize| {
        let port = cluster.port(node).to_string();
        let reply = std::process::Command::new("redis-cli")
            .args(["-p", &port, "PUBSUB", "SHARDNUMSUB", &channel])
            .output()
            .unwrap();
        String::from_utf8_lossy(&reply.stdout)
            .lines()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(subscribers(to), "1", "subscribed on the new master");
    assert_eq!(subscribers(from), "0", "left on the old master");

    r.publisher
        .publish(&kept, Bytes::from_static(b"after"))
        .await;
    r.rec
        .wait_until("frame after the move", |rec| {
            rec.payloads_for("moving").len() >= 2
        })
        .await;
    assert_eq!(
        r.rec.payloads_for("moving"),
        vec![Bytes::from_static(b"before"), Bytes::from_static(b"after")]
    );
}
