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
    /// Anything else; details are in the server log, never in the answer.
    Internal,
}
