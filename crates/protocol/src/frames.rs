//! WebSocket frames: what the server sends ([`ServerFrame`]) and what a client may send
//! ([`ClientFrame`]), both JSON objects tagged by `type`.
//!
//! The AI node serializes `message` frames once and publishes their exact text; the gateway
//! forwards those bytes untouched. It only needs to know which message and which chunk a frame
//! is, which [`peek_live_frame`] reads without building the whole [`ChatMessage`].

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::message::ChatMessage;
use crate::validate::{self, InvalidInput, MessageId, SessionId, Validated};

/// The answer streaming in a session when a snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamingState {
    pub message_id: MessageId,
    /// Index of the last chunk included in the snapshot; -1 when no chunk was produced yet.
    pub last_index: i64,
}

/// Outcome of a `resume` request (the seed's RecoveryService statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecoveryStatus {
    /// The answer is still streaming; `chunks` holds the missing ones in order.
    Recovered,
    /// The answer has ended; `message` is the final message.
    Completed,
    /// No such answer in this session.
    NotFound,
    /// The answer existed but its chunk log is gone (past its TTL).
    Expired,
    /// The lookup failed (Redis unreachable); try again.
    Error,
}

impl RecoveryStatus {
    /// The status as it is sent (`RECOVERED`, ...): for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryStatus::Recovered => "RECOVERED",
            RecoveryStatus::Completed => "COMPLETED",
            RecoveryStatus::NotFound => "NOT_FOUND",
            RecoveryStatus::Expired => "EXPIRED",
            RecoveryStatus::Error => "ERROR",
        }
    }
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum ServerFrame {
    /// First frame on every socket, sent once the node is subscribed to the session.
    Welcome {
        session_id: SessionId,
        node_id: String,
        timestamp: i64,
    },
    /// The conversation so far, chronological, including an in-flight answer.
    History {
        session_id: SessionId,
        messages: Vec<ChatMessage>,
        streaming: Option<StreamingState>,
    },
    /// A user message, a chunk, or a final message.
    Message {
        data: ChatMessage,
    },
    /// Answer to a `chat` frame, to that socket only: the chat was taken by an AI node, with
    /// the ids its messages will carry (the same fields `POST /api/chat` answers).
    Accepted {
        session_id: SessionId,
        user_message_id: MessageId,
        message_id: MessageId,
        node_id: String,
    },
    /// Answer to `resume`.
    Recovery {
        status: RecoveryStatus,
        message_id: MessageId,
        chunks: Vec<ChatMessage>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<ChatMessage>,
    },
    Pong {
        timestamp: i64,
    },
    Error {
        error: String,
        code: ErrorCode,
        timestamp: i64,
        /// The message the error is about, when there is one (e.g. a failed stream).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<MessageId>,
    },
}

impl ServerFrame {
    /// An `error` frame stamped now.
    pub fn error(code: ErrorCode, error: impl Into<String>) -> Self {
        ServerFrame::Error {
            error: error.into(),
            code,
            timestamp: crate::now_ms(),
            message_id: None,
        }
    }

    /// The JSON text of this frame.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Frames a client may send, validated: ids are in the id alphabet and a chat's text is trimmed
/// and within bounds. [`ClientFrame::parse`] is the only way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum ClientFrame {
    Ping,
    Auth {
        token: String,
    },
    Chat {
        message: String,
    },
    Cancel {
        message_id: MessageId,
    },
    Resume {
        message_id: MessageId,
        from_index: u32,
    },
}

impl ClientFrame {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Ping => "ping",
            ClientFrame::Auth { .. } => "auth",
            ClientFrame::Chat { .. } => "chat",
            ClientFrame::Cancel { .. } => "cancel",
            ClientFrame::Resume { .. } => "resume",
        }
    }
}

/// A client frame as it arrives, before its fields are checked.
#[derive(Debug, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum RawClientFrame {
    Ping,
    Auth { token: String },
    Chat { message: String },
    Cancel { message_id: String },
    Resume { message_id: String, from_index: u32 },
}

