//! The node's WebSockets: the hub that fans bus frames out to them, and each one's life, the
//! handshake that makes delivery exactly-once, then a reader and a single writer joined by
//! `select!`.
//!
//! Handshake, in this order (docs/PROTOCOL.md explains why):
//! 0. when the node requires a token and the upgrade carried none, the first frame must be a
//!    valid `auth` (within 5 s, else close 4401) of a user who may use the session (else 4403)
//!    and has a socket to spare (else 4429); nothing of the session is sent before;
//! 1. join the hub (the socket's queue starts collecting frames) and subscribe the session,
//!    waiting for Redis to confirm;
//! 2. send `welcome`;
//! 3. read a snapshot (history + active answer + chunk log) in one atomic step and send it as
//!    `history`;
//! 4. hand the socket to the writer, whose filter drops every queued or later frame the
//!    snapshot already contained.
//!
//! The loop is generic over the socket's `Sink`/`Stream` halves and over the [`Backend`] it asks
//! for snapshots, chats, cancels and recoveries, so `tests.rs` drives it with channels.
//!
//! # Layout
//! - `hub.rs`: [`Hub`], local sockets per session, fed by the bus; a socket's place in it is
//!   its [`Membership`].
//! - `queue.rs`: what the writer receives, and the one rule for offering it ([`SocketQueue`]).
//! - `snapshot.rs`: the `history` frame and the filter that matches it.
//! - `reader.rs`: client frames in; `writer.rs`: the single writer; `filter.rs`: what makes
//!   delivery exactly-once.
//! - `backend.rs`: [`Backend`], what a socket needs from the node, and [`NodeBackend`].
//! - `limits.rs`: [`UserSockets`], open sockets per user across the cluster.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bus::Bus;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use protocol::{ClientFrame, ErrorCode, ServerFrame, SessionId, UserId};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::stats::Stats;

mod backend;
mod filter;
mod hub;
mod limits;
mod queue;
mod reader;
mod snapshot;
#[cfg(test)]
mod tests;
mod writer;

pub use backend::{Backend, NodeBackend, NodeServices};
pub use filter::DeliveryFilter;
pub use hub::{Hub, Membership};
pub use limits::{SocketPass, TooManySockets, UserSockets};
pub use queue::{Outbound, Recovered, SocketQueue};
pub use reader::ReadError;

/// How long the handshake waits for Redis (subscription and snapshot).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a socket that must authenticate has to send its `auth` frame.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing socket gets to take its close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a socket closed for a frame too big stays connected after its 1009: the client may
/// still be writing that frame, which is never read, and dropping the connection under it
/// would reset it before the client reads the close frame.
const TOO_BIG_LINGER: Duration = Duration::from_secs(1);
/// How long a slow consumer gets to take its 1013: its kernel buffers are full, so the close
/// frame only goes out once it reads again. It has already left the hub meanwhile.
const SLOW_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Close codes this server uses.
pub mod close_code {
    /// The node is draining for a restart (SIGTERM): reconnect at once, without backoff;
    /// NGINX sends the new socket to another node.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Redis could not be reached during the handshake.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The client sent a frame above the hard limit (1 MiB).
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The socket fell too far behind (its queue filled): reconnect and resume.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// No valid `auth` frame first (within 5 s), or its token was refused.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The session belongs to another user.
    pub const FORBIDDEN: u16 = 4403;
    /// The user holds the most sockets allowed (`MAX_SOCKETS_PER_USER`).
    pub const TOO_MANY_SOCKETS: u16 = 4429;
}

/// Who a socket belongs to, as far as the upgrade could tell.
pub enum Identity {
    /// Known before the upgrade (a token in the query, or dev mode's `user_id`), with the
    /// socket's place among the user's sockets.
    Known { user: UserId, pass: SocketPass },
    /// The node requires a token and the upgrade had none: the first frame must be `auth`.
    AwaitAuth,
}

