//! A whole system on loopback ports: one real `redis-server` (or a Redis Cluster, see
//! [`crate::Redis`]), AI nodes and gateways served by the real `run` functions on listeners
//! bound to port 0.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::Redis;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub ai_nodes: usize,
    pub gateways: usize,
    /// `STREAM_DELAY_MS` of the AI nodes.
    pub stream_delay_ms: u64,
    /// `STREAM_MAX_PENDING_CHUNKS` of the gateways.
    pub max_pending_frames: usize,
    /// Extra AI URLs put first in every gateway's `AI_SERVICE_URLS` (e.g. dead ones).
    pub extra_ai_urls: Vec<String>,
    /// `STATIC_DIR` of the gateways (default: none served).
    pub static_dir: Option<String>,
    /// `DATABASE_URL` of every node (default: a SQLite file in the stack's temp dir).
    pub database_url: Option<String>,
    /// More variables for every node (`KAFKA_BOOTSTRAP_SERVERS`, ...).
    pub env: Vec<(&'static str, String)>,
    /// Redis with an append-only file, so that a stopped Redis comes back with its data.
    pub persistent_redis: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            ai_nodes: 1,
            gateways: 1,
            stream_delay_ms: 10,
            max_pending_frames: 1000,
            extra_ai_urls: Vec::new(),
            static_dir: None,
            database_url: None,
            env: Vec::new(),
            persistent_redis: false,
        }
    }
}

/// One served node.
pub struct Node {
    pub addr: SocketAddr,
    pub node_id: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Node {
    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the node the way SIGTERM does, and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("node task panicked")
                .expect("node failed");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The running system.
pub struct Stack {
    pub redis: Redis,
    /// Holds the SQLite file every node of the stack shares.
    pub data_dir: tempfile::TempDir,
    pub ai: Vec<Node>,
    pub gateways: Vec<Node>,
    pub options: StackOptions,
}

impl Stack {
    pub async fn start(options: StackOptions) -> Stack {
        let redis = Redis::start(options.persistent_redis);
        let data_dir = tempfile::tempdir().expect("data dir");
        let (ai, gateways) = start_nodes(&redis, &data_dir, &options).await;
        let stack = Stack {
            redis,
            data_dir,
            ai,
            gateways,
            options,
        };
        stack.wait_healthy().await;
        stack
    }

    /// The `DATABASE_URL` every node shares.
    pub fn database_url(&self) -> String {
        database_url(&self.data_dir, &self.options)
    }

    /// Stops every node (as SIGTERM does) and Redis, then starts an empty Redis (it keeps
    /// nothing: only SQL remembers) and fresh nodes on the same SQLite file.
    pub async fn restart_all(&mut self) {
        for node in self.ai.iter_mut().chain(self.gateways.iter_mut()) {
            node.stop().await;
        }
        self.redis = Redis::start(false);
        let (ai, gateways) = start_nodes(&self.redis, &self.data_dir, &self.options).await;
        self.ai = ai;
        self.gateways = gateways;
        self.wait_healthy().await;
    }

    /// Base URL of gateway `i`.
    pub fn gateway(&self, i: usize) -> String {
        self.gateways[i].url()
    }

    /// WebSocket URL of gateway `i` for `session`.
    pub fn ws_url(&self, i: usize, session: &str) -> String {
        format!(
            "ws://{}/ws/chat?session_id={session}&user_id=tester",
            self.gateways[i].addr
        )
    }

    /// A connection to the stack's Redis, to look at what is stored.
    pub async fn redis(&self) -> redis_state::Connection {
        self.redis.connection().await
    }

    /// Every node answers `/health` (they are serving before `start` returns; this also proves
    /// their Redis connections work).
    async fn wait_healthy(&self) {
        let http = http();
        // A gateway without AI nodes reports itself degraded (tests of that use ai_nodes: 0).
        let gateways = if self.ai.is_empty() {
            &[][..]
        } else {
            &self.gateways[..]
        };
        for node in self.ai.iter().chain(gateways) {
            let response = http
                .get(format!("{}/health", node.url()))
                .send()
                .await
                .expect("health request");
            assert!(response.status().is_success(), "{} unhealthy", node.node_id);
        }
    }
}

/// An HTTP client that never uses a proxy.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("http client")
}

fn database_url(data_dir: &tempfile::TempDir, options: &StackOptions) -> String {
    options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/chat.db", data_dir.path().display()))
}

/// Starts the AI nodes, then the gateways pointing at them.
async fn start_nodes(
    redis: &Redis,
    data_dir: &tempfile::TempDir,
    options: &StackOptions,
) -> (Vec<Node>, Vec<Node>) {
    let database_url = database_url(data_dir, options);
    let (redis_var, redis_value) = redis.env();
    let mut ai = Vec::new();
    for i in 0..options.ai_nodes {
        let node_id = format!("ai-test-{i}");
        let vars = vars(
            options,
            &[
                (redis_var, &redis_value),
                ("NODE_ID", &node_id),
                ("STREAM_DELAY_MS", &options.stream_delay_ms.to_string()),
                ("SHUTDOWN_GRACE_SECONDS", "5"),
                ("DATABASE_URL", &database_url),
                // Tests of other things chat faster than a person; the limit's own test sets it.
                ("CHAT_RATE_LIMIT_PER_MINUTE", "0"),
            ],
        );
        let config = ai_service::Config::from_vars(&vars).expect("AI config");
        ai.push(
            serve(node_id, |listener, shutdown| {
                tokio::spawn(ai_service::run(config, listener, shutdown))
            })
            .await,
        );
    }
    let mut urls = options.extra_ai_urls.clone();
    urls.extend(ai.iter().map(Node::url));
    let mut gateways = Vec::new();
    for i in 0..options.gateways {
        let node_id = format!("ws-test-{i}");
        let static_dir = options.static_dir.as_deref().unwrap_or("/nonexistent");
        let pending = options.max_pending_frames.to_string();
        let vars = vars(
            options,
            &[
                (redis_var, &redis_value),
                ("NODE_ID", &node_id),
                ("AI_SERVICE_URLS", &urls.join(",")),
                ("STREAM_MAX_PENDING_CHUNKS", &pending),
                ("STATIC_DIR", static_dir),
                ("DATABASE_URL", &database_url),
                // Tests of other things reconnect faster than a person; the limit's own test
                // sets it.
                ("MAX_SOCKETS_PER_USER", "0"),
            ],
        );
        let config = ws_gateway::Config::from_vars(&vars).expect("gateway config");
        gateways.push(
            serve(node_id, |listener, shutdown| {
                tokio::spawn(ws_gateway::run(config, listener, shutdown))
            })
            .await,
        );
    }
    (ai, gateways)
}

async fn serve(
    node_id: String,
    start: impl FnOnce(tokio::net::TcpListener, CancellationToken) -> JoinHandle<anyhow::Result<()>>,
) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    let task = start(listener, shutdown.clone());
    Node {
        addr,
        node_id,
        shutdown,
        task: Some(task),
    }
}

/// A node's variables: `pairs`, then the stack's extra ones.
fn vars(options: &StackOptions, pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain(
            options
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone())),
        )
        .collect()
}
