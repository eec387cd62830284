//! JSON bodies of the REST endpoints (snake_case, as the seed's FastAPI service had them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::frames::StreamingState;
use crate::message::ChatMessage;

/// The user id used when a client does not send one (the seed's default).
pub const DEFAULT_USER_ID: &str = "default_user";

fn default_user() -> String {
    DEFAULT_USER_ID.to_owned()
}

/// `POST /chat` (AI) and `POST /api/chat` (gateway). Fields are validated by the handler so that
/// each gets its own clear error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub session_id: String,
    pub message: String,
    #[serde(default = "default_user")]
    pub user_id: String,
}

/// 202 answer to a chat: the stream has been started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatAccepted {
    /// Always `"accepted"`.
    pub status: String,
    pub session_id: String,
    /// Id of the user message just stored.
    pub user_message_id: String,
    /// Id of the assistant message that is streaming.
    pub message_id: String,
    /// The AI node producing the answer.
    pub node_id: String,
}

/// `POST /cancel` and `POST /api/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub session_id: String,
    pub message_id: String,
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
    pub session_id: String,
    pub message_id: String,
}

/// `GET /history/{sid}` and `GET /api/history/{sid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub session_id: String,
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
    pub session_id: String,
    /// How many stored messages were removed.
    pub deleted: usize,
}

/// `GET /api/sessions?user_id=..`: a user's sessions, most recent first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsResponse {
    pub user_id: String,
    pub sessions: Vec<SessionSummary>,
}

/// One session in a sidebar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub session_id: String,
    /// The session's first user message, shortened.
    pub title: String,
    /// Milliseconds since the epoch.
    pub last_activity_time: i64,
    pub start_time: i64,
}

/// Body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: ErrorCode,
}

/// `GET /health`: `status` is `"ok"` when every component is `"up"`, else `"degraded"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    pub status: String,
    pub node_id: String,
    pub components: BTreeMap<String, String>,
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
