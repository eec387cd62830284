//! The socket's single writer: drains its queue, filters live frames, resyncs, and writes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bus::{Bus, Epoch};
use futures_util::{Sink, SinkExt};
use protocol::{ErrorCode, ServerFrame, SessionId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backend::Backend;
use super::close_code;
use super::filter::{DeliveryFilter, Verdict};
use super::queue::Outbound;
use super::snapshot::history_frame;
use crate::stats::Stats;

/// How long a resync may take (waiting for the bus to be back, then reading the snapshot,
/// retried) before the socket is closed with 1011 so that its client reconnects.
pub(super) const RESYNC_BUDGET: Duration = Duration::from_secs(10);
/// First pause between snapshot attempts; it doubles up to [`RESYNC_RETRY_MAX`].
const RESYNC_RETRY_MIN: Duration = Duration::from_millis(100);
const RESYNC_RETRY_MAX: Duration = Duration::from_secs(1);

/// Everything the writer owns. Nothing else writes to the socket once it runs.
pub(super) struct Writer<S, B> {
    pub sink: S,
    pub queue: mpsc::Receiver<Outbound>,
    pub filter: DeliveryFilter,
    /// The bus epoch the filter's snapshot was read after: losses of earlier connections are
    /// already covered by it.
    pub synced: Epoch,
    /// Cancelled by whoever finds the queue full.
    pub slow: CancellationToken,
    pub shutdown: CancellationToken,
    /// Snapshots for resyncs.
    pub backend: B,
    /// When the session is back on the bus after a lost connection.
    pub bus: Arc<dyn Bus>,
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
    /// A close frame was written (asked for through the queue, or after a failed resync).
    Closed,
}

/// What one queued item comes to.
enum Step {
    Write(Message),
    Skip,
    /// Resyncing failed for [`RESYNC_BUDGET`]: say so, and close with 1011.
    GiveUp,
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
        let (slow, shutdown) = (self.slow.clone(), self.shutdown.clone());
        // Frames are fed to the socket as they come and flushed once the queue runs dry, so a
        // burst goes out in few writes; nothing fed ever waits for a later frame to be flushed.
        let mut unflushed = false;
        loop {
            if unflushed && self.queue.is_empty() {
                tokio::select! {
                    biased;
                    () = slow.cancelled() => return End::Slow,
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
                () = slow.cancelled() => return End::Slow,
                () = shutdown.cancelled() => return End::Shutdown,
                item = self.queue.recv() => item,
            };
            let Some(item) = item else {
                return End::Gone;
            };
            if let Outbound::Close { code, reason } = item {
                self.close(code, reason).await;
                return End::Closed;
            }
            // A resync may wait for Redis: the socket must still close when it has to.
            let step = tokio::select! {
                biased;
                () = slow.cancelled() => return End::Slow,
                () = shutdown.cancelled() => return End::Shutdown,
                step = self.prepare(item) => step,
            };
            let message = match step {
                Step::Write(message) => message,
                Step::Skip => continue,
                Step::GiveUp => {
                    let frame = ServerFrame::error(
                        ErrorCode::Unavailable,
                        "storage is unavailable; reconnect later",
                    );
                    let _ = self
                        .sink
                        .send(Message::Text(Utf8Bytes::from(frame.to_json())))
                        .await;
                    self.close(close_code::INTERNAL_ERROR, "storage unavailable")
                        .await;
                    return End::Closed;
                }
            };
            tokio::select! {
                biased;
                () = slow.cancelled() => return End::Slow,
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

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }));
        let _ = self.sink.send(frame).await;
    }

    /// What a queued item comes to.
    async fn prepare(&mut self, item: Outbound) -> Step {
        match item {
            Outbound::Live(frame) => match self.filter.admit(&frame.meta) {
                Verdict::Send => Step::Write(Message::Text(frame.text.clone())),
                Verdict::Duplicate => {
                    Stats::inc(&self.stats.frames_deduplicated);
                    Step::Skip
                }
                Verdict::Gap => {
                    // Frames before it never arrived: the stored state has them (and this one).
                    warn!(session_id = %self.session, "a live frame skipped ahead; resyncing");
                    Stats::inc(&self.stats.gaps_resynced);
                    self.resync().await
                }
            },
            Outbound::Local(text) => Step::Write(Message::Text(text)),
            Outbound::Recovered {
                text,
                message_id,
                delivered,
            } => {
                if let Some(what) = delivered {
                    self.filter.note_recovered(&message_id, what);
                }
                Step::Write(Message::Text(text))
            }
            // A snapshot read after a later connection was confirmed covers this loss.
            Outbound::Resync { lost } if lost < self.synced => Step::Skip,
            Outbound::Resync { .. } => self.resync().await,
            Outbound::Close { .. } => Step::Skip,
        }
    }

    /// Frames were lost: once the session is back on the bus, a fresh snapshot replaces what
    /// the client has, and the filter starts again from it. Live frames queued meanwhile wait
    /// behind it and pass the new filter, so the client never sees a chunk out of sequence.
    async fn resync(&mut self) -> Step {
        Stats::inc(&self.stats.resyncs);
        let attempt = async {
            let mut pause = RESYNC_RETRY_MIN;
            loop {
                let read = async {
                    let epoch = self.bus.confirmed(&self.session).await?;
                    let conversation = self.backend.conversation(&self.session).await?;
                    Ok::<_, ResyncError>((epoch, conversation))
                };
                match read.await {
                    Ok(done) => return done,
                    Err(e) => {
                        debug!(session_id = %self.session, cause = %e, "resync failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(RESYNC_RETRY_MAX);
                    }
                }
            }
        };
        match tokio::time::timeout(RESYNC_BUDGET, attempt).await {
            Ok((epoch, conversation)) => {
                let (text, filter) = history_frame(&self.session, conversation);
                self.filter = filter;
                self.synced = epoch;
                Step::Write(Message::Text(text))
            }
            Err(_) => {
                warn!(session_id = %self.session, "no resync within {RESYNC_BUDGET:?}; closing (1011)");
                Step::GiveUp
            }
        }
    }
}

/// Why one resync attempt failed.
#[derive(Debug, thiserror::Error)]
enum ResyncError {
    #[error(transparent)]
    Bus(#[from] bus::Error),
    #[error(transparent)]
    History(#[from] history::Error),
}
