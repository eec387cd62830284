//! The socket's single writer: drains its queue, filters live frames, resyncs, and writes.
//!
//! A resync (the bus lost frames, or a live frame skipped ahead) runs beside the writing: the
//! writer waits for the session to be back on the bus, then reads a fresh snapshot, while it
//! keeps answering the client (pongs, errors, recoveries) and holds the live frames that
//! arrive meanwhile. Once the snapshot is sent, the held frames go through the new filter, so
//! the client never sees a chunk out of sequence.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bus::{Bus, Epoch};
use futures_util::{Sink, SinkExt};
use history::Conversation;
use protocol::{ErrorCode, LiveFrame, ServerFrame, SessionId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backend::Backend;
use super::close_code;
use super::filter::{DeliveryFilter, Verdict};
use super::queue::{Outbound, RecoveryFrame, SharedFrame};
use super::snapshot::history_frame;
use crate::stats::Stats;

/// How long a resync may take (waiting for the bus to be back, then reading the snapshot,
/// retried) before the socket is closed with 1011 so that its client reconnects.
pub(super) const RESYNC_BUDGET: Duration = Duration::from_secs(30);
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
    /// Live frames held while a resync runs, at most this many (then the socket is slow).
    pub max_held: usize,
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
    /// The node is shutting down: close with 1012.
    Shutdown,
    /// The peer is gone or the queue closed: nothing to say.
    Gone,
    /// A close frame was written (asked for through the queue, or after a failed resync).
    Closed,
}

/// What handling one queue item did.
enum Handled {
    /// A frame was fed to the sink (to be flushed).
    Wrote,
    /// Nothing to write (deduplicated, held for a resync, a resync started).
    Nothing,
    /// The writer must stop.
    End(End),
}

/// A sink operation that may have to wait for the peer.
enum Op {
    Feed(Message),
    Flush,
}

/// A snapshot read after the session was confirmed on the bus connection of that epoch;
/// `None` when none could be read within [`RESYNC_BUDGET`].
type Resynced = Option<(Epoch, Conversation)>;

