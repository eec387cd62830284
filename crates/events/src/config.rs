//! The `KAFKA_*` settings.

use std::collections::HashMap;
use std::time::Duration;

use protocol::Topic;
use runtime::env::{BadVar, parse_or, string_or};

/// Where events go, read once at start-up. Absent (Kafka disabled) when
/// `KAFKA_BOOTSTRAP_SERVERS` is unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `KAFKA_BOOTSTRAP_SERVERS`: `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// `KAFKA_TOPIC_CHAT_EVENTS`, default `chat-events`.
    pub topic_chat_events: String,
    /// `KAFKA_TOPIC_STREAM_EVENTS`, default `stream-events`.
    pub topic_stream_events: String,
    /// `KAFKA_CHUNK_EVENTS`: `off` (default), `all`, or `sample:N` (every Nth chunk).
    pub chunk_events: ChunkEvents,
    /// `KAFKA_OUTBOX_RETENTION_HOURS`, default 24: published events are deleted from the SQL
    /// outbox this long after they were published.
    pub outbox_retention: Duration,
    /// `KAFKA_TOPIC_PARTITIONS`, default 4: partitions of the topics when the nodes create
    /// them (they do when the topics are missing; existing topics are left as they are).
    pub topic_partitions: i32,
    /// `KAFKA_TOPIC_REPLICATION_FACTOR`, default 1: replicas of the topics the nodes create.
    pub topic_replication: i32,
}

/// Which chunks become `CHUNK_RECEIVED` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEvents {
    Off,
    All,
    /// Every Nth chunk (indexes 0, N, 2N, ...).
    Sample(u32),
}

impl ChunkEvents {
    /// Whether chunk `index` of an answer becomes an event.
    pub fn includes(self, index: u32) -> bool {
        match self {
            ChunkEvents::Off => false,
            ChunkEvents::All => true,
            ChunkEvents::Sample(every) => index.is_multiple_of(every),
        }
    }

    fn parse(raw: &str) -> Option<ChunkEvents> {
        match raw {
            "off" => Some(ChunkEvents::Off),
            "all" => Some(ChunkEvents::All),
            _ => {
                let every: u32 = raw.strip_prefix("sample:")?.parse().ok()?;
                (every > 0).then_some(ChunkEvents::Sample(every))
            }
        }
    }
}

impl KafkaConfig {
    /// Reads the `KAFKA_*` variables; `None` when `KAFKA_BOOTSTRAP_SERVERS` is unset or empty.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Option<Self>, BadVar> {
        let bootstrap_servers = string_or(vars, "KAFKA_BOOTSTRAP_SERVERS", "");
        if bootstrap_servers.is_empty() {
            return Ok(None);
        }
        let raw_chunks = string_or(vars, "KAFKA_CHUNK_EVENTS", "off");
        let chunk_events = ChunkEvents::parse(&raw_chunks).ok_or_else(|| BadVar {
            name: "KAFKA_CHUNK_EVENTS",
            value: raw_chunks.clone(),
            reason: "must be off, all or sample:N with N >= 1".into(),
        })?;
        let hours = parse_or(vars, "KAFKA_OUTBOX_RETENTION_HOURS", 24u64)?;
        let topic_partitions = parse_or(vars, "KAFKA_TOPIC_PARTITIONS", 4i32)?;
        let topic_replication = parse_or(vars, "KAFKA_TOPIC_REPLICATION_FACTOR", 1i32)?;
        for (name, value) in [
            ("KAFKA_TOPIC_PARTITIONS", topic_partitions),
            ("KAFKA_TOPIC_REPLICATION_FACTOR", topic_replication),
        ] {
            if value < 1 {
                return Err(BadVar {
                    name,
                    value: value.to_string(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(Some(Self {
            bootstrap_servers,
            topic_chat_events: string_or(vars, "KAFKA_TOPIC_CHAT_EVENTS", "chat-events"),
            topic_stream_events: string_or(vars, "KAFKA_TOPIC_STREAM_EVENTS", "stream-events"),
            chunk_events,
            outbox_retention: Duration::from_secs(hours * 3600),
            topic_partitions,
            topic_replication,
        }))
    }

    /// The topic name of `topic`.
    pub fn topic(&self, topic: Topic) -> &str {
        match topic {
            Topic::Chat => &self.topic_chat_events,
            Topic::Stream => &self.topic_stream_events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::env::from_pairs;

    /// Unset bootstrap servers disable Kafka; the rest has working defaults and is checked.
    #[test]
    fn kafka_is_off_without_bootstrap_servers_and_checked_with() {
        assert_eq!(KafkaConfig::from_vars(&from_pairs(&[])).unwrap(), None);
        let on = KafkaConfig::from_vars(&from_pairs(&[("KAFKA_BOOTSTRAP_SERVERS", "k:9092")]))
            .unwrap()
            .unwrap();
        assert_eq!(on.topic(Topic::Chat), "chat-events");
        assert_eq!(on.topic(Topic::Stream), "stream-events");
        assert_eq!(on.chunk_events, ChunkEvents::Off);
        assert_eq!(on.outbox_retention, Duration::from_secs(24 * 3600));
        let sampled = KafkaConfig::from_vars(&from_pairs(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
            ("KAFKA_CHUNK_EVENTS", "sample:10"),
        ]))
        .unwrap()
        .unwrap();
        assert!(sampled.chunk_events.includes(20));
        assert!(!sampled.chunk_events.includes(21));
        for bad in ["sample:0", "sample:x", "some"] {
            let vars = from_pairs(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "k"),
                ("KAFKA_CHUNK_EVENTS", bad),
            ]);
            assert!(KafkaConfig::from_vars(&vars).is_err(), "{bad}");
        }
    }
}
