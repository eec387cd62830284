//! What every node of the system shares, built in one place: the AI service and the gateway
//! differ in what they serve, not in how they reach Redis and SQL.
//!
//! # Layout
//! - [`Config`] (`config.rs`): a node's configuration: the [`NodeConfig`] both binaries read
//!   (`HOST`, `PORT`, `NODE_ID`, `REDIS_URL` or `REDIS_CLUSTER_URLS`, `DATABASE_URL`, the L1 cache, `LOG_LEVEL`) and
//!   each binary's own [`ServiceConfig`].
//! - [`Core`] (`core.rs`): the node's handles on the conversation state: Redis, the history read
//!   path (L1 → Redis → SQL), the writer of record, and the reaper every node runs.
//! - [`Health`] (`health.rs`): the components a node depends on, each a [`Probe`], and the
//!   report `GET /health` serves.
//! - [`main`] (`entry.rs`): what each binary's `main` does.
//!
//! # Who writes what to SQL
//! - The AI node that produces an answer is the writer of record: the user message (and the
//!   session row), the answer when it starts, its chunks, and the answer when it ends.
//! - Every node runs the reaper, gateways included, so answers whose AI node died are failed
//!   even when every AI node is gone; the node whose reaper fails an answer records it.
//! - The node that serves a `DELETE` of a history deletes it.
//! - Reads of history go L1 → Redis → SQL on any node; a node that finds Redis empty refills it
//!   from SQL (a Redis write, not a SQL one).

mod config;
mod core;
mod entry;
mod health;

pub use config::{Config, NodeConfig, NodeDefaults, Persistence, ServiceConfig};
pub use core::Core;
pub use entry::main;
pub use health::{ComponentState, Health, Probe, ProbeStatus};
