//! The multi-node stack as real processes: redis-server, AI nodes and gateways run from the
//! workspace's binaries, and nginx with the config rendered from `nginx-lb.conf`, each on a free
//! loopback port. Tests can kill -9 any of them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use testkit::{Balance, Nginx, Service};

use crate::Redis;

use crate::stack::http;

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub ai_nodes: usize,
    pub gateways: usize,
    pub stream_delay_ms: u64,
    pub lease_secs: u64,
    /// AI URLs put first in every gateway's `AI_SERVICE_URLS` (e.g. a dead one).
    pub extra_ai_urls: Vec<String>,
    /// More variables for every node (`KAFKA_BOOTSTRAP_SERVERS`, ...).
    pub env: Vec<(&'static str, String)>,
    /// How NGINX spreads sockets (by client address unless told otherwise).
    pub balance: Balance,
    /// Run on a Redis Cluster (default: when `CHAT_TEST_REDIS=cluster`).
    pub redis_cluster: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            ai_nodes: 3,
            gateways: 3,
            stream_delay_ms: 20,
            lease_secs: 10,
            extra_ai_urls: Vec::new(),
            env: Vec::new(),
            balance: Balance::default(),
            redis_cluster: crate::on_cluster(),
        }
    }
}

/// The running cluster; every process dies with it.
pub struct Cluster {
    pub redis: Redis,
    /// Holds the SQLite file every process shares.
    pub data_dir: tempfile::TempDir,
    pub ai: Vec<Service>,
    pub gateways: Vec<Service>,
    pub nginx: Nginx,
}

impl Cluster {
    pub async fn start(options: ClusterOptions) -> Cluster {
        let redis = if options.redis_cluster {
            Redis::Cluster(testkit::RedisCluster::start())
        } else {
            Redis::Single(testkit::RedisServer::start_persistent())
        };
        let (redis_var, redis_value) = redis.env();
        let data_dir = tempfile::tempdir().expect("data dir");
        let database_url = sqlite_url(&data_dir);
        let mut ai = Vec::new();
        for i in 1..=options.ai_nodes {
            let env = env(
                &options,
                &[
                    (redis_var, redis_value.clone()),
                    ("DATABASE_URL", database_url.clone()),
                    ("STREAM_DELAY_MS", options.stream_delay_ms.to_string()),
                    ("STREAM_LEASE_SECONDS", options.lease_secs.to_string()),
                    // Tests of other things chat faster than a person.
                    ("CHAT_RATE_LIMIT_PER_MINUTE", "0".into()),
                ],
            );
            let name = format!("ai-node-{i}");
            let log = log_path(&data_dir, &name);
            ai.push(Service::start_logging(&name, "ai-service", &env, &log));
        }
        let mut urls = options.extra_ai_urls.clone();
        urls.extend(ai.iter().map(Service::url));
        let mut gateways = Vec::new();
        for i in 1..=options.gateways {
            let env = env(
                &options,
                &[
                    (redis_var, redis_value.clone()),
                    ("DATABASE_URL", database_url.clone()),
                    ("AI_SERVICE_URLS", urls.join(",")),
                    // Tests of other things reconnect faster than a person.
                    ("MAX_SOCKETS_PER_USER", "0".into()),
                ],
            );
            let name = format!("ws-node-{i}");
            let log = log_path(&data_dir, &name);
            gateways.push(Service::start_logging(&name, "ws-gateway", &env, &log));
        }
        let gateway_ports: Vec<u16> = gateways.iter().map(|g| g.port).collect();
        let ai_ports: Vec<u16> = ai.iter().map(|a| a.port).collect();
        let nginx = Nginx::start_balanced(&gateway_ports, &ai_ports, options.balance);
        let cluster = Cluster {
            redis,
            data_dir,
            ai,
            gateways,
            nginx,
        };
        cluster.wait_healthy(Duration::from_secs(20)).await;
        cluster
    }

    /// Base URL of gateway `i` (0-based), addressed directly.
    pub fn gateway(&self, i: usize) -> String {
        self.gateways[i].url()
    }

    /// WebSocket URL of gateway `i`, addressed directly.
    pub fn ws_url(&self, i: usize, session: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/ws/chat?session_id={session}&user_id=tester",
            self.gateways[i].port
        )
    }

    /// WebSocket URL through NGINX.
    pub fn ws_via_nginx(&self, session: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/ws/chat?session_id={session}&user_id=tester",
            self.nginx.port
        )
    }

    /// The `DATABASE_URL` every node shares.
    pub fn database_url(&self) -> String {
        sqlite_url(&self.data_dir)
    }

    /// What node `node_id` has logged so far (at `LOG_LEVEL`, default `warn`).
    pub fn log_of(&self, node_id: &str) -> String {
        std::fs::read_to_string(log_path(&self.data_dir, node_id)).unwrap_or_default()
    }

    /// Index of the gateway or AI node whose `NODE_ID` is `node_id`.
    pub fn index_of(services: &[Service], node_id: &str) -> usize {
        services
            .iter()
            .position(|s| s.name == node_id)
            .unwrap_or_else(|| panic!("no node {node_id}"))
    }

    /// Waits until every live AI node and gateway answers `/health` with 200.
    pub async fn wait_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let client = http();
        for service in self.ai.iter().chain(&self.gateways) {
            loop {
                let ok = client
                    .get(format!("{}/health", service.url()))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} never became healthy",
                    service.name
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The SQLite file every process of the cluster shares.
fn sqlite_url(data_dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}/chat.db", data_dir.path().display())
}

/// Where node `name` logs: beside the cluster's SQLite file.
fn log_path(data_dir: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    data_dir.path().join(format!("{name}.log"))
}

/// A node's variables: `pairs`, then the cluster's extra ones.
fn env(options: &ClusterOptions, pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs
        .iter()
        .chain(options.env.iter())
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}
