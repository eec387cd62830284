//! Domain events: one name for each thing that happens to a session or an answer (the seed's
//! names), and [`DomainEvent`], the JSON record that goes to Kafka and into the SQL audit trail.
//!
//! Every event has a stable `eventId`, made from what it records (`STREAM_COMPLETED:{messageId}`,
//! ...), so the same event written or published twice has the same id and consumers can drop
//! the repeat.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::frames::RecoveryStatus;
use crate::message::{ChatMessage, MessageMetadata, MessageStatus, Role, Usage};
use crate::validate::{MessageId, SessionId, UserId};

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

/// The two topics events are spread over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `chat-events`: sessions, messages, deletions.
    Chat,
    /// `stream-events`: the life of an answer's stream, recoveries, chunks.
    Stream,
}

impl EventType {
    /// The topic this event goes to.
    pub fn topic(self) -> Topic {
        match self {
            EventType::SessionStarted | EventType::ChatMessage | EventType::HistoryDeleted => {
                Topic::Chat
            }
            EventType::StreamStarted
            | EventType::StreamCompleted
            | EventType::StreamCancelled
            | EventType::StreamFailed
            | EventType::RecoveryAttempt
            | EventType::ChunkReceived => Topic::Stream,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One domain event: the common fields, and the type's own (`details`, which also carries the
/// `eventType` tag). JSON in camelCase:
///
/// ```json
/// {"eventId":"STREAM_COMPLETED:9d4e...","timestamp":1718000000000,"sessionId":"s1",
///  "userId":"alice","messageId":"9d4e...","eventType":"STREAM_COMPLETED",
///  "totalChunks":118,"contentLength":702,"durationMs":6020}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainEvent {
    /// Stable: the same event, written or published again, has the same id.
    pub event_id: String,
    /// When the change happened (ms since the epoch).
    pub timestamp: i64,
    pub session_id: SessionId,
    pub user_id: UserId,
    /// The message the event is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    #[serde(flatten)]
    pub details: EventDetails,
}

/// Each event type's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "eventType",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum EventDetails {
    /// A session's first message arrived; `title` is that message, shortened.
    SessionStarted {
        title: String,
        start_time: i64,
    },
    /// A message reached its final form: a user message when stored, an answer when it ended.
    ChatMessage {
        role: Role,
        status: MessageStatus,
        content: String,
        /// The message's own timestamp (its creation).
        created_at: i64,
        /// What the model server reported about an answer, when it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Box<MessageMetadata>>,
    },
    /// A session's history was deleted; `deleted` messages went.
    HistoryDeleted {
        deleted: u64,
    },
    /// An AI node started an answer.
    StreamStarted {
        node_id: String,
    },
    StreamCompleted(StreamEnd),
    StreamCancelled(StreamEnd),
    StreamFailed(StreamEnd),
    /// A client asked for the chunks of an answer from `from_index` on.
    RecoveryAttempt {
        from_index: u32,
        status: RecoveryStatus,
    },
    /// An answer's chunk `index` was produced; `content_length` is its length in bytes.
    ChunkReceived {
        index: u32,
        content_length: usize,
    },
}

/// How an answer's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamEnd {
    /// Chunks the answer was made of.
    pub total_chunks: u32,
    /// Bytes of its final content.
    pub content_length: usize,
    /// From the answer's start to its end.
    pub duration_ms: i64,
    /// Tokens the answer took, when its model server reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl EventDetails {
    pub fn event_type(&self) -> EventType {
        match self {
            EventDetails::SessionStarted { .. } => EventType::SessionStarted,
            EventDetails::ChatMessage { .. } => EventType::ChatMessage,
            EventDetails::HistoryDeleted { .. } => EventType::HistoryDeleted,
            EventDetails::StreamStarted { .. } => EventType::StreamStarted,
            EventDetails::StreamCompleted(_) => EventType::StreamCompleted,
            EventDetails::StreamCancelled(_) => EventType::StreamCancelled,
            EventDetails::StreamFailed(_) => EventType::StreamFailed,
            EventDetails::RecoveryAttempt { .. } => EventType::RecoveryAttempt,
            EventDetails::ChunkReceived { .. } => EventType::ChunkReceived,
        }
    }
}

impl DomainEvent {
    pub fn event_type(&self) -> EventType {
        self.details.event_type()
    }

    /// The JSON text of this event.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// An event about `message`, with the id `{TYPE}:{messageId}`.
    fn about(message: &ChatMessage, at: i64, details: EventDetails) -> DomainEvent {
        DomainEvent {
            event_id: format!("{}:{}", details.event_type(), message.message_id),
            timestamp: at,
            session_id: message.session_id.clone(),
            user_id: message.user_id.clone(),
            message_id: Some(message.message_id.clone()),
            details,
        }
    }

    /// `SESSION_STARTED`: `first` is the session's first message.
    pub fn session_started(first: &ChatMessage, title: String) -> DomainEvent {
        DomainEvent {
            event_id: format!("{}:{}", EventType::SessionStarted, first.session_id),
            timestamp: first.timestamp,
            session_id: first.session_id.clone(),
            user_id: first.user_id.clone(),
            message_id: Some(first.message_id.clone()),
            details: EventDetails::SessionStarted {
                title,
                start_time: first.timestamp,
            },
        }
    }

