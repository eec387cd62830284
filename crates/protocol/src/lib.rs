//! Wire types shared by every binary and test of the chat system.
//!
//! This crate does no I/O: it holds the serde types that cross a process boundary and the rules
//! that decide whether an input may enter the system at all.
//!
//! # Layout
//! - [`message`]: `ChatMessage`, the record that history, chunks and final answers share.
//! - [`frames`]: WebSocket frames, server → client ([`ServerFrame`]) and client → server
//!   ([`ClientFrame`]), plus [`frames::peek_live_frame`], the cheap parse the gateway does on
//!   the hot path.
//! - [`rest`]: JSON bodies of the REST endpoints of both binaries.
//! - [`validate`]: validated identifiers ([`SessionId`], [`MessageId`], [`UserId`]) and the
//!   message-text rule.
//! - [`keys`]: every Redis key and channel name, in one place.
//! - [`error`]: the error codes that `error` frames and 4xx bodies carry.
//! - [`events`]: the names of lifecycle events (audit trail, domain events).

pub mod error;
pub mod events;
pub mod frames;
pub mod keys;
pub mod message;
pub mod rest;
pub mod validate;

pub use error::ErrorCode;
pub use events::{DomainEvent, EventDetails, EventType, StreamEnd, Topic};
pub use frames::{ClientFrame, LiveFrame, RecoveryStatus, ServerFrame, StreamingState};
pub use message::{ChatMessage, MessageMetadata, MessageStatus, Role, Usage};
pub use validate::{InvalidInput, MessageId, SessionId, UserId, Validated};

/// Milliseconds since the Unix epoch, the unit of every `timestamp` field.
pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
