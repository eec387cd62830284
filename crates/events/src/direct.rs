//! [`Events`]: the node's handle on Kafka for best-effort events, and on the broker's health.
//!
//! Lifecycle events never come here: they are written to the SQL outbox with their change and
//! relayed ([`crate::Relay`]). What comes here is what may be lost without harm, sampled chunks
//! (`CHUNK_RECEIVED`) and recovery attempts (`RECOVERY_ATTEMPT`): [`Events::emit`] hands the
//! event to librdkafka's bounded buffer and returns at once; when the buffer is full (the
//! broker is down or slow) the event is dropped and counted. Nothing on a stream's or a
//! socket's path ever waits for Kafka.

use std::sync::Arc;
use std::time::Duration;

use protocol::DomainEvent;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tracing::warn;

use crate::Result;
use crate::client::{EventStats, KafkaContext, client_config, ensure_topics};
use crate::config::{ChunkEvents, KafkaConfig};

/// Best-effort events buffered before new ones are dropped.
const BUFFERED_EVENTS: &str = "10000";
/// How long the health check waits for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Kafka as this node sees it: disabled, or a best-effort producer. Cheap to clone.
#[derive(Clone, Default)]
pub struct Events {
    inner: Option<Arc<Direct>>,
}

struct Direct {
    config: KafkaConfig,
    producer: ThreadedProducer<KafkaContext>,
    stats: Arc<EventStats>,
}

impl Events {
    /// Kafka is not configured: nothing is sent, the health report says `disabled`.
    pub fn disabled() -> Events {
        Events::default()
    }

    /// A best-effort producer for `config`, counting into `stats`. Connects lazily: the broker
    /// may be down now.
    pub fn start(config: &KafkaConfig, stats: Arc<EventStats>) -> Result<Events> {
        let producer = client_config(
            &config.bootstrap_servers,
            &[
                ("enable.idempotence", "false"),
                ("acks", "1"),
                ("linger.ms", "20"),
                ("queue.buffering.max.messages", BUFFERED_EVENTS),
                ("queue.buffering.max.kbytes", "65536"),
                ("message.timeout.ms", "30000"),
            ],
        )
        .create_with_context(KafkaContext::new("events", stats.clone()))?;
        tokio::spawn({
            let (config, stats) = (config.clone(), stats.clone());
            async move {
                // Best effort: the relay makes sure of them before it publishes.
                ensure_topics(&config, stats).await;
            }
        });
        Ok(Events {
            inner: Some(Arc::new(Direct {
                config: config.clone(),
                producer,
                stats,
            })),
        })
    }

    /// Whether Kafka is configured.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Which chunks should become `CHUNK_RECEIVED` events (`Off` when Kafka is disabled).
    pub fn chunk_events(&self) -> ChunkEvents {
        self.inner
            .as_ref()
            .map_or(ChunkEvents::Off, |d| d.config.chunk_events)
    }

    /// The counters, when Kafka is configured (the relay counts into them too).
    pub fn stats(&self) -> Option<Arc<EventStats>> {
        self.inner.as_ref().map(|d| d.stats.clone())
    }

    /// Sends `event` if there is room in the buffer; otherwise drops and counts it. Never
    /// waits.
    pub fn emit(&self, event: &DomainEvent) {
        let Some(direct) = &self.inner else {
            return;
        };
        let topic = direct.config.topic(event.event_type().topic());
        let payload = event.to_json();
        let record = BaseRecord::to(topic)
            .key(event.session_id.as_str())
            .payload(&payload);
        if let Err((error, _)) = direct.producer.send(record) {
            direct.stats.dropped.increment(1);
            if direct.producer.context().may_warn() {
                warn!(%error, "a best-effort event was dropped (Kafka buffer full?)");
            }
        }
    }

    /// Whether the broker answers now: `None` when Kafka is disabled. A refused connection
    /// answers at once; a broker that accepts but does not answer (frozen) within 500 ms.
    pub async fn reachable(&self) -> Option<bool> {
        let direct = self.inner.clone()?;
        let first = direct
            .config
            .bootstrap_servers
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let connect = tokio::net::TcpStream::connect(first.as_str());
        if !matches!(
            tokio::time::timeout(PROBE_TIMEOUT, connect).await,
            Ok(Ok(_))
        ) {
            return Some(false);
        }
        let metadata = tokio::task::spawn_blocking(move || {
            direct
                .producer
                .client()
                .fetch_metadata(None, PROBE_TIMEOUT)
                .is_ok()
        });
        Some(metadata.await.unwrap_or(false))
    }
}