impl Validated for ClientFrame {
    type Raw = RawClientFrame;

    fn validate(raw: RawClientFrame) -> Result<Self, InvalidInput> {
        Ok(match raw {
            RawClientFrame::Ping => ClientFrame::Ping,
            RawClientFrame::Auth { token } => ClientFrame::Auth { token },
            RawClientFrame::Chat { message } => ClientFrame::Chat {
                message: validate::chat_text(&message)?.to_owned(),
            },
            RawClientFrame::Cancel { message_id } => ClientFrame::Cancel {
                message_id: MessageId::parse(message_id)?,
            },
            RawClientFrame::Resume {
                message_id,
                from_index,
            } => ClientFrame::Resume {
                message_id: MessageId::parse(message_id)?,
                from_index,
            },
        })
    }
}

/// Why a client frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    pub detail: String,
}

impl From<InvalidInput> for FrameError {
    fn from(e: InvalidInput) -> Self {
        FrameError {
            code: e.code(),
            detail: e.to_string(),
        }
    }
}

impl ClientFrame {
    /// Parses and checks a text frame, telling apart "not JSON", "unknown type", "bad fields"
    /// and each kind of invalid input.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        if !validate::json_depth_within(text.as_bytes(), validate::MAX_JSON_DEPTH) {
            return Err(FrameError {
                code: ErrorCode::InvalidJson,
                detail: format!(
                    "JSON nested deeper than {} levels",
                    validate::MAX_JSON_DEPTH
                ),
            });
        }
        let raw = serde_json::from_str::<RawClientFrame>(text).map_err(|e| {
            #[derive(Deserialize)]
            struct Tagged {
                #[serde(rename = "type")]
                kind: String,
            }
            const KNOWN: [&str; 5] = ["ping", "auth", "chat", "cancel", "resume"];
            match serde_json::from_str::<Tagged>(text) {
                Ok(tagged) if !KNOWN.contains(&tagged.kind.as_str()) => FrameError {
                    code: ErrorCode::UnknownType,
                    detail: format!("unknown frame type {:?}", tagged.kind),
                },
                Ok(_) => FrameError {
                    code: ErrorCode::BadRequest,
                    detail: format!("bad frame: {e}"),
                },
                Err(_) if serde_json::from_str::<serde_json::Value>(text).is_ok() => FrameError {
                    code: ErrorCode::BadRequest,
                    detail: "a frame must be a JSON object with a string \"type\"".into(),
                },
                Err(_) => FrameError {
                    code: ErrorCode::InvalidJson,
                    detail: "frame is not valid JSON".into(),
                },
            }
        })?;
        Ok(ClientFrame::validate(raw)?)
    }
}

/// What the gateway needs to know about a frame it forwards: enough to deduplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveFrame {
    /// A chunk of an answer being streamed; `published` is its `timestamp`, when its producer
    /// published it (ms since the epoch).
    Chunk {
        message_id: MessageId,
        index: u32,
        published: i64,
    },
    /// A complete message: a user message or an answer's final frame.
    Complete { message_id: MessageId },
    /// Anything else (an `error` frame about a stream, say): forwarded as is.
    Other,
}

