//! Harness for the end-to-end tests: a stack of real processes and services on free ports,
//! and clients that speak to it the way a browser does.
//!
//! # Layout
//! - [`Stack`] (`stack.rs`): redis-server plus AI nodes and gateways, each served on its own
//!   loopback port, stopped when dropped.
//! - [`WsClient`] (`client.rs`): a WebSocket client with helpers to read frames and answers.

mod client;
mod stack;

pub use client::{Answer, Event, WsClient};
pub use stack::{Node, Stack, StackOptions, http};

/// A JSON value, as the tests read frames.
pub type Json = serde_json::Value;