/// Everything a socket needs from its node. Cheap to clone.
#[derive(Clone)]
pub struct SocketEnv<B> {
    /// This node's id, for `welcome`.
    pub node_id: Arc<str>,
    /// Local sockets per session; the bus delivers into it.
    pub hub: Arc<Hub>,
    /// Subscriptions of this node.
    pub bus: Arc<dyn Bus>,
    /// Snapshots, chats, cancels, recoveries.
    pub backend: B,
    /// `STREAM_MAX_PENDING_CHUNKS`: frames queued for one socket before it is a slow consumer.
    pub max_pending_frames: usize,
    /// `WS_MAX_MESSAGE_BYTES`: larger client frames get a `TOO_LARGE` error.
    pub max_message_bytes: usize,
    pub stats: Arc<Stats>,
    /// Cancelled when the node drains (after it turned not-ready): every socket closes with
    /// 1012.
    pub shutdown: CancellationToken,
}

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("subscribing the session failed: {0}")]
    Subscribe(#[from] bus::Error),
    #[error("reading the snapshot failed: {0}")]
    Snapshot(#[from] history::Error),
    #[error("Redis did not answer within {HANDSHAKE_TIMEOUT:?}")]
    TimedOut,
    /// The client went away; there is nobody to tell.
    #[error("the client left: {0}")]
    ClientGone(String),
}

/// Serves one socket of `session`, given as its `sink` and `stream` halves, until it closes,
/// the node shuts down or it falls behind.
pub async fn serve<B, S, R>(
    env: SocketEnv<B>,
    mut sink: S,
    mut stream: R,
    session: SessionId,
    identity: Identity,
) where
    B: Backend,
    S: Sink<Message> + Unpin,
    S::Error: Display,
    R: Stream<Item = Result<Message, ReadError>> + Unpin,
{
    let (user, _pass) = match identity {
        Identity::Known { user, pass } => (user, pass),
        Identity::AwaitAuth => match authenticate(&env, &mut stream, &session).await {
            Ok(known) => known,
            Err((code, reason)) => {
                debug!(session_id = %session, reason, "socket refused before its handshake");
                close(&mut sink, code, reason, CLOSE_TIMEOUT).await;
                return;
            }
        },
    };
    let (queue, rx) = SocketQueue::new(env.max_pending_frames, session.clone(), env.stats.clone());
    let (membership, subscribed) = Membership::join(&env.hub, &env.bus, &session, queue.clone());

    let handshake = async {
        let epoch = subscribed.await?;
        send(&mut sink, &welcome(&env, &session)).await?;
        let conversation = env.backend.conversation(&session).await?;
        let (history, filter) = snapshot::history_frame(&session, conversation);
        sink.send(Message::Text(history))
            .await
            .map_err(|e| HandshakeError::ClientGone(e.to_string()))?;
        Ok::<_, HandshakeError>((filter, epoch))
    };
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or(Err(HandshakeError::TimedOut));
    let (filter, synced) = match outcome {
        Ok(done) => done,
        Err(HandshakeError::ClientGone(cause)) => {
            debug!(session_id = %session, %cause, "client left during the handshake");
            return;
        }
        Err(cause) => {
            warn!(session_id = %session, %cause, "socket handshake failed; closing it");
            let frame = ServerFrame::error(
                ErrorCode::Unavailable,
                "storage is unavailable; reconnect later",
            );
            let _ = send(&mut sink, &frame).await;
            close(
                &mut sink,
                close_code::INTERNAL_ERROR,
                "storage unavailable",
                CLOSE_TIMEOUT,
            )
            .await;
            return;
        }
    };

    env.stats.sockets_total.increment(1);
    env.stats.sockets_open.increment(1.0);
    env.backend.serving(&session);
    debug!(session_id = %session, user_id = %user, "socket open");
    let writer = writer::Writer {
        sink,
        queue: rx,
        filter,
        synced,
        max_held: env.max_pending_frames,
        slow: queue.slow().clone(),
        shutdown: env.shutdown.clone(),
        backend: env.backend.clone(),
        bus: env.bus.clone(),
        session: session.clone(),
        stats: env.stats.clone(),
    };
    let reader = reader::Reader {
        backend: env.backend.clone(),
        session: session.clone(),
        user,
        queue: queue.clone(),
        max_message_bytes: env.max_message_bytes,
        stats: env.stats.clone(),
    };
    let writer = writer.run();
    tokio::pin!(writer);
    let ended = tokio::select! {
        ended = &mut writer => Some(ended),
        end = reader.run(stream) => match end {
            reader::ReaderEnd::Gone => None,
            // The writer says so, after what was queued before.
            reader::ReaderEnd::TooBig => {
                queue.offer(Outbound::Close {
                    code: close_code::MESSAGE_TOO_BIG,
                    reason: "message too big",
                });
                let ended = tokio::time::timeout(CLOSE_TIMEOUT, &mut writer).await.ok();
                tokio::time::sleep(TOO_BIG_LINGER).await;
                ended
            }
        },
    };
    drop(membership);
    env.stats.sockets_open.decrement(1.0);
    if !env.hub.serves(&session) {
        env.backend.stopped_serving(&session);
    }
    match ended {
        Some((mut sink, writer::End::Slow)) => {
            close(
                &mut sink,
                close_code::TRY_AGAIN_LATER,
                "slow consumer",
                SLOW_CLOSE_TIMEOUT,
            )
            .await;
        }
        Some((mut sink, writer::End::Shutdown)) => {
            close(
                &mut sink,
                close_code::SERVICE_RESTART,
                "service restart",
                CLOSE_TIMEOUT,
            )
            .await;
        }
        Some((_, writer::End::Gone | writer::End::Closed)) | None => {}
    }
    debug!(session_id = %session, "socket closed");
}

/// The first frame of a socket that must authenticate: a valid `auth`, of a user who may use
/// `session` and has a socket to spare. Otherwise the close code and reason to send.
async fn authenticate<B, R>(
    env: &SocketEnv<B>,
    stream: &mut R,
    session: &SessionId,
) -> Result<(UserId, SocketPass), (u16, &'static str)>
where
    B: Backend,
    R: Stream<Item = Result<Message, ReadError>> + Unpin,
{
    const UNAUTHORIZED: (u16, &str) = (close_code::UNAUTHORIZED, "unauthorized");
    let first = loop {
        match tokio::time::timeout(AUTH_TIMEOUT, stream.next()).await {
            Err(_) | Ok(None | Some(Err(_))) => return Err(UNAUTHORIZED),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(message))) => break message,
        }
    };
    let Message::Text(text) = first else {
        return Err(UNAUTHORIZED);
    };
    let Ok(ClientFrame::Auth { token }) = ClientFrame::parse(&text) else {
        return Err(UNAUTHORIZED);
    };
    let user = env.backend.verify(&token).map_err(|_| UNAUTHORIZED)?;
    match env.backend.may_use(&user, session).await {
        Ok(true) => {}
        Ok(false) => return Err((close_code::FORBIDDEN, "not your session")),
        Err(_) => return Err((close_code::INTERNAL_ERROR, "storage unavailable")),
    }
    let pass = env
        .backend
        .admit(&user)
        .await
        .map_err(|TooManySockets| (close_code::TOO_MANY_SOCKETS, "too many sockets"))?;
    Ok((user, pass))
}

fn welcome<B>(env: &SocketEnv<B>, session: &SessionId) -> ServerFrame {
    ServerFrame::Welcome {
        session_id: session.clone(),
        node_id: env.node_id.to_string(),
        timestamp: protocol::now_ms(),
    }
}

/// Sends one frame made by this node during the handshake.
async fn send<S>(sink: &mut S, frame: &ServerFrame) -> Result<(), HandshakeError>
where
    S: Sink<Message> + Unpin,
    S::Error: Display,
{
    sink.send(Message::Text(Utf8Bytes::from(frame.to_json())))
        .await
        .map_err(|e| HandshakeError::ClientGone(e.to_string()))
}

/// Sends a close frame, giving the peer `patience` to take it.
async fn close<S>(sink: &mut S, code: u16, reason: &'static str, patience: Duration)
where
    S: Sink<Message> + Unpin,
{
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let _ = tokio::time::timeout(patience, sink.send(frame)).await;
}
