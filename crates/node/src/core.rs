//! [`Core`]: the handles every node holds on the conversation state.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use auth::Authenticator;
use events::{EventStats, Events, KafkaConfig, OutboxSignal, Relay};
use history::{CacheStats, HistoryReader};
use redis_state::{ChatState, RedisTarget};
use store::{Store, StoreWriter};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::NodeConfig;
use crate::health::{Health, KafkaProbe, RedisProbe, SqlProbe};

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
    /// Best-effort events to Kafka (lifecycle events go through the SQL outbox instead);
    /// disabled when Kafka is not configured.
    pub events: Events,
    /// Checks callers' tokens (and mints them); knows the auth mode.
    pub auth: Authenticator,
}

impl Core {
    /// Connects to Redis and SQL (creating or migrating the schema), starts the SQL writer, and
    /// starts this node's reaper, which fails answers whose producer died until `shutdown`.
    /// With Kafka configured, events are also written to the SQL outbox (and the relay told
    /// of them), and best-effort events are produced. Fails when Redis or the database cannot
    /// be reached now; Kafka may be down.
    pub async fn connect(
        config: &NodeConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Core> {
        runtime::metrics::install(None);
        let auth = Authenticator::new(&config.auth).context("JWT_SECRET")?;
        let state = ChatState::connect(&config.redis)
            .await
            .with_context(|| format!("connecting to Redis at {}", config.redis))?
            .metered(&config.node_id);
        let database_url = &config.persistence.database_url;
        let mut store = Store::connect(database_url)
            .await
            .with_context(|| format!("opening DATABASE_URL {database_url}"))?;
        let events = match &config.kafka {
            Some(kafka) => {
                let signal = OutboxSignal::start(state.clone(), shutdown.clone());
                store = store.with_outbox(signal.hook());
                Events::start(kafka, Arc::new(EventStats::new(&config.node_id)))
                    .context("creating the Kafka producer")?
            }
            None => Events::disabled(),
        };
        let writer = StoreWriter::start(store.clone(), &config.node_id);
        let history = HistoryReader::new(
            state.clone(),
            store,
            config.persistence.cache_l1_max_size,
            config.persistence.cache_l1_ttl,
            CacheStats::new(&config.node_id),
        );
        let core = Core {
            node_id: Arc::from(config.node_id.as_str()),
            state,
            history,
            writer,
            events,
            auth,
        };
        core.start_reaper(shutdown.clone());
        Ok(core)
    }

    /// The SQL store behind the history read path.
    pub fn store(&self) -> &Store {
        self.history.store()
    }

    /// A health report of the components every node depends on: Redis, the database and
    /// (never making the node unhealthy) Kafka. Binaries add their own probes.
    pub fn health(&self) -> Health {
        Health::new(self.node_id.clone())
            .with(RedisProbe(self.state.clone()))
            .with(SqlProbe {
                store: self.store().clone(),
                writer: self.writer.stats.clone(),
            })
            .with(KafkaProbe(self.events.clone()))
    }

    /// Starts this node's event relay (AI nodes run one; one of them, holding the lease,
    /// publishes the outbox), until `shutdown`. Nothing when Kafka is not configured.
    pub fn start_relay(
        &self,
        kafka: Option<&KafkaConfig>,
        redis: &RedisTarget,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let (Some(kafka), Some(stats)) = (kafka, self.events.stats()) else {
            return Ok(());
        };
        let relay = Relay {
            config: kafka.clone(),
            store: self.store().clone(),
            state: self.state.clone(),
            signals: redis
                .urls()
                .iter()
                .map(|url| redis::Client::open(url.as_str()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("Redis at {redis}"))?,
            node_id: self.node_id.clone(),
            stats,
        };
        tokio::spawn(relay.run(shutdown));
        Ok(())
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
        metrics::describe_counter!(
            "reaper_answers_failed_total",
            "Answers whose producer stopped, failed by this node's reaper"
        );
        let reaped_total =
            metrics::counter!("reaper_answers_failed_total", "node_id" => self.node_id.to_string());
        tokio::spawn(redis_state::run_reaper(
            self.state.clone(),
            redis_state::REAPER_INTERVAL,
            shutdown,
            move |reaped| {
                reaped_total.increment(1);
                writer.answer_ended(&reaped.answer, reaped.chunks, reaped.change);
            },
        ));
    }
}
