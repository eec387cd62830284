//! The hot state of every conversation, kept in Redis, and the only code that changes it.
//!
//! Each change that other nodes can observe is one Lua script, so no reader ever sees half of
//! it: a chunk is appended to its log and published in one step; an answer's final message is
//! appended to history, its lease released and its final frame published in one step; a
//! snapshot reads history, the lease and the chunk log in one step. That atomicity is what the
//! gateway's exactly-once delivery rests on (see docs/PROTOCOL.md).
//!
//! # Layout
//! - [`ChatState`] (this file): the handle, cheap to clone, around one multiplexed connection
//!   to a single Redis or one cluster connection to a Redis Cluster ([`RedisTarget`],
//!   [`Connection`]).
//! - `scripts.rs`: the Lua sources.
//! - `producer.rs`: what an AI node does: start a stream, append chunks, finish it.
//! - `reader.rs`: what anyone reads: snapshots, history, recovery of missed chunks.
//! - `control.rs`: cancel and delete.
//! - `access.rs`: whose session it is; the per-user limits (chats a minute, open sockets).
//! - `reaper.rs`: failing answers whose producer vanished (lease ran out).
//! - `lease.rs`: leases naming the node that holds a role: the `session:owner:{sid}` claim
//!   (observability only) and the event relay's lease.
//! - `signal.rs`: wake-ups between nodes (new events in the outbox).
//! - `cluster.rs`: which master of a cluster serves which slots.
//!
//! # On a Redis Cluster
//! Every key of a session carries the session's hash tag (see `protocol::keys`), so each script
//! of one session touches one slot and runs on the shard that owns it; the scripts publish with
//! `SPUBLISH` instead of `PUBLISH` (sharded pub/sub: the frames stay on that shard); scripts over
//! many sessions or users (owner claims, socket renewals) are called once per slot; and the
//! deadlines of streaming answers are kept per slot (`streaming:deadlines:{tag}`) instead of in
//! one set, each reaper round asking every master about the slots it serves.

use std::sync::Arc;

use metrics::Histogram;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;

use crate::scripts::Scripts;

mod access;
mod cluster;
mod control;
mod lease;
mod producer;
mod reader;
mod reaper;
mod scripts;
mod signal;

pub use control::CancelOutcome;
pub use producer::{ChunkOutcome, HistoryCheck, Liveness, StartOutcome, StreamHandle};
pub use reader::{InFlight, Recovery, Snapshot};
pub use reaper::{Reaped, STREAM_FAILED_TEXT, run_reaper};

/// How often every node looks for answers whose producer vanished.
pub const REAPER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How the shared connection behaves while Redis is away: a call fails within about a second
/// (1 s to connect, 1 s for an answer, two quick reconnection retries) instead of waiting out
/// a long reconnection, so that a chat is refused at once with 503 and a stream's retries
/// stay in the caller's hands.
pub fn connection_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(1)))
        .set_response_timeout(Some(std::time::Duration::from_secs(1)))
        .set_number_of_retries(2)
        .set_min_delay(std::time::Duration::from_millis(50))
        .set_max_delay(std::time::Duration::from_millis(500))
}

/// Where the conversation state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `REDIS_URL`: one Redis.
    Single(String),
    /// `REDIS_CLUSTER_URLS`: seed nodes of a Redis Cluster (any reachable one will do; the rest
    /// of the cluster is learnt from it).
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// The one Redis, or the cluster's seeds: where a plain connection can go (for classic
    /// pub/sub, which a cluster broadcasts to every node).
    pub fn urls(&self) -> &[String] {
        match self {
            Self::Single(url) => std::slice::from_ref(url),
            Self::Cluster(seeds) => seeds,
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(url) => write!(f, "{url}"),
            Self::Cluster(seeds) => write!(f, "cluster {}", seeds.join(",")),
        }
    }
}

/// Errors of the Redis state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis could not be reached, or refused a command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A script answered something this code does not expect (a bug, or a foreign key).
    #[error("unexpected reply from a script: {0}")]
    Reply(String),
    /// A message could not be turned into JSON to be stored.
    #[error("encoding a message as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Handle on the conversation state in one Redis or one Redis Cluster. Clones share the
/// connection.
#[derive(Clone)]
pub struct ChatState {
    conn: Connection,
    scripts: Arc<Scripts>,
    /// `redis_call_duration_seconds`: every call through [`ChatState::conn`] (a no-op until
    /// [`ChatState::metered`]).
    latency: Histogram,
}

impl ChatState {
    /// Connects to `target`; fails if it cannot be reached now. Later outages make individual
    /// calls fail, quickly (see [`connection_config`]), while the connection re-establishes
    /// itself; on a cluster, `MOVED`/`ASK` redirections and failovers are followed by the
    /// cluster connection.
    pub async fn connect(target: &RedisTarget) -> Result<Self> {
        Ok(Self::with_conn(Connection::open(target).await?))
    }

