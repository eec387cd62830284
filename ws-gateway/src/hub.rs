//! The node's registry of local sockets per session, and the fan-out of bus frames to them.
//!
//! The bus hands every frame to [`Hub::deliver`], on the bus's reader task. The hub reads the
//! few fields deduplication needs once per frame, then offers the shared frame to the bounded
//! queue of each local socket of the session with `try_send`: it never awaits a socket. A
//! socket whose queue is full is told to close (1013) and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::ws::Utf8Bytes;
use bus::{Bus, Deliver};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use protocol::frames::peek_live_frame;
use protocol::{LiveFrame, SessionId};
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

/// What a socket's writer task receives.
#[derive(Debug)]
pub enum Outbound {
    /// A frame from the bus; passes the socket's delivery filter first.
    Live(Arc<SharedFrame>),
    /// A frame made for this socket alone (pong, error).
    Local(Utf8Bytes),
    /// A `recovery` frame; the filter learns what it delivered of `message_id`.
    Recovered {
        text: Utf8Bytes,
        message_id: String,
        delivered: Option<Recovered>,
    },
    /// The bus reconnected: frames may have been lost; resend a fresh snapshot.
    Resync,
}

/// What a `recovery` frame delivered of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// Every chunk up to this index.
    UpTo(u32),
    /// The final message.
    Final,
}

/// One local socket as the hub sees it.
struct LocalSocket {
    id: u64,
    queue: mpsc::Sender<Outbound>,
    /// Cancelled to make the socket close as a slow consumer.
    slow: CancellationToken,
}

/// Local sockets per session. One per node, shared by every socket task and the bus.
#[derive(Default)]
pub struct Hub {
    /// Session id → its local sockets. Written by [`Membership`] (join/leave); read per frame.
    sessions: Mutex<HashMap<String, Vec<LocalSocket>>>,
    /// Source of socket ids.
    next_id: AtomicU64,
    pub stats: Arc<Stats>,
}

