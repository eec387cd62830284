//! The node's registry of local sockets per session, and the fan-out of bus frames to them.
//!
//! The bus hands every frame to [`Hub::deliver`], on the bus's reader task. The hub reads the
//! few fields deduplication needs once per frame, then offers the shared frame to the queue of
//! each local socket of the session ([`SocketQueue::offer`], which never waits): a socket that
//! cannot keep up is closed as a slow consumer, and the others are not delayed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::ws::Utf8Bytes;
use bus::{Bus, Deliver, Epoch};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use protocol::SessionId;
use protocol::frames::peek_live_frame;
use tracing::warn;

use super::queue::{Outbound, SharedFrame, SocketQueue};
use crate::stats::Stats;

/// One local socket as the hub sees it.
struct LocalSocket {
    id: u64,
    queue: SocketQueue,
}

/// Local sockets per session. One per node, shared by every socket task and the bus.
pub struct Hub {
    /// Session → its local sockets. Written by [`Membership`] (join/leave); read per frame.
    sessions: Mutex<HashMap<SessionId, Vec<LocalSocket>>>,
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

    /// The sessions with at least one local socket.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.lock().keys().cloned().collect()
    }

    /// Whether this node has a socket of `session`.
    pub fn serves(&self, session: &SessionId) -> bool {
        self.lock().contains_key(session)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Vec<LocalSocket>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remove(&self, session: &SessionId, id: u64) {
        let mut sessions = self.lock();
        if let Some(sockets) = sessions.get_mut(session) {
            sockets.retain(|s| s.id != id);
            if sockets.is_empty() {
                sessions.remove(session);
                self.stats.sessions_subscribed.decrement(1.0);
            }
        }
    }

    /// Offers an item to every socket of `session` (made once per socket by `make`).
    fn offer(&self, session: &str, mut make: impl FnMut() -> Outbound) {
        let sessions = self.lock();
        if let Some(sockets) = sessions.get(session) {
            for socket in sockets {
                socket.queue.offer(make());
            }
        }
    }
}

impl Deliver for Hub {
    fn deliver(&self, session: &str, payload: Bytes) {
        self.stats.frames_received.increment(1);
        let Some(meta) = peek_live_frame(&payload) else {
            warn!(
                session_id = session,
                "dropping a published frame that is not a JSON frame"
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

    fn connection_lost(&self, epoch: Epoch, sessions: Vec<SessionId>) {
        for session in sessions {
            self.offer(session.as_str(), || Outbound::Resync { lost: epoch });
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
    /// returned future resolves, with the bus connection's epoch, once the node's subscription
    /// is confirmed; frames published from then on reach `queue`.
    pub fn join(
        hub: &Arc<Hub>,
        bus: &Arc<dyn Bus>,
        session: &SessionId,
        queue: SocketQueue,
    ) -> (Membership, BoxFuture<'static, bus::Result<Epoch>>) {
        let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
        let mut sessions = hub.lock();
        let sockets = sessions.entry(session.clone()).or_default();
        if sockets.is_empty() {
            hub.stats.sessions_subscribed.increment(1.0);
        }
        sockets.push(LocalSocket { id, queue });
        drop(sessions);
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
        self.hub.remove(&self.session, self.id);
        self.bus.unsubscribe(&self.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::recorded::Recorded;
    use bus::MemoryBus;
    use protocol::{ChatMessage, MessageId, ServerFrame, UserId};

    fn sid() -> SessionId {
        SessionId::parse("s").unwrap()
    }

    fn chunk_frame(index: u32) -> Bytes {
        let m = ChatMessage::started_answer(
            MessageId::parse("m").unwrap(),
            sid(),
            UserId::parse("u").unwrap(),
            0,
        );
        Bytes::from(
            ServerFrame::Message {
                data: m.chunk_of(index, "w"),
            }
            .to_json(),
        )
    }

    fn setup() -> (Arc<Hub>, Arc<MemoryBus>, Recorded) {
        let (stats, recorded) = Recorded::stats();
        let hub = Arc::new(Hub::new(Arc::new(stats)));
        let bus = Arc::new(MemoryBus::new(hub.clone()));
        (hub, bus, recorded)
    }

    /// A full queue marks only that socket slow; the others of the session keep receiving.
    #[tokio::test]
    async fn a_full_queue_closes_only_that_socket() {
        let (hub, memory, recorded) = setup();
        let bus: Arc<dyn Bus> = memory.clone();
        let (slow, _slow_rx) = SocketQueue::new(2, sid(), hub.stats.clone());
        let (fast, mut fast_rx) = SocketQueue::new(100, sid(), hub.stats.clone());
        let (_a, sub_a) = Membership::join(&hub, &bus, &sid(), slow.clone());
        let (_b, sub_b) = Membership::join(&hub, &bus, &sid(), fast.clone());
        sub_a.await.unwrap();
        sub_b.await.unwrap();
        for i in 0..10 {
            memory.publish(&sid(), chunk_frame(i));
        }
        assert!(slow.slow().is_cancelled());
        assert!(!fast.slow().is_cancelled());
        assert_eq!(recorded.value("gateway_slow_consumers_total"), 1);
        assert_eq!(recorded.value("gateway_sessions_subscribed"), 1);
        let mut got = 0;
        while fast_rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 10);
    }

    /// Leaving removes the socket and drops its subscription reference.
    #[tokio::test]
    async fn dropping_the_membership_leaves_hub_and_bus() {
        let (hub, memory, _) = setup();
        let bus: Arc<dyn Bus> = memory.clone();
        let (queue, _rx) = SocketQueue::new(4, sid(), hub.stats.clone());
        let (m1, _) = Membership::join(&hub, &bus, &sid(), queue.clone());
        let (m2, _) = Membership::join(&hub, &bus, &sid(), queue);
        assert_eq!(hub.session_count(), 1);
        drop(m1);
        assert_eq!(memory.subscribed(), vec![sid()]);
        drop(m2);
        assert_eq!(hub.session_count(), 0);
        assert!(memory.subscribed().is_empty());
    }

    /// A lost bus connection makes every socket of its sessions resync.
    #[tokio::test]
    async fn a_lost_connection_asks_each_socket_to_resync() {
        let (hub, memory, _) = setup();
        let bus: Arc<dyn Bus> = memory.clone();
        let (queue, mut rx) = SocketQueue::new(4, sid(), hub.stats.clone());
        let (_m, _) = Membership::join(&hub, &bus, &sid(), queue);
        memory.lose_connection();
        assert!(matches!(rx.try_recv(), Ok(Outbound::Resync { lost: 1 })));
    }
}
