//! `ChatMessage`: one message of a conversation, and the piece of one that a chunk frame carries.

use serde::{Deserialize, Serialize};

use crate::validate::{MessageId, SessionId, UserId};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    System,
}

/// Where a message is in its life. Only `streaming` is not final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Pending,
    Streaming,
    Completed,
    Cancelled,
    Failed,
}

impl MessageStatus {
    /// Whether the message will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Failed)
    }
}

/// One message, with the seed's camelCase field names.
///
/// The same record is used three ways:
/// - a complete message (history, a user message, the final frame of an answer): `content` is the
///   full text, `isComplete` is true, `index` and `chunk` are absent;
/// - a chunk of an answer being streamed: `chunk` is the delta, `index` its position (0, 1, 2, ...
///   per message), `content` is absent (empty), `isComplete` is false;
/// - the in-flight answer inside a `history` frame: `content` is everything streamed so far,
///   `isComplete` is false, `status` is `streaming`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub message_id: MessageId,
    pub session_id: SessionId,
    pub user_id: UserId,
    pub role: Role,
    /// Full text; omitted from chunk frames, which carry only `chunk`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
    /// Milliseconds since the Unix epoch when the message was created.
    pub timestamp: i64,
    pub is_complete: bool,
    pub status: MessageStatus,
    /// Position of this chunk in its message (chunk frames only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The delta this chunk adds (chunk frames only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<String>,
    /// What the model server reported about a finished answer (final messages of answers from
    /// a model provider only). Boxed: every chunk carries the field, rarely a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<MessageMetadata>>,
}

/// What a model server reported about an answer: `{"model":"...","usage":{...}}`, each part
/// present when the server sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageMetadata {
    /// The model that wrote the answer, as its server names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tokens the answer took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl MessageMetadata {
    /// `None` when there is nothing to say.
    pub fn into_option(self) -> Option<Box<MessageMetadata>> {
        (self != MessageMetadata::default()).then(|| Box::new(self))
    }
}

/// Token counts as an OpenAI-compatible server reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Tokens of the prompt (system prompt, context and the new message).
    pub prompt_tokens: u32,
    /// Tokens of the answer.
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl ChatMessage {
    /// A user message: complete (and `completed`) as soon as it exists.
    pub fn user(
        message_id: MessageId,
        session_id: SessionId,
        user_id: UserId,
        content: String,
        timestamp: i64,
    ) -> ChatMessage {
        ChatMessage {
            message_id,
            session_id,
            user_id,
            role: Role::User,
            content,
            timestamp,
            is_complete: true,
            status: MessageStatus::Completed,
            index: None,
            chunk: None,
            metadata: None,
        }
    }

    /// An answer that has just started, for `user_id`: no content yet, `streaming`.
    pub fn started_answer(
        message_id: MessageId,
        session_id: SessionId,
        user_id: UserId,
        timestamp: i64,
    ) -> ChatMessage {
        ChatMessage {
            message_id,
            session_id,
            user_id,
            role: Role::Assistant,
            content: String::new(),
            timestamp,
            is_complete: false,
            status: MessageStatus::Streaming,
            index: None,
            chunk: None,
            metadata: None,
        }
    }

    /// A chunk frame's payload: the message's identity plus one delta.
    pub fn chunk_of(&self, index: u32, delta: &str) -> ChatMessage {
        ChatMessage {
            content: String::new(),
            is_complete: false,
            status: MessageStatus::Streaming,
            index: Some(index),
            chunk: Some(delta.to_owned()),
            metadata: None,
            ..self.clone()
        }
    }

    /// This message, finished with `content` and `status`.
    pub fn finished(&self, content: String, status: MessageStatus) -> ChatMessage {
        ChatMessage {
            content,
            is_complete: true,
            status,
            index: None,
            chunk: None,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChatMessage {
        ChatMessage::started_answer(
            MessageId::parse("m1").unwrap(),
            SessionId::parse("s1").unwrap(),
            UserId::parse("u1").unwrap(),
            1,
        )
    }

    /// Chunk frames carry the delta and index but not the accumulated content.
    #[test]
    fn chunk_serializes_delta_without_content() {
        let json = serde_json::to_value(sample().chunk_of(3, " word")).unwrap();
        assert_eq!(json["index"], 3);
        assert_eq!(json["chunk"], " word");
        assert_eq!(json["isComplete"], false);
        assert!(json.get("content").is_none());
        assert_eq!(json["messageId"], "m1");
    }

    /// A finished message carries the full content and no chunk fields.
    #[test]
    fn finished_message_has_content_and_no_chunk_fields() {
        let done = sample().finished("all of it".into(), MessageStatus::Completed);
        let json = serde_json::to_value(&done).unwrap();
        assert_eq!(json["content"], "all of it");
        assert_eq!(json["status"], "completed");
        assert!(json.get("index").is_none());
        assert!(json.get("chunk").is_none());
        let back: ChatMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, done);
    }

    /// A stored or published message with an id outside the alphabet does not deserialize.
    #[test]
    fn a_message_with_a_bad_id_does_not_deserialize() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json["sessionId"] = "a:b".into();
        assert!(serde_json::from_value::<ChatMessage>(json).is_err());
    }
}
