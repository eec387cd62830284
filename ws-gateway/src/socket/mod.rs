//! One WebSocket: the handshake that makes delivery exactly-once, then a reader and a single
//! writer joined by `select!`.
//!
//! Handshake, in this order (docs/PROTOCOL.md explains why):
//! 1. join the hub (the socket's queue starts collecting frames) and subscribe the session,
//!    waiting for Redis to confirm;
//! 2. send `welcome`;
//! 3. read a snapshot (history + active answer + chunk log) in one atomic step and send it as
//!    `history`;
//! 4. hand the socket to the writer, whose filter drops every queued or later frame the
//!    snapshot already contained.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use protocol::{ErrorCode, ServerFrame, SessionId, UserId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::AppState;
use crate::hub::{Membership, Outbound};
use crate::stats::Stats;

mod client;
mod filter;
mod owner;
mod writer;

pub use filter::DeliveryFilter;

/// How long the handshake waits for Redis (subscription and snapshot).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing socket gets to take its close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a slow consumer gets to take its 1013: its kernel buffers are full, so the close
/// frame only goes out once it reads again. It has already left the hub meanwhile.
const SLOW_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Close codes this server uses.
pub mod close_code {
    /// The node is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Redis could not be reached during the handshake.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The socket fell too far behind (its queue filled): reconnect and resume.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

type Sink = SplitSink<WebSocket, Message>;

/// Serves one socket of `session` until it closes, the node shuts down or it falls behind.
pub async fn serve(socket: WebSocket, app: AppState, session: SessionId, user: UserId) {
    let (mut sink, stream) = socket.split();
    let (queue, rx) = mpsc::channel(app.config.max_pending_frames);
    let slow = CancellationToken::new();
    let (membership, subscribed) =
        Membership::join(&app.hub, &app.bus, &session, queue.clone(), slow.clone());

    let handshake = async {
        subscribed.await.map_err(|e| e.to_string())?;
        send(&mut sink, &welcome(&app, &session)).await?;
        let (history, filter) = writer::history_frame(&app.history, &session)
            .await
            .map_err(|e| e.to_string())?;
        sink.send(Message::Text(history))
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(filter)
    };
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
    let filter = match outcome {
        Ok(filter) => filter,
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

    Stats::inc(&app.stats.sockets_total);
    Stats::inc(&app.stats.sockets_open);
    owner::claim(&app, &session);
    debug!(session_id = %session, user_id = %user, "socket open");
    let writer = writer::Writer {
        sink,
        queue: rx,
        filter,
        slow: slow.clone(),
        shutdown: app.shutdown.clone(),
        history: app.history.clone(),
        session: session.clone(),
        stats: app.stats.clone(),
    };
    let reader = client::Reader {
        app: app.clone(),
        session: session.clone(),
        user,
        queue,
        slow,
    };
    let ended = tokio::select! {
        ended = writer.run() => Some(ended),
        () = reader.run(stream) => None,
    };
    drop(membership);
    Stats::dec(&app.stats.sockets_open);
    owner::release_if_last(&app, &session);
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
                close_code::GOING_AWAY,
                "server shutting down",
                CLOSE_TIMEOUT,
            )
            .await;
        }
        Some((_, writer::End::Gone)) | None => {}
    }
    debug!(session_id = %session, "socket closed");
}

fn welcome(app: &AppState, session: &SessionId) -> ServerFrame {
    ServerFrame::Welcome {
        session_id: session.to_string(),
        node_id: app.config.node_id.clone(),
        timestamp: protocol::now_ms(),
    }
}

/// Sends one frame made by this node.
async fn send(sink: &mut Sink, frame: &ServerFrame) -> Result<(), String> {
    sink.send(Message::Text(Utf8Bytes::from(frame.to_json())))
        .await
        .map_err(|e| e.to_string())
}

/// Sends a close frame, giving the peer `patience` to take it.
async fn close(sink: &mut Sink, code: u16, reason: &'static str, patience: Duration) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let _ = tokio::time::timeout(patience, sink.send(frame)).await;
}

/// Queues a frame made for this socket alone; a full queue makes it a slow consumer.
fn send_local(
    queue: &mpsc::Sender<Outbound>,
    slow: &CancellationToken,
    stats: &Stats,
    item: Outbound,
) {
    match queue.try_send(item) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            if !slow.is_cancelled() {
                slow.cancel();
                Stats::inc(&stats.slow_consumers);
            }
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}
