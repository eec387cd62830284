//! The receiving side of the cross-node stream: the [`Bus`] trait and its implementations.
//!
//! Frames are **published** by `redis-state`'s scripts, never here: a chunk must be appended to
//! its log and published in one atomic step (the exactly-once guarantee rests on it), so the
//! PUBLISH lives inside the same Lua script as the write. The bus is the other half: it
//! **delivers** to this node every frame published on the sessions it subscribes.
//!
//! The bus knows nothing about sockets. A node hands it one [`Deliver`] sink (the gateway's hub)
//! and asks it to subscribe or unsubscribe sessions; the bus calls the sink for every frame
//! published on a subscribed session. Which local sockets want the frame is the sink's business.
//!
//! # Layout
//! - [`RedisBus`] (`redis_bus.rs`): one shared Redis pub/sub connection per node, read on a
//!   thread of its own, with reference-counted SUBSCRIBE/UNSUBSCRIBE per session channel,
//!   reconnecting by itself.
//! - [`ClusterBus`] (`cluster_bus.rs`): the same on a Redis Cluster, with sharded pub/sub
//!   (`SSUBSCRIBE` on the shard that owns each session's slot), through the `redis` crate's
//!   cluster connection, reporting the sessions a lost node or a moved slot may have cost.
//! - `commands.rs`: what the two Redis buses share: the commands their `Bus` calls send to the
//!   task that owns the subscriptions.
//! - [`MemoryBus`] (`memory_bus.rs`): the same contract inside one process, for unit tests;
//!   its [`MemoryBus::publish`] stands in for the scripts' PUBLISH.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use protocol::SessionId;

mod cluster_bus;
mod commands;
mod memory_bus;
mod redis_bus;

pub use cluster_bus::ClusterBus;
pub use memory_bus::MemoryBus;
pub use redis_bus::RedisBus;

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("starting the bus thread: {0}")]
    Start(std::io::Error),
    #[error("the bus has shut down")]
    Closed,
    #[error("the session is not subscribed")]
    NotSubscribed,
}

pub type Result<T> = std::result::Result<T, Error>;

/// A span of a bus's life between two losses: 1 at first, one more after each loss reported
/// (for [`RedisBus`], each reconnection; for [`ClusterBus`], each lost node connection or moved
/// channel). A socket whose snapshot was read after its session was confirmed in epoch `e` has
/// missed nothing that losses of epochs before `e` cost.
pub type Epoch = u64;

/// Where the bus hands the frames it receives.
pub trait Deliver: Send + Sync + 'static {
    /// One frame published on the channel of `session` (the id of a session this node
    /// subscribed). Called from the bus's reader task, in publish order per session; it must
    /// not block or await.
    fn deliver(&self, session: &str, payload: Bytes);

    /// The bus lost connection `epoch`, on which `sessions` were subscribed: frames published
    /// on them from then until they are confirmed on a later connection are gone, and the
    /// receiver must fill the gap from the stored state once [`Bus::confirmed`] says so. Called
    /// after the last frame of connection `epoch` was delivered and before the first frame of
    /// the next one, so whatever the receiver queues here comes between the two.
    fn connection_lost(&self, epoch: Epoch, sessions: Vec<SessionId>);
}

/// Delivery to this node of the frames published on the sessions it subscribes.
///
/// Guarantees: **at most once**, in publish order per session, for every frame published after
/// the subscription was confirmed. Nothing is stored: a frame published while a node is not
/// subscribed is gone for that node, which is why every frame that matters is written to Redis
/// (the chunk log, history) in the same atomic step as its publish (`redis-state`), and why a
/// new subscriber reads that stored state only *after* its subscription is confirmed. A lost
/// connection is reported ([`Deliver::connection_lost`]) before anything of the next one is
/// delivered.
pub trait Bus: Send + Sync + 'static {
    /// Takes one reference on `session`'s channel. The reference is taken when this call
    /// returns (not when the future is polled); the future resolves, with the connection's
    /// epoch, once the node is subscribed and every frame published from then on will be
    /// delivered. Each call must be matched by exactly one [`Bus::unsubscribe`], whether or
    /// not the future was awaited.
    fn subscribe(&self, session: &SessionId) -> BoxFuture<'static, Result<Epoch>>;

    /// Drops one reference; the node unsubscribes when the last one goes. Never blocks.
    fn unsubscribe(&self, session: &SessionId);

    /// Resolves, with the connection's epoch, once `session` is subscribed on the bus's
    /// current connection (at once when it is); frames published from then on will be
    /// delivered. The caller must hold a reference on `session` ([`Error::NotSubscribed`]
    /// otherwise).
    fn confirmed(&self, session: &SessionId) -> BoxFuture<'static, Result<Epoch>>;
}
