//! The socket's reader: parses client frames and acts on them. Answers go through the socket's
//! queue like everything else, so the writer stays the only one writing.

use axum::extract::ws::{Message, Utf8Bytes};
use futures_util::{Stream, StreamExt};
use protocol::rest::{CancelOutcome, ChatRequest};
use protocol::{
    ClientFrame, DomainEvent, ErrorCode, MessageId, RecoveryStatus, ServerFrame, SessionId, UserId,
};
use redis_state::Recovery;
use runtime::trace::TraceParent;
use tracing::{Instrument, debug};

use std::sync::Arc;

use super::backend::Backend;
use super::queue::{Outbound, Recovered, RecoveryFrame, SocketQueue};
use crate::stats::Stats;

/// Why reading a socket failed.
#[derive(Debug)]
pub enum ReadError {
    /// The client sent a frame above the WebSocket layer's hard limit: close with 1009.
    TooBig,
    /// The connection broke.
    Broken(String),
}

/// How the reader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReaderEnd {
    /// The client closed, or the connection broke.
    Gone,
    /// The client sent a frame too big to read: it gets a 1009.
    TooBig,
}

/// Everything the reader needs.
pub(super) struct Reader<B> {
    pub backend: B,
    pub session: SessionId,
    pub user: UserId,
    /// The socket's queue (to the writer).
    pub queue: SocketQueue,
    /// `WS_MAX_MESSAGE_BYTES`: larger text frames get a `TOO_LARGE` error.
    pub max_message_bytes: usize,
    pub stats: Arc<Stats>,
}

impl<B: Backend> Reader<B> {
    /// Reads until the client closes or the connection fails.
    pub async fn run<R>(self, mut stream: R) -> ReaderEnd
    where
        R: Stream<Item = Result<Message, ReadError>> + Unpin,
    {
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Text(text)) => self.on_text(&text).await,
                Ok(Message::Binary(_)) => self.error(
                    ErrorCode::BinaryNotSupported,
                    "binary frames are not supported; send JSON text frames",
                ),
                Ok(Message::Close(_)) => return ReaderEnd::Gone,
                // Pings are answered by the WebSocket layer itself.
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Err(ReadError::TooBig) => return ReaderEnd::TooBig,
                Err(ReadError::Broken(cause)) => {
                    debug!(session_id = %self.session, %cause, "socket read ended");
                    return ReaderEnd::Gone;
                }
            }
        }
        ReaderEnd::Gone
    }

    async fn on_text(&self, text: &str) {
        if text.len() > self.max_message_bytes {
            self.error(
                ErrorCode::TooLarge,
                format!(
                    "frame is {} bytes; the limit is {}",
                    text.len(),
                    self.max_message_bytes
                ),
            );
            return;
        }
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.stats.client_frame("invalid");
                return self.error(e.code, e.detail);
            }
        };
        self.stats.client_frame(frame.kind());
        match frame {
            ClientFrame::Ping => self.queue.local(&ServerFrame::Pong {
                timestamp: protocol::now_ms(),
            }),
            // A socket is authenticated before it is served (by its query or a first `auth`
            // frame); a later `auth` frame changes nothing.
            ClientFrame::Auth { .. } => {}
            ClientFrame::Chat { message } => self.chat(message),
            // Boxed: the reader lives as long as its socket, and these rare calls' futures
            // would otherwise take room in every idle socket's task.
            ClientFrame::Cancel { message_id } => Box::pin(self.cancel(message_id)).await,
            ClientFrame::Resume {
                message_id,
                from_index,
            } => Box::pin(self.resume(message_id, from_index)).await,
        }
    }

    /// Forwards a chat to an AI node in the background, so the reader keeps reading; the
    /// messages themselves arrive through the bus like everyone else's.
    fn chat(&self, message: String) {
        let request = ChatRequest {
            session_id: self.session.clone(),
            message,
            user_id: self.user.clone(),
        };
        let backend = self.backend.clone();
        let queue = self.queue.clone();
        // Each chat is a trace of its own, followed to the AI node.
        let trace = TraceParent::start();
        let span = runtime::trace::chat_span(&trace);
        let chat = async move {
            debug!(session_id = %request.session_id, "forwarding a chat from a socket");
            let frame = match backend.chat(request, trace).await {
                Ok(accepted) => ServerFrame::Accepted {
                    session_id: accepted.session_id,
                    user_message_id: accepted.user_message_id,
                    message_id: accepted.message_id,
                    node_id: accepted.node_id,
                },
                Err(refused) => {
                    let body = refused.into_body();
                    ServerFrame::error(body.code, body.error)
                }
            };
            queue.local(&frame);
        };
        tokio::spawn(chat.instrument(span));
    }

    async fn cancel(&self, message: MessageId) {
        match self.backend.cancel(&self.session, &message).await {
            Ok(CancelOutcome::Cancelling | CancelOutcome::AlreadyFinished) => {}
            Ok(CancelOutcome::NotFound) => self.queue.local(&ServerFrame::Error {
                error: format!("no answer {message} in this session"),
                code: ErrorCode::NotFound,
                timestamp: protocol::now_ms(),
                message_id: Some(message),
            }),
            Err(e) => {
                debug!(session_id = %self.session, cause = %e, "cancel failed");
                self.error(ErrorCode::Unavailable, "storage is unavailable; try again");
            }
        }
    }

    async fn resume(&self, message: MessageId, from_index: u32) {
        let recovery = self
            .backend
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
        self.backend.emit(DomainEvent::recovery_attempt(
            &self.session,
            &self.user,
            &message,
            from_index,
            status,
            &uuid::Uuid::new_v4().to_string(),
            protocol::now_ms(),
        ));
        self.stats.recovery(status.as_str());
        let frame = ServerFrame::Recovery {
            status,
            message_id: message.clone(),
            chunks,
            message: final_message,
        };
        self.queue
            .offer(Outbound::Recovered(Box::new(RecoveryFrame {
                text: Utf8Bytes::from(frame.to_json()),
                message_id: message,
                delivered,
            })));
    }

    fn error(&self, code: ErrorCode, detail: impl Into<String>) {
        self.queue.local(&ServerFrame::error(code, detail));
    }
}
