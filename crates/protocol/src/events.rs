//! Lifecycle events of a conversation: one name for each thing that happens to a session or an
//! answer, as the seed names them.
//!
//! The SQL audit trail records them today; domain events on Kafka carry the same names.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::message::MessageStatus;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// A session's first message arrived.
    SessionStarted,
    /// A user message was stored, or an answer reached its final form.
    ChatMessage,
    /// A session's history was deleted.
    HistoryDeleted,
    /// An AI node took the session's lease and started an answer.
    StreamStarted,
    /// An answer ended normally.
    StreamCompleted,
    /// An answer was cancelled.
    StreamCancelled,
    /// An answer ended early: its producer died, lost Redis, or was shut down.
    StreamFailed,
    /// A client asked for missed chunks (`resume`).
    RecoveryAttempt,
    /// One chunk of an answer was produced.
    ChunkReceived,
}

impl EventType {
    /// Every event type, in the order above.
    pub const ALL: [EventType; 9] = [
        EventType::SessionStarted,
        EventType::ChatMessage,
        EventType::HistoryDeleted,
        EventType::StreamStarted,
        EventType::StreamCompleted,
        EventType::StreamCancelled,
        EventType::StreamFailed,
        EventType::RecoveryAttempt,
        EventType::ChunkReceived,
    ];

    /// The seed's name, e.g. `STREAM_COMPLETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SessionStarted => "SESSION_STARTED",
            EventType::ChatMessage => "CHAT_MESSAGE",
            EventType::HistoryDeleted => "HISTORY_DELETED",
            EventType::StreamStarted => "STREAM_STARTED",
            EventType::StreamCompleted => "STREAM_COMPLETED",
            EventType::StreamCancelled => "STREAM_CANCELLED",
            EventType::StreamFailed => "STREAM_FAILED",
            EventType::RecoveryAttempt => "RECOVERY_ATTEMPT",
            EventType::ChunkReceived => "CHUNK_RECEIVED",
        }
    }

    /// The event that ends an answer with `status` (`None` for a status that is not final).
    pub fn ending(status: MessageStatus) -> Option<EventType> {
        match status {
            MessageStatus::Completed => Some(EventType::StreamCompleted),
            MessageStatus::Cancelled => Some(EventType::StreamCancelled),
            MessageStatus::Failed => Some(EventType::StreamFailed),
            MessageStatus::Pending | MessageStatus::Streaming => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names on the wire are the seed's, and `as_str` agrees with serde.
    #[test]
    fn names_are_the_seeds_and_agree_with_serde() {
        for event in EventType::ALL {
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(json, event.as_str());
            assert_eq!(serde_json::from_value::<EventType>(json).unwrap(), event);
        }
        assert_eq!(
            EventType::ending(MessageStatus::Failed),
            Some(EventType::StreamFailed)
        );
        assert_eq!(EventType::ending(MessageStatus::Streaming), None);
    }
}