    /// The state in the single Redis behind `conn`.
    pub fn new(conn: ConnectionManager) -> Self {
        Self::with_conn(Connection::Single(conn))
    }

    fn with_conn(conn: Connection) -> Self {
        let cluster = matches!(conn, Connection::Cluster(..));
        Self {
            conn,
            scripts: Arc::new(Scripts::new(cluster)),
            latency: Histogram::noop(),
        }
    }

    /// Whether the state is in a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Connection::Cluster(..))
    }

    /// The deadline set `session`'s streaming answers are in: the one set on a single Redis,
    /// the set of the session's slot on a cluster.
    pub fn deadlines(&self, session: &protocol::SessionId) -> String {
        if self.is_cluster() {
            protocol::keys::slot_deadlines(protocol::keys::session_slot(session))
        } else {
            protocol::keys::STREAM_DEADLINES.to_owned()
        }
    }

    /// Times every Redis call in `redis_call_duration_seconds{node_id}`.
    pub fn metered(mut self, node_id: &str) -> Self {
        metrics::describe_histogram!(
            "redis_call_duration_seconds",
            metrics::Unit::Seconds,
            "Redis calls (commands and scripts) of the node's shared connection"
        );
        self.latency =
            metrics::histogram!("redis_call_duration_seconds", "node_id" => node_id.to_owned());
        self
    }

    /// PING, for health checks. On a cluster, one node answering is enough: a master failing
    /// over stops only its own sessions, not the node.
    pub async fn ping(&self) -> Result<()> {
        match &self.conn {
            Connection::Single(_) => {
                redis::cmd("PING")
                    .query_async::<String>(&mut self.conn())
                    .await?;
            }
            Connection::Cluster(conn, _) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let random = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
                conn.clone()
                    .route_command(redis::cmd("PING"), random)
                    .await?;
            }
        }
        Ok(())
    }

    /// `items` in batches for scripts that take one key per item: up to 500 a batch on a
    /// single Redis; on a cluster, the items whose key is in one slot (`slot_of`), since a
    /// script's keys must share a slot there.
    pub(crate) fn batches<'a, T>(
        &self,
        items: &'a [T],
        slot_of: impl Fn(&T) -> u16,
    ) -> Vec<Vec<&'a T>> {
        if !self.is_cluster() {
            return items.chunks(500).map(|b| b.iter().collect()).collect();
        }
        let mut by_slot = std::collections::BTreeMap::<u16, Vec<&T>>::new();
        for item in items {
            by_slot.entry(slot_of(item)).or_default().push(item);
        }
        by_slot.into_values().collect()
    }

    /// The shared connection, for tools and tests that look at keys directly.
    pub fn connection(&self) -> Connection {
        self.conn.clone()
    }

    pub(crate) fn conn(&self) -> Timed {
        Timed {
            inner: self.conn.clone(),
            latency: self.latency.clone(),
        }
    }

    pub(crate) fn scripts(&self) -> &Scripts {
        &self.scripts
    }
}

/// A connection to one Redis (reconnecting by itself) or to a cluster (routing each command
/// by its key, following `MOVED`/`ASK` and failovers). Clones share it.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    /// With the watch that keeps its slot map current (`cluster_map::watch`), which ends when
    /// the last clone is dropped.
    Cluster(ClusterConnection, Arc<tokio_util::sync::DropGuard>),
}

impl Connection {
    /// Connects to `target`; fails if it cannot be reached now. Calls fail within about a
    /// second while it is away (see [`connection_config`]).
    pub async fn open(target: &RedisTarget) -> Result<Self> {
        match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let conn = client
                    .get_connection_manager_with_config(connection_config())
                    .await?;
                Ok(Self::Single(conn))
            }
            RedisTarget::Cluster(seeds) => {
                let client = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(std::time::Duration::from_secs(1))
                    .response_timeout(std::time::Duration::from_secs(1))
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()?;
                let conn = client.get_async_connection().await?;
                let watching = tokio_util::sync::CancellationToken::new();
                tokio::spawn(cluster_map::watch(
                    conn.clone(),
                    cluster_map::WATCH_EVERY,
                    watching.clone(),
                    |_| {},
                ));
                Ok(Self::Cluster(conn, Arc::new(watching.drop_guard())))
            }
        }
    }
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c, _) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c, _) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c, _) => c.get_db(),
        }
    }
}

/// The shared connection, timing each call.
pub(crate) struct Timed {
    inner: Connection,
    latency: Histogram,
}

impl redis::aio::ConnectionLike for Timed {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let reply = self.inner.req_packed_command(cmd).await;
            self.latency.record(started.elapsed());
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let reply = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.latency.record(started.elapsed());
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