    /// `CHAT_MESSAGE`: `message` in its final form (a user message, or an ended answer).
    pub fn chat_message(message: &ChatMessage, at: i64) -> DomainEvent {
        Self::about(
            message,
            at,
            EventDetails::ChatMessage {
                role: message.role,
                status: message.status,
                content: message.content.clone(),
                created_at: message.timestamp,
                metadata: message.metadata.clone(),
            },
        )
    }

    /// `STREAM_STARTED`: `node_id` took the session's lease for `answer`.
    pub fn stream_started(answer: &ChatMessage, node_id: &str, at: i64) -> DomainEvent {
        Self::about(
            answer,
            at,
            EventDetails::StreamStarted {
                node_id: node_id.to_owned(),
            },
        )
    }

    /// `STREAM_COMPLETED`, `STREAM_CANCELLED` or `STREAM_FAILED`, by the final `answer`'s
    /// status; `None` when that status is not final.
    pub fn stream_ended(answer: &ChatMessage, total_chunks: u32, at: i64) -> Option<DomainEvent> {
        let end = StreamEnd {
            total_chunks,
            content_length: answer.content.len(),
            duration_ms: (at - answer.timestamp).max(0),
            usage: answer.metadata.as_ref().and_then(|m| m.usage),
        };
        let details = match answer.status {
            MessageStatus::Completed => EventDetails::StreamCompleted(end),
            MessageStatus::Cancelled => EventDetails::StreamCancelled(end),
            MessageStatus::Failed => EventDetails::StreamFailed(end),
            MessageStatus::Pending | MessageStatus::Streaming => return None,
        };
        Some(Self::about(answer, at, details))
    }

    /// `HISTORY_DELETED` of `session` (whose user is `user`) at `at`.
    pub fn history_deleted(
        session: &SessionId,
        user: &UserId,
        deleted: u64,
        at: i64,
    ) -> DomainEvent {
        DomainEvent {
            event_id: format!("{}:{session}:{at}", EventType::HistoryDeleted),
            timestamp: at,
            session_id: session.clone(),
            user_id: user.clone(),
            message_id: None,
            details: EventDetails::HistoryDeleted { deleted },
        }
    }

    /// `CHUNK_RECEIVED`: chunk `index` (`delta`) of `answer` was produced.
    pub fn chunk_received(answer: &ChatMessage, index: u32, delta: &str, at: i64) -> DomainEvent {
        let mut event = Self::about(
            answer,
            at,
            EventDetails::ChunkReceived {
                index,
                content_length: delta.len(),
            },
        );
        event.event_id = format!("{}:{index}", event.event_id);
        event
    }

    /// `RECOVERY_ATTEMPT`: a client of `session` asked for `message` from `from_index` and got
    /// `status`. Each attempt is its own event; `attempt` (unique per attempt) makes its id.
    pub fn recovery_attempt(
        session: &SessionId,
        user: &UserId,
        message: &MessageId,
        from_index: u32,
        status: RecoveryStatus,
        attempt: &str,
        at: i64,
    ) -> DomainEvent {
        DomainEvent {
            event_id: format!("{}:{attempt}", EventType::RecoveryAttempt),
            timestamp: at,
            session_id: session.clone(),
            user_id: user.clone(),
            message_id: Some(message.clone()),
            details: EventDetails::RecoveryAttempt { from_index, status },
        }
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

    fn answer() -> ChatMessage {
        let mut answer = ChatMessage::started_answer(
            MessageId::parse("m1").unwrap(),
            SessionId::parse("s1").unwrap(),
            UserId::parse("alice").unwrap(),
            1_000,
        );
        answer.content = "Hi there".into();
        answer.status = MessageStatus::Completed;
        answer.is_complete = true;
        answer
    }

    /// An event is one flat JSON object: common fields, `eventType`, the type's own fields;
    /// it reads back as the same event.
    #[test]
    fn events_are_flat_camel_case_json_and_round_trip() {
        let event = DomainEvent::stream_ended(&answer(), 2, 1_500).unwrap();
        let json: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(json["eventId"], "STREAM_COMPLETED:m1");
        assert_eq!(json["eventType"], "STREAM_COMPLETED");
        assert_eq!(json["sessionId"], "s1");
        assert_eq!(json["userId"], "alice");
        assert_eq!(json["messageId"], "m1");
        assert_eq!(json["timestamp"], 1_500);
        assert_eq!(json["totalChunks"], 2);
        assert_eq!(json["contentLength"], 8);
        assert_eq!(json["durationMs"], 500);
        let back: DomainEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.event_type().topic(), Topic::Stream);

        let chat = DomainEvent::chat_message(&answer(), 1_500);
        let json: serde_json::Value = serde_json::from_str(&chat.to_json()).unwrap();
        assert_eq!(json["eventType"], "CHAT_MESSAGE");
        assert_eq!(json["status"], "completed");
        assert_eq!(json["role"], "assistant");
        assert_eq!(json["createdAt"], 1_000);
        assert_eq!(chat.event_type().topic(), Topic::Chat);
    }

    /// The same change always makes the same event id; distinct changes make distinct ids.
    #[test]
    fn event_ids_are_stable() {
        let a = answer();
        assert_eq!(
            DomainEvent::chat_message(&a, 1).event_id,
            DomainEvent::chat_message(&a, 2).event_id
        );
        assert_ne!(
            DomainEvent::chunk_received(&a, 1, "x", 1).event_id,
            DomainEvent::chunk_received(&a, 2, "x", 1).event_id
        );
        let mut streaming = a.clone();
        streaming.status = MessageStatus::Streaming;
        assert!(DomainEvent::stream_ended(&streaming, 0, 1).is_none());
    }
}
