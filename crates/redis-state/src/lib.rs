//! The hot state of every conversation, kept in Redis, and the only code that changes it.
//!
//! Each change that other nodes can observe is one Lua script, so no reader ever sees half of
//! it: a chunk is appended to its log and published in one step; an answer's final message is
//! appended to history, its lease released and its final frame published in one step; a
//! snapshot reads history, the lease and the chunk log in one step. That atomicity is what the
//! gateway's exactly-once delivery rests on (see docs/PROTOCOL.md).
//!
//! # Layout
//! - [`ChatState`] (this file): the handle, cheap to clone, around one multiplexed connection.
//! - `scripts.rs`: the Lua sources.
//! - `producer.rs`: what an AI node does: start a stream, append chunks, finish it.
//! - `reader.rs`: what anyone reads: snapshots, history, recovery of missed chunks.
//! - `control.rs`: cancel and delete.
//! - `access.rs`: whose session it is; the per-user limits (chats a minute, open sockets).
//! - `reaper.rs`: failing answers whose producer vanished (lease ran out).
//! - `lease.rs`: leases naming the node that holds a role: the `session:owner:{sid}` claim
//!   (observability only) and the event relay's lease.
//! - `signal.rs`: wake-ups between nodes (new events in the outbox).

use std::sync::Arc;

use metrics::Histogram;

use redis::aio::ConnectionManager;

use crate::scripts::Scripts;

mod access;
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

/// Handle on the conversation state in one Redis. Clones share the connection.
#[derive(Clone)]
pub struct ChatState {
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    /// `redis_call_duration_seconds`: every call through [`ChatState::conn`] (a no-op until
    /// [`ChatState::metered`]).
    latency: Histogram,
}

impl ChatState {
    /// Connects to Redis at `url`; fails if it cannot be reached now. Later outages make
    /// individual calls fail, quickly (see [`connection_config`]), while the connection
    /// re-establishes itself.
    pub async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = client
            .get_connection_manager_with_config(connection_config())
            .await?;
        Ok(Self::new(conn))
    }

    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            scripts: Arc::new(Scripts::new()),
            latency: Histogram::noop(),
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

    /// PING, for health checks.
    pub async fn ping(&self) -> Result<()> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await?;
        Ok(())
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

/// The shared connection, timing each call.
pub(crate) struct Timed {
    inner: ConnectionManager,
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
