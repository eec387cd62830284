//! A socket's queue: what its writer receives, and the one rule for offering it anything.
//!
//! Whoever has something for a socket (the hub fanning out a bus frame, the reader answering a
//! ping) offers it with [`SocketQueue::offer`], which never waits. A socket whose queue is full
//! has fallen too far behind: it is marked slow, and its writer closes it with 1013 so that the
//! client reconnects and resumes. One slow socket never delays another.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use bus::Epoch;
use protocol::{LiveFrame, MessageId, ServerFrame, SessionId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::stats::Stats;

/// A frame from the bus, shared by every socket it goes to.
#[derive(Debug)]
pub struct SharedFrame {
    /// The exact published text, forwarded as is.
    pub text: Utf8Bytes,
    /// What deduplication needs to know about it.
    pub meta: LiveFrame,
}

/// What a socket's writer receives.
#[derive(Debug)]
pub enum Outbound {
    /// A frame from the bus; passes the socket's delivery filter first.
    Live(Arc<SharedFrame>),
    /// A frame made for this socket alone (pong, error, accepted).
    Local(Utf8Bytes),
    /// A `recovery` frame; the filter learns what it delivered. Boxed because it is rare:
    /// every socket's queue is sized by its largest item.
    Recovered(Box<RecoveryFrame>),
    /// The bus lost connection `lost`: frames published meanwhile are gone; once the session
    /// is back on the bus, send a fresh snapshot (unless one was read since).
    Resync { lost: Epoch },
    /// Close the socket with this code (after what was queued before).
    Close { code: u16, reason: &'static str },
}

/// A `recovery` frame for one socket.
#[derive(Debug)]
pub struct RecoveryFrame {
    pub text: Utf8Bytes,
    pub message_id: MessageId,
    /// What it delivered of `message_id`, if anything.
    pub delivered: Option<Recovered>,
}

/// What a `recovery` frame delivered of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// Every chunk up to this index.
    UpTo(u32),
    /// The final message.
    Final,
}

/// The sending side of one socket's queue. Cheap to clone; the hub holds one, the reader
/// another.
#[derive(Clone)]
pub struct SocketQueue {
    tx: mpsc::Sender<Outbound>,
    /// Cancelled once the socket must close as a slow consumer; the writer watches it.
    slow: CancellationToken,
    /// For the log line of a slow consumer.
    session: SessionId,
    stats: Arc<Stats>,
}

impl SocketQueue {
    /// A queue of `capacity` items for a socket of `session`, and its receiving end (the
    /// writer's).
    pub fn new(
        capacity: usize,
        session: SessionId,
        stats: Arc<Stats>,
    ) -> (SocketQueue, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity);
        let queue = SocketQueue {
            tx,
            slow: CancellationToken::new(),
            session,
            stats,
        };
        (queue, rx)
    }

    /// Queues `item` without waiting. A full queue marks the socket slow (counted and logged
    /// once); a closed one means the socket is ending, and the item is dropped.
    pub fn offer(&self, item: Outbound) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.frames_dropped.increment(1);
                if !self.slow.is_cancelled() {
                    self.slow.cancel();
                    self.stats.slow_consumers.increment(1);
                    warn!(session_id = %self.session,
                        "socket queue full; closing it as a slow consumer");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Queues a frame made for this socket alone.
    pub fn local(&self, frame: &ServerFrame) {
        self.offer(Outbound::Local(Utf8Bytes::from(frame.to_json())));
    }

    /// Cancelled once the socket has been found slow.
    pub fn slow(&self) -> &CancellationToken {
        &self.slow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::recorded::Recorded;

    /// An idle socket's queue costs a block of 32 items up front: keep the item small.
    #[test]
    fn an_item_is_no_bigger_than_a_local_frame() {
        assert!(
            std::mem::size_of::<Outbound>() <= 40,
            "{}",
            std::mem::size_of::<Outbound>()
        );
    }

    /// A full queue marks the socket slow and counts it once, however many offers follow.
    #[test]
    fn a_full_queue_marks_the_socket_slow_once() {
        let (stats, recorded) = Recorded::stats();
        let (queue, mut rx) = SocketQueue::new(2, SessionId::parse("s").unwrap(), Arc::new(stats));
        for _ in 0..5 {
            queue.offer(Outbound::Resync { lost: 1 });
        }
        assert!(queue.slow().is_cancelled());
        assert_eq!(recorded.value("gateway_slow_consumers_total"), 1);
        assert_eq!(recorded.value("gateway_frames_dropped_total"), 3);
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "only what fitted was queued");
    }
}