/// A resync under way, and what it must still cover.
struct Resync {
    task: Pin<Box<dyn Future<Output = Resynced> + Send>>,
    /// The latest bus connection lost since it started: its snapshot must come from a later
    /// one, or it starts again.
    lost: Option<Epoch>,
    /// Live frames received meanwhile, in order.
    held: VecDeque<Arc<SharedFrame>>,
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
        let mut resync: Option<Resync> = None;
        // Frames are fed to the socket as they come and flushed once the queue runs dry, so a
        // burst goes out in few writes; nothing fed ever waits for a later frame to be flushed.
        let mut unflushed = false;
        loop {
            if unflushed && self.queue.is_empty() {
                if self.unless_slow(Op::Flush).await.is_err() {
                    return if slow.is_cancelled() {
                        End::Slow
                    } else {
                        End::Gone
                    };
                }
                unflushed = false;
            }
            // The hot path: a frame is waiting and no resync runs. Taken without `select!`,
            // whose cancellation futures cost more than the rest of a frame's handling.
            let ready = match resync {
                Some(_) => None,
                None => match self.queue.try_recv() {
                    Ok(item) => Some(item),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => return End::Gone,
                },
            };
            let item = if let Some(item) = ready {
                if slow.is_cancelled() {
                    return End::Slow;
                }
                if shutdown.is_cancelled() {
                    return End::Shutdown;
                }
                item
            } else {
                let pending = async {
                    match resync.as_mut() {
                        Some(r) => (&mut r.task).await,
                        None => std::future::pending().await,
                    }
                };
                let item = tokio::select! {
                    biased;
                    () = slow.cancelled() => return End::Slow,
                    () = shutdown.cancelled() => return End::Shutdown,
                    done = pending => {
                        let Some(r) = resync.take() else { continue };
                        match Box::pin(self.finish_resync(r, done, &mut resync)).await {
                            Handled::Wrote => unflushed = true,
                            Handled::Nothing => {}
                            Handled::End(end) => return end,
                        }
                        continue;
                    }
                    item = self.queue.recv() => item,
                };
                let Some(item) = item else {
                    return End::Gone;
                };
                item
            };
            match self.handle(item, &mut resync).await {
                Handled::Wrote => unflushed = true,
                Handled::Nothing => {}
                Handled::End(end) => return end,
            }
        }
    }

    /// Acts on one item of the queue: writes what it says to write (not flushed yet).
    async fn handle(&mut self, item: Outbound, resync: &mut Option<Resync>) -> Handled {
        let message = match item {
            Outbound::Close { code, reason } => {
                self.close(code, reason).await;
                return Handled::End(End::Closed);
            }
            Outbound::Live(frame) => {
                if resync
                    .as_ref()
                    .is_some_and(|r| r.held.len() >= self.max_held)
                {
                    self.stats.slow_consumers.increment(1);
                    return Handled::End(End::Slow);
                }
                self.live(frame, resync)
            }
            Outbound::Local(text) => Some(Message::Text(text)),
            Outbound::Recovered(frame) => {
                let RecoveryFrame {
                    text,
                    message_id,
                    delivered,
                } = *frame;
                if let Some(what) = delivered {
                    self.filter.note_recovered(&message_id, what);
                }
                Some(Message::Text(text))
            }
            Outbound::Resync { lost } => {
                match resync.as_mut() {
                    Some(r) => r.lost = r.lost.max(Some(lost)),
                    // A snapshot read after a later connection was confirmed covers it.
                    None if lost < self.synced => {}
                    None => *resync = Some(self.start_resync()),
                }
                None
            }
        };
        let Some(message) = message else {
            return Handled::Nothing;
        };
        match self.unless_slow(Op::Feed(message)).await {
            Ok(()) => {
                self.stats.frames_sent.increment(1);
                Handled::Wrote
            }
            Err(()) if self.slow.is_cancelled() => Handled::End(End::Slow),
            Err(()) => Handled::End(End::Gone),
        }
    }

    /// Feeds or flushes the sink; `Err` when the socket is found slow meanwhile or the peer
    /// is gone. Most of the time the sink is ready and the operation completes at once; only
    /// when it must wait does it also watch the slow token.
    async fn unless_slow(&mut self, op: Op) -> Result<(), ()> {
        use futures_util::FutureExt;
        let slow = self.slow.clone();
        let mut pending = match op {
            Op::Feed(message) => self.sink.feed(message).left_future(),
            Op::Flush => self.sink.flush().right_future(),
        };
        if let Some(done) = (&mut pending).now_or_never() {
            return done.map_err(|_| ());
        }
        tokio::select! {
            biased;
            () = slow.cancelled() => Err(()),
            done = pending => done.map_err(|_| ()),
        }
    }

    /// What to write for a live frame: nothing while a resync runs (it is held for after the
    /// snapshot); a frame that skips ahead starts one.
    fn live(&mut self, frame: Arc<SharedFrame>, resync: &mut Option<Resync>) -> Option<Message> {
        if let Some(r) = resync.as_mut() {
            r.held.push_back(frame);
            return None;
        }
        match self.filter.admit(&frame.meta) {
            Verdict::Send => {
                if let LiveFrame::Chunk { published, .. } = frame.meta {
                    self.stats.chunk_delivered(published);
                }
                Some(Message::Text(frame.text.clone()))
            }
            Verdict::Duplicate => {
                self.stats.frames_deduplicated.increment(1);
                None
            }
            Verdict::Gap => {
                // Frames before it never arrived: the stored state has them (and this one).
                warn!(session_id = %self.session, "a live frame skipped ahead; resyncing");
                self.stats.gaps_resynced.increment(1);
                *resync = Some(self.start_resync());
                None
            }
        }
    }

    /// Starts waiting for the session to be on the bus, then reading a snapshot, retried
    /// with backoff, for at most [`RESYNC_BUDGET`].
    fn start_resync(&self) -> Resync {
        self.stats.resyncs.increment(1);
        let (bus, backend, session) =
            (self.bus.clone(), self.backend.clone(), self.session.clone());
        let task = async move {
            let attempts = async {
                let mut pause = RESYNC_RETRY_MIN;
                loop {
                    let epoch = match bus.confirmed(&session).await {
                        Ok(epoch) => epoch,
                        Err(e) => {
                            debug!(session_id = %session, cause = %e, "resync: not on the bus");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(RESYNC_RETRY_MAX);
                            continue;
                        }
                    };
                    match backend.conversation(&session).await {
                        Ok(conversation) => return (epoch, conversation),
                        Err(e) => {
                            debug!(session_id = %session, cause = %e, "resync snapshot failed; retrying");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(RESYNC_RETRY_MAX);
                        }
                    }
                }
            };
            tokio::time::timeout(RESYNC_BUDGET, attempts).await.ok()
        };
        Resync {
            task: Box::pin(task),
            lost: None,
            held: VecDeque::new(),
        }
    }

    /// A resync ended: the `history` frame to send and the frames held meanwhile, or a new
    /// resync (still holding them) when a connection was lost after this one's snapshot was
    /// confirmed; `Err` when it ran out of time.
    #[allow(clippy::type_complexity)]
    fn resynced(
        &mut self,
        r: Resync,
        done: Resynced,
    ) -> Result<(Message, VecDeque<Arc<SharedFrame>>, Option<Resync>), ()> {
        let Some((epoch, conversation)) = done else {
            return Err(());
        };
        let (text, filter) = history_frame(&self.session, conversation);
        self.filter = filter;
        self.synced = epoch;
        let again = r
            .lost
            .filter(|lost| *lost >= epoch)
            .map(|_| self.start_resync());
        Ok((Message::Text(text), r.held, again))
    }

    /// Sends what a finished resync brought (the `history` frame, then the frames held
    /// meanwhile through the new filter), or closes with 1011 when it ran out of time. Boxed
    /// by the caller: rare, and its state would otherwise grow every socket's future.
    async fn finish_resync(
        &mut self,
        r: Resync,
        done: Resynced,
        resync: &mut Option<Resync>,
    ) -> Handled {
        let Ok((history, held, again)) = self.resynced(r, done) else {
            self.give_up().await;
            return Handled::End(End::Closed);
        };
        *resync = again;
        if self.feed(history).await.is_err() {
            return Handled::End(End::Gone);
        }
        for frame in held {
            if let Some(message) = self.live(frame, resync)
                && self.feed(message).await.is_err()
            {
                return Handled::End(End::Gone);
            }
        }
        Handled::Wrote
    }

    /// Feeds a frame the writer made itself (after a resync), counted as sent.
    async fn feed(&mut self, message: Message) -> Result<(), ()> {
        self.sink.feed(message).await.map_err(|_| ())?;
        self.stats.frames_sent.increment(1);
        Ok(())
    }

    async fn give_up(&mut self) {
        warn!(session_id = %self.session, "no resync within {RESYNC_BUDGET:?}; closing (1011)");
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
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }));
        let _ = self.sink.send(frame).await;
    }
}
