//! Harness for the end-to-end tests: a stack of real processes and services on free ports,
//! and clients that speak to it the way a browser does.
//!
//! # Layout
//! - [`Stack`] (`stack.rs`): redis-server plus AI nodes and gateways, each served on its own
//!   loopback port, stopped when dropped.
//! - [`Cluster`] (`cluster.rs`): the multi-node stack as real processes behind a real nginx,
//!   for the tests that kill nodes.
//! - [`Redis`] (`redis.rs`): the Redis a stack runs on, one server or (with
//!   `CHAT_TEST_REDIS=cluster`) a 3+3 Redis Cluster.
//! - [`api`]: the REST calls tests make.
//! - [`kafka`]: reading what the system sent to Kafka.
//! - [`metrics`]: a node's `/metrics`, parsed strictly as Prometheus text.
//! - [`model`]: AI nodes on the `openai` provider, against `testkit::FakeModel`.
//! - [`tokens`]: JWTs for tests, good and bad.
//! - [`sequence`]: what a socket received, checked against the delivery guarantee.
//! - [`WsClient`] (`client.rs`): a WebSocket client with helpers to read frames and answers.

pub mod api;
mod client;
mod cluster;
pub mod kafka;
pub mod metrics;
pub mod model;
mod redis;
pub mod sequence;
mod stack;
pub mod tokens;

pub use client::{Answer, Event, Recording, Upgrade, WsClient, upgrade};
pub use cluster::{Cluster, ClusterOptions};
pub use redis::{REDIS_MODE_VAR, Redis, on_cluster};
pub use stack::{Node, Stack, StackOptions, http};

/// A JSON value, as the tests read frames.
pub type Json = serde_json::Value;

/// Message `id` of a `history` frame or `GET /api/history` body (its `messages`), if there.
pub fn message_in(history: &Json, id: &str) -> Option<Json> {
    history["messages"]
        .as_array()?
        .iter()
        .find(|m| m["messageId"] == id)
        .cloned()
}
