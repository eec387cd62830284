//! Domain events on Kafka, through rdkafka.
//!
//! Two paths, by how much an event matters:
//! - **Lifecycle events** (a session started, a message stored, an answer started or ended, a
//!   history deleted) are written by `store` to the SQL outbox in the same transaction as the
//!   change they describe, and the [`Relay`] (one active per cluster, on an AI node) publishes
//!   them in order and marks them published once the broker acknowledged them. A broker
//!   outage delays them; none is lost.
//! - **Best-effort events** (sampled `CHUNK_RECEIVED`, `RECOVERY_ATTEMPT`) go through
//!   [`Events::emit`]: a bounded buffer, dropped and counted when full, never awaited.
//!
//! Records are keyed by session id, so one session's events stay in one partition, in order.
//! Events carry a stable `eventId`: consumers drop repeats by it.
//!
//! # Layout
//! - `config.rs`: [`KafkaConfig`] (`KAFKA_*`), [`ChunkEvents`].
//! - `client.rs`: what every client shares: librdkafka's logs into `tracing`, its errors as a
//!   rate-limited warning, [`EventStats`].
//! - `direct.rs`: [`Events`], the best-effort producer and the broker's health.
//! - `relay.rs`: [`Relay`], the outbox relay; `order.rs`: which rows it may publish, in which
//!   order (a session's changes in the order they happened, not the order they committed).
//! - `signal.rs`: [`OutboxSignal`], waking the relay when events were written.
//! - `replay.rs`: [`replay`], rebuilding the SQL store from `chat-events`.

mod client;
mod config;
mod direct;
mod order;
mod relay;
mod replay;
mod signal;

pub use client::EventStats;
pub use config::{ChunkEvents, KafkaConfig};
pub use direct::Events;
pub use relay::{RELAY_LEASE, Relay};
pub use replay::{ReplayReport, replay};
pub use signal::OutboxSignal;

/// Errors of the Kafka side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("an event on {topic} is not valid JSON: {cause}")]
    Event { topic: String, cause: String },
    #[error("a blocking Kafka call did not finish: {0}")]
    Interrupted(String),
}

pub type Result<T> = std::result::Result<T, Error>;
