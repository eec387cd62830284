//! [`Core`]: the handles every node holds on the conversation state.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use history::HistoryReader;
use redis_state::ChatState;
use store::{Store, StoreWriter};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::NodeConfig;
use crate::health::{Health, RedisProbe, SqlProbe};

/// A node's handles on Redis and SQL. Cheap to clone; every clone shares them.
#[derive(Clone)]
pub struct Core {
    /// `NODE_ID`: in every log line, `welcome` frames, `/health` and chat answers.
    pub node_id: Arc<str>,
    /// The hot state in Redis; every change other nodes see is one script.
    pub state: ChatState,
    /// History reads: L1 (this node's memory) → Redis → SQL.
    pub history: HistoryReader,
    /// This node's writes of record to SQL, applied in the background, never awaited by a
    /// stream.
    pub writer: StoreWriter,
}

impl Core {
    /// Connects to Redis and SQL (creating or migrating the schema), starts the SQL writer, and
    /// starts this node's reaper, which fails answers whose producer died until `shutdown`.
    /// Fails when Redis or the database cannot be reached now.
    pub async fn connect(
        config: &NodeConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Core> {
        let state = ChatState::connect(&config.redis_url)
            .await
            .with_context(|| format!("connecting to Redis at {}", config.redis_url))?;
        let database_url = &config.persistence.database_url;
        let store = Store::connect(database_url)
            .await
            .with_context(|| format!("opening DATABASE_URL {database_url}"))?;
        let writer = StoreWriter::start(store.clone());
        let history = HistoryReader::new(
            state.clone(),
            store,
            config.persistence.cache_l1_max_size,
            config.persistence.cache_l1_ttl,
        );
        let core = Core {
            node_id: Arc::from(config.node_id.as_str()),
            state,
            history,
            writer,
        };
        core.start_reaper(shutdown.clone());
        Ok(core)
    }

    /// The SQL store behind the history read path.
    pub fn store(&self) -> &Store {
        self.history.store()
    }

    /// A health report of the components every node depends on: Redis and the database.
    /// Binaries add their own probes.
    pub fn health(&self) -> Health {
        Health::new(self.node_id.clone())
            .with(RedisProbe(self.state.clone()))
            .with(SqlProbe(self.store().clone()))
    }

    /// Waits up to `limit` for the SQL writes queued so far (at shutdown; the database may be
    /// down, so it does not wait forever).
    pub async fn finish_writes(&self, limit: Duration) {
        if tokio::time::timeout(limit, self.writer.flush())
            .await
            .is_err()
        {
            warn!("SQL writes still queued at shutdown; they are lost");
        }
    }

    /// Every node runs a reaper, so an answer whose AI node died is failed even when no AI node
    /// is left; the failed answer is recorded in SQL by this node.
    fn start_reaper(&self, shutdown: CancellationToken) {
        let writer = self.writer.clone();
        tokio::spawn(redis_state::run_reaper(
            self.state.clone(),
            redis_state::REAPER_INTERVAL,
            shutdown,
            move |reaped| writer.answer_ended(&reaped.answer, reaped.chunks),
        ));
    }
}
