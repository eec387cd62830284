//! The node's claims on the sessions it serves (`session:owner:{sid}`, observability only:
//! nothing reads them to decide delivery). A claim is taken when a session's first socket
//! opens here ([`crate::socket::Backend::serving`]), renewed by [`renew_claims`] every third of
//! its lifetime while the node still serves the session, and released when the last socket
//! leaves. A node that dies stops renewing, and its claims expire.

use std::sync::Arc;
use std::time::Duration;

use redis_state::ChatState;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::socket::Hub;

/// Renews the claims on every session `hub` serves until `shutdown`.
pub fn renew_claims(
    hub: Arc<Hub>,
    state: ChatState,
    node: Arc<str>,
    lifetime: Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(lifetime / 3);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let sessions = hub.sessions();
            if sessions.is_empty() {
                continue;
            }
            match state.claim_owners(&sessions, &node, lifetime).await {
                Ok(held) => debug!(sessions = sessions.len(), held, "session claims renewed"),
                Err(e) => debug!(cause = %e, "renewing session claims failed"),
            }
        }
    });
}
