//! JSON bodies of the REST endpoints (snake_case, as the seed's FastAPI service had them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::frames::StreamingState;
use crate::message::ChatMessage;
use crate::validate::{
    self, DEFAULT_USER_ID, InvalidInput, MessageId, SessionId, UserId, Validated,
};

/// `POST /chat` (AI) and `POST /api/chat` (gateway), validated: typed ids, and the message
/// trimmed and within bounds. Arrives as [`RawChatRequest`] (see [`Validated`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawChatRequest")]
pub struct ChatRequest {
    pub session_id: SessionId,
    pub message: String,
    pub user_id: UserId,
}

/// A chat request as it arrives; `user_id` defaults to [`DEFAULT_USER_ID`].
#[derive(Debug, Clone, Deserialize)]
pub struct RawChatRequest {
    pub session_id: String,
    pub message: String,
    #[serde(default = "default_user")]
    pub user_id: String,
}

fn default_user() -> String {
    DEFAULT_USER_ID.to_owned()
}

impl Validated for ChatRequest {
    type Raw = RawChatRequest;

    fn validate(raw: RawChatRequest) -> Result<Self, InvalidInput> {
        let session_id = SessionId::parse(raw.session_id)?;
        let user_id = UserId::parse(raw.user_id)?;
        let message = validate::chat_text(&raw.message)?.to_owned();
        Ok(ChatRequest {
            session_id,
            message,
            user_id,
        })
    }
}

impl TryFrom<RawChatRequest> for ChatRequest {
    type Error = InvalidInput;
    fn try_from(raw: RawChatRequest) -> Result<Self, InvalidInput> {
        Self::validate(raw)
    }
}

/// 202 answer to a chat: the stream has been started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatAccepted {
    /// Always `"accepted"`.
    pub status: String,
    pub session_id: SessionId,
    /// Id of the user message just stored.
    pub user_message_id: MessageId,
    /// Id of the assistant message that is streaming.
    pub message_id: MessageId,
    /// The AI node producing the answer.
    pub node_id: String,
}

/// `POST /cancel` and `POST /api/cancel`, validated. Arrives as [`RawCancelRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawCancelRequest")]
pub struct CancelRequest {
    pub session_id: SessionId,
    pub message_id: MessageId,
}

/// A cancel request as it arrives.
#[derive(Debug, Clone, Deserialize)]
pub struct RawCancelRequest {
    pub session_id: String,
    pub message_id: String,
}

impl Validated for CancelRequest {
    type Raw = RawCancelRequest;

    fn validate(raw: RawCancelRequest) -> Result<Self, InvalidInput> {
        Ok(CancelRequest {
            session_id: SessionId::parse(raw.session_id)?,
            message_id: MessageId::parse(raw.message_id)?,
        })
    }
}

impl TryFrom<RawCancelRequest> for CancelRequest {
    type Error = InvalidInput;
    fn try_from(raw: RawCancelRequest) -> Result<Self, InvalidInput> {
        Self::validate(raw)
    }
}

/// What a cancel request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The answer is streaming; its producer stops within one chunk interval (200).
    Cancelling,
    /// The answer had already ended; nothing changed (200).
    AlreadyFinished,
    /// No such answer in this session (404).
    NotFound,
}

/// Answer to a cancel request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelResponse {
    pub status: CancelOutcome,
    pub session_id: SessionId,
    pub message_id: MessageId,
}

/// `GET /history/{sid}` and `GET /api/history/{sid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub session_id: SessionId,
    /// Chronological; an in-flight answer is last, with `isComplete: false`.
    pub messages: Vec<ChatMessage>,
    pub count: usize,
    pub streaming: Option<StreamingState>,
}

/// `DELETE /history/{sid}` and `DELETE /api/history/{sid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedResponse {
    /// Always `"deleted"`.
    pub status: String,
    pub session_id: SessionId,
    /// How many stored messages were removed.
    pub deleted: usize,
}

/// `GET /api/sessions?user_id=..`: a user's sessions, most recent first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsResponse {
    pub user_id: UserId,
    pub sessions: Vec<SessionSummary>,
}

/// One session in a sidebar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub session_id: SessionId,
    /// The session's first user message, shortened.
    pub title: String,
    /// Milliseconds since the epoch.
    pub last_activity_time: i64,
    pub start_time: i64,
}

/// `GET /api/me`: who the node thinks the caller is, and whether it requires tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeResponse {
    pub user_id: UserId,
    /// `dev` or `required`.
    pub auth_mode: String,
}

/// Body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: ErrorCode,
}

/// `GET /health` (and `/health/ready`): `status` is `"ok"` when the node can serve,
/// `"degraded"` when a critical component is down, `"draining"` once it is shutting down.
/// `components` holds each component's state (`up`, `down (detail)`, `disabled`), and
/// `latency_ms` how long each check took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthResponse {
    pub status: String,
    pub node_id: String,
    pub components: BTreeMap<String, String>,
    pub latency_ms: BTreeMap<String, f64>,
    pub timestamp: i64,
}

/// `GET /` of the AI service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub service: String,
    pub version: String,
    pub node_id: String,
    pub endpoints: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chat body is checked field by field, in order, each refusal keeping its own reason;
    /// `user_id` defaults to the seed's default user.
    #[test]
    fn chat_requests_are_validated_field_by_field() {
        let raw = |json: &str| serde_json::from_str::<RawChatRequest>(json).unwrap();
        let ok = ChatRequest::validate(raw(r#"{"session_id":"s","message":" hi "}"#)).unwrap();
        assert_eq!(ok.message, "hi");
        assert_eq!(ok.user_id, UserId::default());
        let refused = |json: &str| ChatRequest::validate(raw(json)).unwrap_err().code();
        assert_eq!(
            refused(r#"{"session_id":"a:b","message":""}"#),
            ErrorCode::InvalidId,
            "the session id is checked first"
        );
        assert_eq!(
            refused(r#"{"session_id":"s","message":"","user_id":"a b"}"#),
            ErrorCode::InvalidId
        );
        assert_eq!(
            refused(r#"{"session_id":"s","message":"  "}"#),
            ErrorCode::InvalidMessage
        );
        // Deserializing the typed form runs the same checks.
        assert!(
            serde_json::from_str::<ChatRequest>(r#"{"session_id":"*","message":"x"}"#).is_err()
        );
    }
}