impl Hub {
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            sessions: Mutex::default(),
            next_id: AtomicU64::new(1),
            stats,
        }
    }

    /// Number of sessions with at least one local socket.
    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    /// Whether this node has a socket of `session`.
    pub fn serves(&self, session: &str) -> bool {
        self.lock().contains_key(session)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<LocalSocket>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remove(&self, session: &str, id: u64) {
        let mut sessions = self.lock();
        if let Some(sockets) = sessions.get_mut(session) {
            sockets.retain(|s| s.id != id);
            if sockets.is_empty() {
                sessions.remove(session);
            }
        }
    }

    /// Offers `item` to every socket of `session` (made once per socket by `make`).
    fn offer(&self, session: &str, mut make: impl FnMut() -> Outbound) {
        let sessions = self.lock();
        let Some(sockets) = sessions.get(session) else {
            return;
        };
        for socket in sockets {
            match socket.queue.try_send(make()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !socket.slow.is_cancelled() {
                        socket.slow.cancel();
                        Stats::inc(&self.stats.slow_consumers);
                        warn!(
                            session_id = session,
                            socket = socket.id,
                            "socket queue full; closing it as a slow consumer"
                        );
                    }
                }
                // The socket is ending; its membership removes it.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

impl Deliver for Hub {
    fn deliver(&self, session: &str, payload: Bytes) {
        Stats::inc(&self.stats.frames_received);
        let Some(meta) = peek_live_frame(&payload) else {
            warn!(
                session_id = session,
                "dropping a published frame that is not JSON"
            );
            return;
        };
        let Ok(text) = Utf8Bytes::try_from(payload) else {
            warn!(
                session_id = session,
                "dropping a published frame that is not UTF-8"
            );
            return;
        };
        let frame = Arc::new(SharedFrame { text, meta });
        self.offer(session, || Outbound::Live(frame.clone()));
    }

    fn resubscribed(&self, sessions: Vec<String>) {
        for session in sessions {
            self.offer(&session, || Outbound::Resync);
        }
    }
}

/// A socket's place in the hub and its reference on the session's bus subscription. Dropping
/// it leaves both, whatever way the socket ended.
pub struct Membership {
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    session: SessionId,
    id: u64,
}

impl Membership {
    /// Registers a socket's queue for `session` and takes a subscription reference. The
    /// returned future resolves once the node's subscription is confirmed; frames published
    /// from then on reach `queue`.
    pub fn join(
        hub: &Arc<Hub>,
        bus: &Arc<dyn Bus>,
        session: &SessionId,
        queue: mpsc::Sender<Outbound>,
        slow: CancellationToken,
    ) -> (Membership, BoxFuture<'static, bus::Result<()>>) {
        let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
        hub.lock()
            .entry(session.as_str().to_owned())
            .or_default()
            .push(LocalSocket { id, queue, slow });
        let subscribed = bus.subscribe(session);
        let membership = Membership {
            hub: hub.clone(),
            bus: bus.clone(),
            session: session.clone(),
            id,
        };
        (membership, subscribed)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.remove(self.session.as_str(), self.id);
        self.bus.unsubscribe(&self.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::MemoryBus;
    use protocol::{ChatMessage, MessageStatus, Role, ServerFrame};

    fn chunk_frame(index: u32) -> Bytes {
        let m = ChatMessage {
            message_id: "m".into(),
            session_id: "s".into(),
            user_id: "u".into(),
            role: Role::Assistant,
            content: String::new(),
            timestamp: 0,
            is_complete: false,
            status: MessageStatus::Streaming,
            index: None,
            chunk: None,
        };
        Bytes::from(
            ServerFrame::Message {
                data: m.chunk_of(index, "w"),
            }
            .to_json(),
        )
    }

    fn setup() -> (Arc<Hub>, Arc<dyn Bus>) {
        let hub = Arc::new(Hub::new(Arc::default()));
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new(hub.clone()));
        (hub, bus)
    }

    /// A full queue marks only that socket slow; the others of the session keep receiving.
    #[tokio::test]
    async fn a_full_queue_closes_only_that_socket() {
        let (hub, bus) = setup();
        let s = SessionId::parse("s").unwrap();
        let (slow_tx, _slow_rx) = mpsc::channel(2);
        let (fast_tx, mut fast_rx) = mpsc::channel(100);
        let slow_flag = CancellationToken::new();
        let fast_flag = CancellationToken::new();
        let (_a, sub_a) = Membership::join(&hub, &bus, &s, slow_tx, slow_flag.clone());
        let (_b, sub_b) = Membership::join(&hub, &bus, &s, fast_tx, fast_flag.clone());
        sub_a.await.unwrap();
        sub_b.await.unwrap();
        for i in 0..10 {
            hub.deliver("s", chunk_frame(i));
        }
        assert!(slow_flag.is_cancelled());
        assert!(!fast_flag.is_cancelled());
        assert_eq!(hub.stats.slow_consumers.load(Ordering::Relaxed), 1);
        let mut got = 0;
        while fast_rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 10);
    }

    /// Leaving removes the socket and drops its subscription reference.
    #[tokio::test]
    async fn dropping_the_membership_leaves_hub_and_bus() {
        let hub = Arc::new(Hub::new(Arc::default()));
        let memory = Arc::new(MemoryBus::new(hub.clone()));
        let bus: Arc<dyn Bus> = memory.clone();
        let s = SessionId::parse("s").unwrap();
        let (tx, _rx) = mpsc::channel(4);
        let (m1, _) = Membership::join(&hub, &bus, &s, tx.clone(), CancellationToken::new());
        let (m2, _) = Membership::join(&hub, &bus, &s, tx, CancellationToken::new());
        assert_eq!(hub.session_count(), 1);
        drop(m1);
        assert_eq!(memory.subscribed(), vec!["s".to_owned()]);
        drop(m2);
        assert_eq!(hub.session_count(), 0);
        assert!(memory.subscribed().is_empty());
    }
}