/// Reads the few fields of a published frame that deduplication needs.
///
/// Returns `None` when the payload is not a JSON frame at all, or names a message id outside
/// the id alphabet (it is then dropped).
pub fn peek_live_frame(payload: &[u8]) -> Option<LiveFrame> {
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(default, borrow)]
        data: Option<PeekData<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PeekData<'a> {
        #[serde(borrow)]
        message_id: std::borrow::Cow<'a, str>,
        #[serde(default)]
        index: Option<u32>,
        #[serde(default)]
        is_complete: bool,
        #[serde(default)]
        timestamp: i64,
    }
    let peek: Peek<'_> = serde_json::from_slice(payload).ok()?;
    let id = |raw: std::borrow::Cow<'_, str>| MessageId::parse(raw.into_owned()).ok();
    Some(match (peek.kind.as_ref(), peek.data) {
        ("message", Some(data)) if data.is_complete => LiveFrame::Complete {
            message_id: id(data.message_id)?,
        },
        (
            "message",
            Some(PeekData {
                message_id,
                index: Some(index),
                timestamp,
                ..
            }),
        ) => LiveFrame::Chunk {
            message_id: id(message_id)?,
            index,
            published: timestamp,
        },
        _ => LiveFrame::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageStatus;
    use crate::validate::UserId;

    fn mid(s: &str) -> MessageId {
        MessageId::parse(s).unwrap()
    }

    fn sid(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    fn answer() -> ChatMessage {
        ChatMessage::started_answer(mid("m1"), sid("s1"), UserId::parse("u1").unwrap(), 5)
    }

    /// Frames carry a lowercase `type` tag and camelCase fields.
    #[test]
    fn server_frames_use_type_tag_and_camel_case() {
        let welcome = ServerFrame::Welcome {
            session_id: sid("s"),
            node_id: "n".into(),
            timestamp: 1,
        };
        assert_eq!(
            welcome.to_json(),
            r#"{"type":"welcome","sessionId":"s","nodeId":"n","timestamp":1}"#
        );
        let history = ServerFrame::History {
            session_id: sid("s"),
            messages: vec![],
            streaming: Some(StreamingState {
                message_id: mid("m"),
                last_index: -1,
            }),
        };
        assert_eq!(
            history.to_json(),
            r#"{"type":"history","sessionId":"s","messages":[],"streaming":{"messageId":"m","lastIndex":-1}}"#
        );
        let err = serde_json::to_value(ServerFrame::error(ErrorCode::UnknownType, "x")).unwrap();
        assert_eq!(err["type"], "error");
        assert_eq!(err["code"], "UNKNOWN_TYPE");
    }

    /// Client frames parse, and each kind of bad frame gets its own code.
    #[test]
    fn client_frames_parse_and_bad_frames_are_classified() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"resume","messageId":"m","fromIndex":3}"#),
            Ok(ClientFrame::Resume {
                message_id: mid("m"),
                from_index: 3
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"chat","message":"  hi  "}"#),
            Ok(ClientFrame::Chat {
                message: "hi".into()
            }),
            "a chat's text is trimmed on the way in"
        );
        let code = |t: &str| ClientFrame::parse(t).unwrap_err().code;
        assert_eq!(code("not json"), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"chat"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"[1,2]"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"type":"resume","messageId":"m","fromIndex":-1}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"type":"cancel","messageId":"a:b"}"#),
            ErrorCode::InvalidId
        );
        assert_eq!(
            code(r#"{"type":"resume","messageId":"","fromIndex":0}"#),
            ErrorCode::InvalidId
        );
        assert_eq!(
            code(r#"{"type":"chat","message":" \n "}"#),
            ErrorCode::InvalidMessage
        );
    }

    /// The gateway's peek sees chunks, complete messages and other frames for what they are.
    #[test]
    fn peek_classifies_published_frames() {
        let chunk = ServerFrame::Message {
            data: answer().chunk_of(7, " w"),
        }
        .to_json();
        assert_eq!(
            peek_live_frame(chunk.as_bytes()),
            Some(LiveFrame::Chunk {
                message_id: mid("m1"),
                index: 7,
                published: answer().timestamp,
            })
        );
        let done = ServerFrame::Message {
            data: answer().finished("w".into(), MessageStatus::Completed),
        }
        .to_json();
        assert_eq!(
            peek_live_frame(done.as_bytes()),
            Some(LiveFrame::Complete {
                message_id: mid("m1")
            })
        );
        let err = ServerFrame::error(ErrorCode::StreamFailed, "x").to_json();
        assert_eq!(peek_live_frame(err.as_bytes()), Some(LiveFrame::Other));
        assert_eq!(peek_live_frame(b"garbage"), None);
    }
}
