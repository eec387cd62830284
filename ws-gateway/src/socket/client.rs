//! The socket's reader: parses client frames and acts on them. Answers go through the writer's
//! queue like everything else.

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use protocol::rest::CancelOutcome;
use protocol::{
    ClientFrame, ErrorCode, MessageId, RecoveryStatus, ServerFrame, SessionId, UserId, validate,
};
use redis_state::Recovery;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::send_local;
use crate::AppState;
use crate::ai_client::ForwardError;
use crate::hub::{Outbound, Recovered};

/// Everything the reader needs.
pub(super) struct Reader {
    pub app: AppState,
    pub session: SessionId,
    pub user: UserId,
    /// The writer's queue.
    pub queue: mpsc::Sender<Outbound>,
    pub slow: CancellationToken,
}

impl Reader {
    pub async fn run(self, mut stream: SplitStream<WebSocket>) {
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Text(text)) => self.on_text(&text).await,
                Ok(Message::Binary(_)) => self.error(
                    ErrorCode::BinaryNotSupported,
                    "binary frames are not supported; send JSON text frames",
                ),
                Ok(Message::Close(_)) => return,
                // Pings are answered by the WebSocket layer itself.
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Err(e) => {
                    debug!(session_id = %self.session, cause = %e, "socket read ended");
                    return;
                }
            }
        }
    }

    async fn on_text(&self, text: &str) {
        if text.len() > self.app.config.ws_max_message_bytes {
            self.error(
                ErrorCode::TooLarge,
                format!(
                    "frame is {} bytes; the limit is {}",
                    text.len(),
                    self.app.config.ws_max_message_bytes
                ),
            );
            return;
        }
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(e) => return self.error(e.code, e.detail),
        };
        match frame {
            ClientFrame::Ping => self.local(&ServerFrame::Pong {
                timestamp: protocol::now_ms(),
            }),
            // Tokens are checked once authentication is enabled; until then they are accepted.
            ClientFrame::Auth { .. } => {}
            ClientFrame::Chat { message } => self.chat(&message),
            ClientFrame::Cancel { message_id } => self.cancel(message_id).await,
            ClientFrame::Resume {
                message_id,
                from_index,
            } => self.resume(message_id, from_index).await,
        }
    }

    /// Forwards a chat to an AI node in the background, so the reader keeps reading; the
    /// messages themselves arrive through the bus like everyone else's.
    fn chat(&self, message: &str) {
        let text = match validate::chat_text(message) {
            Ok(text) => text.to_owned(),
            Err(e) => return self.error(ErrorCode::InvalidMessage, e.to_string()),
        };
        let app = self.app.clone();
        let session = self.session.clone();
        let user = self.user.clone();
        let queue = self.queue.clone();
        let slow = self.slow.clone();
        tokio::spawn(async move {
            let frame = match app.forward_chat(&session, &user, text).await {
                Ok(accepted) => ServerFrame::Accepted {
                    session_id: accepted.session_id,
                    user_message_id: accepted.user_message_id,
                    message_id: accepted.message_id,
                    node_id: accepted.node_id,
                },
                Err(ForwardError::Rejected { body, .. }) => {
                    ServerFrame::error(body.code, body.error)
                }
                Err(ForwardError::Unavailable(why)) => {
                    ServerFrame::error(ErrorCode::AiUnavailable, why)
                }
            };
            send_local(
                &queue,
                &slow,
                &app.stats,
                Outbound::Local(Utf8Bytes::from(frame.to_json())),
            );
        });
    }

    async fn cancel(&self, message_id: String) {
        let message = match MessageId::parse(message_id) {
            Ok(id) => id,
            Err(e) => return self.error(ErrorCode::InvalidId, e.to_string()),
        };
        match self.app.state.cancel(&self.session, &message).await {
            Ok(CancelOutcome::Cancelling | CancelOutcome::AlreadyFinished) => {}
            Ok(CancelOutcome::NotFound) => self.local(&ServerFrame::Error {
                error: format!("no answer {message} in this session"),
                code: ErrorCode::NotFound,
                timestamp: protocol::now_ms(),
                message_id: Some(message.into_string()),
            }),
            Err(e) => {
                debug!(session_id = %self.session, cause = %e, "cancel failed");
                self.error(ErrorCode::Unavailable, "storage is unavailable; try again");
            }
        }
    }

    async fn resume(&self, message_id: String, from_index: u32) {
        let message = match MessageId::parse(message_id) {
            Ok(id) => id,
            Err(e) => return self.error(ErrorCode::InvalidId, e.to_string()),
        };
        let recovery = self
            .app
            .state
            .recover(&self.session, &message, from_index)
            .await;
        let (status, chunks, final_message, delivered) = match recovery {
            Ok(Recovery::Recovered { chunks }) => {
                let last = chunks.last().and_then(|c| c.index).map(Recovered::UpTo);
                (RecoveryStatus::Recovered, chunks, None, last)
            }
            Ok(Recovery::Completed(done)) => (
                RecoveryStatus::Completed,
                Vec::new(),
                Some(done),
                Some(Recovered::Final),
            ),
            Ok(Recovery::Expired) => (RecoveryStatus::Expired, Vec::new(), None, None),
            Ok(Recovery::NotFound) => (RecoveryStatus::NotFound, Vec::new(), None, None),
            Err(e) => {
                debug!(session_id = %self.session, cause = %e, "recovery failed");
                (RecoveryStatus::Error, Vec::new(), None, None)
            }
        };
        let frame = ServerFrame::Recovery {
            status,
            message_id: message.to_string(),
            chunks,
            message: final_message,
        };
        send_local(
            &self.queue,
            &self.slow,
            &self.app.stats,
            Outbound::Recovered {
                text: Utf8Bytes::from(frame.to_json()),
                message_id: message.into_string(),
                delivered,
            },
        );
    }

    fn local(&self, frame: &ServerFrame) {
        send_local(
            &self.queue,
            &self.slow,
            &self.app.stats,
            Outbound::Local(Utf8Bytes::from(frame.to_json())),
        );
    }

    fn error(&self, code: ErrorCode, detail: impl Into<String>) {
        self.local(&ServerFrame::error(code, detail));
    }
}
