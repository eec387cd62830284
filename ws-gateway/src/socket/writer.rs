//! The socket's single writer: drains its queue, filters live frames, and writes.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::{Sink, SinkExt};
use protocol::SessionId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backend::Backend;
use super::filter::DeliveryFilter;
use super::queue::Outbound;
use super::snapshot::history_frame;
use crate::stats::Stats;

/// Everything the writer owns. Nothing else writes to the socket once it runs.
pub(super) struct Writer<S, B> {
    pub sink: S,
    pub queue: mpsc::Receiver<Outbound>,
    pub filter: DeliveryFilter,
    /// Cancelled by whoever finds the queue full.
    pub slow: CancellationToken,
    pub shutdown: CancellationToken,
    /// Snapshots for resyncs.
    pub backend: B,
    pub session: SessionId,
    pub stats: Arc<Stats>,
}

/// Why the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The queue fell behind: close with 1013.
    Slow,
    /// The node is shutting down: close with 1001.
    Shutdown,
    /// The peer is gone or the queue closed: nothing to say.
    Gone,
    /// A close frame was written (asked for through the queue).
    Closed,
}

impl<S, B> Writer<S, B>
where
    S: Sink<Message> + Unpin,
    B: Backend,
{
    /// Writes until the socket must close; hands back the sink so the caller can leave the
    /// hub before it waits for the close frame to go out.
    pub async fn run(mut self) -> (S, End) {
        let end = self.write_all().await;
        if end == End::Slow {
            info!(session_id = %self.session, "closing a slow consumer (1013)");
        }
        (self.sink, end)
    }

    async fn write_all(&mut self) -> End {
        // Frames are fed to the socket as they come and flushed once the queue runs dry, so a
        // burst goes out in few writes; nothing fed ever waits for a later frame to be flushed.
        let mut unflushed = false;
        loop {
            if unflushed && self.queue.is_empty() {
                tokio::select! {
                    biased;
                    () = self.slow.cancelled() => return End::Slow,
                    result = self.sink.flush() => {
                        if result.is_err() {
                            return End::Gone;
                        }
                    }
                }
                unflushed = false;
            }
            let item = tokio::select! {
                biased;
                () = self.slow.cancelled() => return End::Slow,
                () = self.shutdown.cancelled() => return End::Shutdown,
                item = self.queue.recv() => item,
            };
            let Some(item) = item else {
                return End::Gone;
            };
            if let Outbound::Close { code, reason } = item {
                let frame = Message::Close(Some(CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                }));
                let _ = self.sink.send(frame).await;
                return End::Closed;
            }
            let Some(message) = self.prepare(item).await else {
                continue;
            };
            tokio::select! {
                biased;
                () = self.slow.cancelled() => return End::Slow,
                result = self.sink.feed(message) => {
                    if result.is_err() {
                        return End::Gone;
                    }
                    unflushed = true;
                    Stats::inc(&self.stats.frames_sent);
                }
            }
        }
    }

    /// Turns a queued item into the message to write, or `None` when there is nothing to write.
    async fn prepare(&mut self, item: Outbound) -> Option<Message> {
        match item {
            Outbound::Live(frame) => {
                if self.filter.admit(&frame.meta) {
                    Some(Message::Text(frame.text.clone()))
                } else {
                    Stats::inc(&self.stats.frames_deduplicated);
                    None
                }
            }
            Outbound::Local(text) => Some(Message::Text(text)),
            Outbound::Recovered {
                text,
                message_id,
                delivered,
            } => {
                if let Some(what) = delivered {
                    self.filter.note_recovered(&message_id, what);
                }
                Some(Message::Text(text))
            }
            Outbound::Resync => self.resync().await,
            Outbound::Close { .. } => None,
        }
    }

    /// After the bus lost frames: a fresh snapshot replaces what the client has, and the filter
    /// starts again from it.
    async fn resync(&mut self) -> Option<Message> {
        match self.backend.conversation(&self.session).await {
            Ok(conversation) => {
                let (text, filter) = history_frame(&self.session, conversation);
                self.filter = filter;
                Some(Message::Text(text))
            }
            Err(e) => {
                // The client will see a gap and ask for it with `resume`.
                warn!(session_id = %self.session, cause = %e, "resync snapshot failed");
                None
            }
        }
    }
}
