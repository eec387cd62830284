//! The `session:owner:{sid}` claim, kept off the socket's critical path: claimed when a socket
//! of the session opens here, released when the node's last one closes. Observability only.

use protocol::SessionId;
use tracing::debug;

use crate::AppState;

/// Claims (or renews) this node's ownership of `session` in the background.
pub(super) fn claim(app: &AppState, session: &SessionId) {
    let state = app.state.clone();
    let node = app.config.node_id.clone();
    let session = session.clone();
    tokio::spawn(async move {
        match state.claim_owner(&session, &node).await {
            Ok(owner) if owner != node => {
                debug!(session_id = %session, %owner, "session also served by another node");
            }
            Ok(_) => {}
            Err(e) => debug!(session_id = %session, cause = %e, "owner claim failed"),
        }
    });
}

/// Releases the claim once this node has no socket of `session` left.
pub(super) fn release_if_last(app: &AppState, session: &SessionId) {
    if app.hub.serves(session.as_str()) {
        return;
    }
    let state = app.state.clone();
    let node = app.config.node_id.clone();
    let session = session.clone();
    tokio::spawn(async move {
        if let Err(e) = state.release_owner(&session, &node).await {
            debug!(session_id = %session, cause = %e, "owner release failed");
        }
    });
}
