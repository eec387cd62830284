//! Error codes carried by `error` frames and by the JSON body of every 4xx/5xx answer.

use serde::{Deserialize, Serialize};

/// A machine-readable reason, sent next to a human-readable `error` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// A text frame or request body that is not JSON.
    InvalidJson,
    /// A JSON frame whose `type` is not one the server knows.
    UnknownType,
    /// A JSON frame or body of a known type with missing or ill-typed fields.
    BadRequest,
    /// A binary WebSocket frame: the protocol is text only.
    BinaryNotSupported,
    /// A frame or body larger than the server accepts.
    TooLarge,
    /// A session, message or user id outside the allowed alphabet or length.
    InvalidId,
    /// A chat message that is empty after trimming or longer than the limit.
    InvalidMessage,
    /// No valid token: missing (when the node requires one), expired, forged or malformed.
    Unauthorized,
    /// The caller is authenticated but the session belongs to another user, or the page's
    /// origin is not allowed.
    Forbidden,
    /// Too many chats (or sockets) for this user; retry after the time given.
    RateLimited,
    /// The session already has an answer streaming (its stream lease is held).
    StreamActive,
    /// The thing asked for does not exist (or no longer exists).
    NotFound,
    /// No AI node could take the request.
    AiUnavailable,
    /// A dependency (Redis) is unreachable.
    Unavailable,
    /// The socket fell too far behind the stream and is being closed.
    SlowConsumer,
    /// The stream producing this message failed (its AI node died or lost Redis).
    StreamFailed,
    /// The model server behind the AI node failed this answer (unreachable, an HTTP error, no
    /// token in time, a malformed or cut-off stream); what it said is only in the node's log.
    UpstreamError,
    /// Anything else; details are in the server log, never in the answer.
    Internal,
}

impl ErrorCode {
    /// The code as it is sent (`STREAM_ACTIVE`, ...): for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::BinaryNotSupported => "BINARY_NOT_SUPPORTED",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::InvalidId => "INVALID_ID",
            ErrorCode::InvalidMessage => "INVALID_MESSAGE",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::StreamActive => "STREAM_ACTIVE",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AiUnavailable => "AI_UNAVAILABLE",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::SlowConsumer => "SLOW_CONSUMER",
            ErrorCode::StreamFailed => "STREAM_FAILED",
            ErrorCode::UpstreamError => "UPSTREAM_ERROR",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str` is the code's JSON form.
    #[test]
    fn as_str_is_the_wire_form() {
        for code in [
            ErrorCode::InvalidJson,
            ErrorCode::UnknownType,
            ErrorCode::BadRequest,
            ErrorCode::BinaryNotSupported,
            ErrorCode::TooLarge,
            ErrorCode::InvalidId,
            ErrorCode::InvalidMessage,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::RateLimited,
            ErrorCode::StreamActive,
            ErrorCode::NotFound,
            ErrorCode::AiUnavailable,
            ErrorCode::Unavailable,
            ErrorCode::SlowConsumer,
            ErrorCode::StreamFailed,
            ErrorCode::UpstreamError,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
