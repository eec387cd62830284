//! The Redis a test stack runs on: one real `redis-server`, or, when the suite runs with
//! `CHAT_TEST_REDIS=cluster`, a real Redis Cluster of three masters and three replicas. The
//! streaming, resume, multinode and durability suites run both ways (`.ci/run` runs them a
//! second time on a cluster), so every guarantee they check is shown on both.

use redis_state::{Connection, RedisTarget};
use testkit::{RedisCluster, RedisServer};

/// `CHAT_TEST_REDIS`: `cluster` runs the stacks on a Redis Cluster.
pub const REDIS_MODE_VAR: &str = "CHAT_TEST_REDIS";

/// Whether this run's stacks are on a Redis Cluster.
pub fn on_cluster() -> bool {
    std::env::var(REDIS_MODE_VAR).is_ok_and(|v| v.trim() == "cluster")
}

/// One Redis or one cluster, stopped when dropped.
pub enum Redis {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Redis {
    /// A cluster when [`on_cluster`], else one server (with an append-only file when
    /// `persistent`, so that a stopped one comes back with its data).
    pub fn start(persistent: bool) -> Self {
        if on_cluster() {
            Self::Cluster(RedisCluster::start())
        } else if persistent {
            Self::Single(RedisServer::start_persistent())
        } else {
            Self::Single(RedisServer::start())
        }
    }

    /// Where the nodes find it.
    pub fn target(&self) -> RedisTarget {
        match self {
            Self::Single(server) => RedisTarget::Single(server.url()),
            Self::Cluster(cluster) => RedisTarget::Cluster(cluster.urls()),
        }
    }

    /// The variable that points a node at it: `REDIS_URL` or `REDIS_CLUSTER_URLS`.
    pub fn env(&self) -> (&'static str, String) {
        match self {
            Self::Single(server) => ("REDIS_URL", server.url()),
            Self::Cluster(cluster) => ("REDIS_CLUSTER_URLS", cluster.seeds()),
        }
    }

    /// A connection to look at what is stored (on a cluster, routed by key).
    pub async fn connection(&self) -> Connection {
        Connection::open(&self.target())
            .await
            .expect("redis connection")
    }

    /// The single server, for tests of what happens when it stops or restarts; such tests
    /// are not run on a cluster (their cluster counterpart kills a master).
    pub fn server(&mut self) -> &mut RedisServer {
        match self {
            Self::Single(server) => server,
            Self::Cluster(_) => {
                panic!("this test needs a single Redis; run it without {REDIS_MODE_VAR}")
            }
        }
    }

    /// The cluster, for tests that kill one of its masters.
    pub fn cluster(&mut self) -> &mut RedisCluster {
        match self {
            Self::Cluster(cluster) => cluster,
            Self::Single(_) => panic!("this test needs a Redis Cluster ({REDIS_MODE_VAR}=cluster)"),
        }
    }

    /// `redis://...` of the single server.
    pub fn url(&self) -> String {
        match self {
            Self::Single(server) => server.url(),
            Self::Cluster(_) => {
                panic!("this test needs a single Redis; run it without {REDIS_MODE_VAR}")
            }
        }
    }

    /// Kills the server (SIGKILL), or every node of the cluster: Redis is unreachable.
    pub fn kill(&mut self) {
        match self {
            Self::Single(server) => server.kill(),
            Self::Cluster(cluster) => cluster.kill_all(),
        }
    }

    /// The command that publishes a frame where the gateways listen: `PUBLISH`, or `SPUBLISH`
    /// (sharded pub/sub) on a cluster.
    pub fn publish_command(&self) -> &'static str {
        match self {
            Self::Single(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        }
    }

    pub fn stop(&mut self) {
        self.server().stop();
    }

    pub fn restart(&mut self) {
        self.server().restart();
    }
}
