//! Reading what the system sent to Kafka, as a consumer of its topics would.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::Json;

/// The system's two topics (the defaults of `KAFKA_TOPIC_*`).
pub const TOPICS: [&str; 2] = ["chat-events", "stream-events"];
/// Partitions each topic is created with.
pub const PARTITIONS: i32 = 4;

/// One record as a consumer received it.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record key (a session id).
    pub key: String,
    pub event: Json,
    /// When this consumer received it.
    pub received: Instant,
}

impl Record {
    pub fn event_id(&self) -> &str {
        self.event["eventId"].as_str().unwrap_or_default()
    }

    pub fn event_type(&self) -> &str {
        self.event["eventType"].as_str().unwrap_or_default()
    }
}

/// Creates both topics with [`PARTITIONS`] partitions, before anything produces to them.
pub async fn create_topics(bootstrap: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic<'_>> = TOPICS
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics");
    for result in results {
        result.expect("topic created");
    }
}

/// Waits until both topics exist (created by the system itself), and returns their partition
/// counts. Blocking: call it from `spawn_blocking`.
pub fn wait_for_topics(bootstrap: &str, limit: Duration) -> Vec<usize> {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("metadata client");
    let deadline = Instant::now() + limit;
    loop {
        let counts: Vec<usize> = TOPICS
            .iter()
            .filter_map(|topic| {
                let metadata = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(2))
                    .ok()?;
                let found = metadata.topics().iter().find(|t| t.name() == *topic)?;
                (found.error().is_none() && !found.partitions().is_empty())
                    .then(|| found.partitions().len())
            })
            .collect();
        if counts.len() == TOPICS.len() {
            return counts;
        }
        assert!(Instant::now() < deadline, "the topics were never created");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every record of both topics, from the beginning, collected in the background.
pub struct EventLog {
    records: Arc<Mutex<Vec<Record>>>,
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

impl EventLog {
    /// Starts reading both topics (created by [`create_topics`]) from their beginning.
    pub fn start(bootstrap: &str) -> EventLog {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "e2e-reader")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "20")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for topic in TOPICS {
            for partition in 0..PARTITIONS {
                assignment
                    .add_partition_offset(topic, partition, Offset::Beginning)
                    .expect("partition");
            }
        }
        consumer.assign(&assignment).expect("assign");
        let records = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn({
            let records = records.clone();
            let changed = changed.clone();
            async move {
                loop {
                    let Ok(message) = consumer.recv().await else {
                        continue;
                    };
                    let payload = message.payload().unwrap_or_default();
                    let record = Record {
                        topic: message.topic().to_owned(),
                        partition: message.partition(),
                        offset: message.offset(),
                        key: String::from_utf8_lossy(message.key().unwrap_or_default()).into(),
                        event: serde_json::from_slice(payload).unwrap_or(Json::Null),
                        received: Instant::now(),
                    };
                    records
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(record);
                    changed.notify_waiters();
                }
            }
        });
        EventLog {
            records,
            changed,
            task,
        }
    }

    /// Everything received so far, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `check` holds for what was received, or panics after `limit` saying `what`.
    pub async fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&[Record]) -> bool,
    ) -> Vec<Record> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            let records = self.records();
            if check(&records) {
                return records;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let records = self.records();
                if check(&records) {
                    return records;
                }
                panic!(
                    "timed out waiting for {what}; received {} records",
                    records.len()
                );
            }
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The records of `session` on `topic`, in the order of its partition.
pub fn of_session<'a>(records: &'a [Record], topic: &str, session: &str) -> Vec<&'a Record> {
    let mut mine: Vec<&Record> = records
        .iter()
        .filter(|r| r.topic == topic && r.key == session)
        .collect();
    mine.sort_by_key(|r| (r.partition, r.offset));
    mine
}

/// `records` with repeats of an `eventId` left out (what a deduplicating consumer sees).
pub fn first_of_each<'a>(records: &[&'a Record]) -> Vec<&'a Record> {
    let mut seen = std::collections::HashSet::new();
    records
        .iter()
        .filter(|r| seen.insert(r.event_id().to_owned()))
        .copied()
        .collect()
}
