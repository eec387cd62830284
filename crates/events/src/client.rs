//! What every rdkafka client here shares: its settings, and a context that turns librdkafka's
//! logs into `tracing` events and its errors (a broker down, say) into one warning per 30 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use metrics::{Counter, Gauge};

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;
use tracing::{debug, trace, warn};

/// Errors of one client are warned about at most this often; the rest are counted.
const WARN_EVERY_MS: i64 = 30_000;

/// Metrics of the events a node sends, shared by its producers; each series labelled with the
/// node's id.
#[derive(Debug, Clone)]
pub struct EventStats {
    /// `events_sent_total`: events the broker acknowledged (relayed and best effort).
    pub sent: Counter,
    /// `events_dropped_total`: best-effort events dropped because the producer's buffer was
    /// full.
    pub dropped: Counter,
    /// `events_failed_total`: best-effort events the broker never acknowledged.
    pub failed: Counter,
    /// `kafka_client_errors_total`: client errors reported by librdkafka (broker unreachable).
    pub client_errors: Counter,
    /// `events_outbox_pending`: events in the outbox not yet published (set by the node
    /// holding the relay lease; 0 on the others).
    pub outbox_pending: Gauge,
    /// `events_outbox_lag_seconds`: age of the oldest unpublished event (same).
    pub outbox_lag: Gauge,
}

impl EventStats {
    /// Registers the series of node `node_id`.
    pub fn new(node_id: &str) -> Self {
        metrics::describe_counter!("events_sent_total", "Events the Kafka broker acknowledged");
        metrics::describe_counter!(
            "events_dropped_total",
            "Best-effort events dropped (buffer full)"
        );
        metrics::describe_counter!(
            "events_failed_total",
            "Best-effort events never acknowledged"
        );
        metrics::describe_counter!("kafka_client_errors_total", "Errors reported by librdkafka");
        metrics::describe_gauge!(
            "events_outbox_pending",
            "Events in the SQL outbox not yet on Kafka"
        );
        metrics::describe_gauge!(
            "events_outbox_lag_seconds",
            metrics::Unit::Seconds,
            "Age of the oldest event not yet on Kafka"
        );
        let label = || [("node_id", node_id.to_owned())];
        Self {
            sent: metrics::counter!("events_sent_total", &label()),
            dropped: metrics::counter!("events_dropped_total", &label()),
            failed: metrics::counter!("events_failed_total", &label()),
            client_errors: metrics::counter!("kafka_client_errors_total", &label()),
            outbox_pending: metrics::gauge!("events_outbox_pending", &label()),
            outbox_lag: metrics::gauge!("events_outbox_lag_seconds", &label()),
        }
    }
}

/// The context of every client: logs, errors, and (for the best-effort producer) deliveries.
#[derive(Clone)]
pub(crate) struct KafkaContext {
    /// Which client this is, in log lines (`relay`, `events`, `replay`).
    role: &'static str,
    stats: Arc<EventStats>,
    /// When the last warning was logged (ms since the epoch).
    last_warning: Arc<AtomicI64>,
}

impl KafkaContext {
    pub(crate) fn new(role: &'static str, stats: Arc<EventStats>) -> Self {
        Self {
            role,
            stats,
            last_warning: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Whether a warning may be logged now (at most one per [`WARN_EVERY_MS`]).
    pub(crate) fn may_warn(&self) -> bool {
        let now = protocol::now_ms();
        let last = self.last_warning.load(Ordering::Relaxed);
        now - last >= WARN_EVERY_MS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // librdkafka repeats a broker outage several times a second; `error` below reports it.
        match level {
            RDKafkaLogLevel::Debug => {
                trace!(target: "librdkafka", role = self.role, facility, "{message}")
            }
            _ => debug!(target: "librdkafka", role = self.role, facility, ?level, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.stats.client_errors.increment(1);
        if self.may_warn() {
            warn!(role = self.role, %error, reason,
                "Kafka client error (further ones for 30 s are only counted)");
        }
    }
}

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.stats.sent.increment(1),
            Err(_) => self.stats.failed.increment(1),
        }
    }
}

/// Creates the two topics unless they exist, with the configured partitions and replicas.
///
/// A producer sending to a topic the broker creates on the fly can place a key's first records
/// before the topic's partitions are all known, and its later ones elsewhere: a session's
/// events would then span partitions and lose their order. So the nodes create the topics
/// themselves, before producing. A refusal (no permission to create topics, say) is logged and
/// counts as done: topics made by an operator work as well. Returns false when the broker could
/// not be asked (it is down): try again before producing.
pub(crate) async fn ensure_topics(config: &crate::KafkaConfig, stats: Arc<EventStats>) -> bool {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::types::RDKafkaErrorCode;

    let admin: AdminClient<KafkaContext> = match client_config(&config.bootstrap_servers, &[])
        .create_with_context(KafkaContext::new("admin", stats))
    {
        Ok(admin) => admin,
        Err(e) => {
            warn!(cause = %e, "cannot create a Kafka admin client");
            return true;
        }
    };
    let topics: Vec<NewTopic<'_>> = [&config.topic_chat_events, &config.topic_stream_events]
        .into_iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.topic_partitions,
                TopicReplication::Fixed(config.topic_replication),
            )
        })
        .collect();
    // Bounded: the relay calls this between renewals of its lease, and the broker may be down.
    let limit = std::time::Duration::from_secs(2);
    let options = AdminOptions::new()
        .operation_timeout(Some(limit))
        .request_timeout(Some(limit));
    let created = tokio::time::timeout(limit * 2, admin.create_topics(&topics, &options)).await;
    let asked = match created {
        Err(_) => {
            debug!("creating Kafka topics timed out; retrying later");
            false
        }
        Ok(Ok(results)) => {
            let mut asked = true;
            for result in results {
                match result {
                    Ok(topic) => debug!(%topic, "created Kafka topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((
                        _,
                        RDKafkaErrorCode::RequestTimedOut | RDKafkaErrorCode::OperationTimedOut,
                    )) => {
                        asked = false;
                    }
                    Err((topic, code)) => warn!(%topic, ?code, "cannot create Kafka topic"),
                }
            }
            asked
        }
        Ok(Err(e)) => {
            debug!(cause = %e, "creating Kafka topics failed; retrying later");
            false
        }
    };
    // Dropping an admin client waits for its thread: not on the async threads.
    tokio::task::spawn_blocking(move || drop(admin));
    asked
}

/// Settings for a client of `bootstrap`, plus `extra`.
pub(crate) fn client_config(bootstrap: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    // librdkafka logs through the context above; below warnings it has nothing for operators.
    config.set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
}
