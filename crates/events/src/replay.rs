//! [`replay`]: rebuilds the SQL store (messages, sessions, deletions) from `chat-events`, read
//! from the beginning of every partition.
//!
//! The end of the topic is each partition's end-of-file notice, never its high watermark (a
//! watermark is not reliable on every Kafka-compatible broker); a topic that stays silent for
//! `idle` also ends the replay.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use protocol::DomainEvent;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use store::Store;
use tracing::{info, warn};

use crate::client::{EventStats, KafkaContext, client_config};
use crate::config::KafkaConfig;
use crate::{Error, Result};

impl ConsumerContext for KafkaContext {}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events read.
    pub read: u64,
    /// Events that changed the store (sessions, messages, deletions).
    pub applied: u64,
}

/// Reads `chat-events` from the beginning and applies every event to `store`, in order per
/// partition (so per session). Applying an event twice changes nothing more, so a replay may
/// be run again.
pub async fn replay(config: &KafkaConfig, store: &Store, idle: Duration) -> Result<ReplayReport> {
    let topic = config.topic_chat_events.clone();
    let consumer: StreamConsumer<KafkaContext> = client_config(
        &config.bootstrap_servers,
        &[
            // assign() needs a group id, though no group is joined and nothing is committed.
            ("group.id", "chat-replay"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "true"),
            ("fetch.wait.max.ms", "50"),
        ],
    )
    .create_with_context(KafkaContext::new(
        "replay",
        Arc::new(EventStats::new("replay")),
    ))?;
    let consumer = Arc::new(consumer);
    let partitions = {
        let consumer = consumer.clone();
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<i32>> {
            let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            Ok(metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect())
        })
        .await
        .map_err(|e| Error::Interrupted(e.to_string()))??
    };
    let mut report = ReplayReport::default();
    if partitions.is_empty() {
        info!(%topic, "nothing to replay: the topic has no partitions");
        return Ok(report);
    }
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment.add_partition_offset(&topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut at_end: HashSet<i32> = HashSet::new();
    while at_end.len() < partitions.len() {
        let Ok(next) = tokio::time::timeout(idle, consumer.recv()).await else {
            warn!(%topic, "no end-of-partition notice within {idle:?}; ending the replay");
            break;
        };
        match next {
            Ok(message) => {
                at_end.remove(&message.partition());
                report.read += 1;
                let payload = message.payload().unwrap_or_default();
                let event: DomainEvent =
                    serde_json::from_slice(payload).map_err(|e| Error::Event {
                        topic: topic.clone(),
                        cause: e.to_string(),
                    })?;
                if store.replay_event(&event).await? {
                    report.applied += 1;
                }
            }
            Err(KafkaError::PartitionEOF(partition)) => {
                at_end.insert(partition);
            }
            Err(e) => warn!(cause = %e, "reading chat events"),
        }
    }
    info!(read = report.read, applied = report.applied, "replay done");
    Ok(report)
}
