//! [`UserSockets`]: how many sockets each user holds open, across every gateway, so that one
//! user cannot take a node's sockets. Each node counts its sockets in Redis (one entry per
//! socket, `user:sockets:{uid}`) and renews their entries while they live; a node that dies
//! stops renewing, and its entries expire within a minute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use protocol::UserId;
use redis_state::ChatState;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How long an entry counts without renewal.
const ENTRY_LIFETIME: Duration = Duration::from_secs(60);
/// How often this node renews its entries.
const RENEW_EVERY: Duration = Duration::from_secs(20);

/// A socket's place among its user's sockets; dropping it gives the place back.
pub struct SocketPass {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl SocketPass {
    /// A place that counts nothing (no limit, or a test).
    pub fn unlimited() -> Self {
        Self { release: None }
    }

    fn new(release: impl FnOnce() + Send + 'static) -> Self {
        Self {
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for SocketPass {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// The user already holds the most sockets allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySockets;

/// This node's count of open sockets per user. One per node.
pub struct UserSockets {
    state: ChatState,
    node_id: Arc<str>,
    /// `MAX_SOCKETS_PER_USER`; 0: no limit.
    max: u32,
    /// Source of this node's socket entry names.
    next: AtomicU64,
    /// This node's entries (member → user), renewed in Redis while they live.
    open: Mutex<HashMap<String, UserId>>,
}

impl UserSockets {
    /// Counts sockets against `max` per user, renewing this node's entries until `shutdown`.
    pub fn start(
        state: ChatState,
        node_id: Arc<str>,
        max: u32,
        shutdown: CancellationToken,
    ) -> Arc<UserSockets> {
        let sockets = Arc::new(UserSockets {
            state,
            node_id,
            max,
            next: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
        });
        if max > 0 {
            tokio::spawn(sockets.clone().renew(shutdown));
        }
        sockets
    }

    /// Takes a place for a socket of `user`, unless the user holds the most already. When
    /// Redis cannot be asked, the socket is let in (the handshake needs Redis anyway).
    pub async fn admit(self: &Arc<Self>, user: &UserId) -> Result<SocketPass, TooManySockets> {
        if self.max == 0 {
            return Ok(SocketPass::unlimited());
        }
        let member = format!(
            "{}:{}",
            self.node_id,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        match self
            .state
            .open_socket(user, &member, self.max, ENTRY_LIFETIME)
            .await
        {
            Ok(false) => return Err(TooManySockets),
            Ok(true) => {}
            Err(e) => {
                warn!(cause = %e, "sockets per user could not be counted; letting one in");
                return Ok(SocketPass::unlimited());
            }
        }
        self.lock().insert(member.clone(), user.clone());
        let this = self.clone();
        let user = user.clone();
        Ok(SocketPass::new(move || {
            this.lock().remove(&member);
            tokio::spawn(async move {
                if let Err(e) = this.state.close_socket(&user, &member).await {
                    debug!(cause = %e, "a socket's count will expire by itself");
                }
            });
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserId>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn renew(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(RENEW_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let entries: Vec<(UserId, String)> = self
                .lock()
                .iter()
                .map(|(member, user)| (user.clone(), member.clone()))
                .collect();
            if let Err(e) = self.state.renew_sockets(&entries, ENTRY_LIFETIME).await {
                debug!(cause = %e, "renewing socket counts failed; retrying");
            }
        }
    }
}
