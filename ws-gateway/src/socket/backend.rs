//! [`Backend`]: everything a socket asks of the rest of the node, and [`NodeBackend`], the
//! answer of a running node (Redis, history, the AI nodes).
//!
//! The socket loop depends on this trait rather than on the node's handles, so that it runs
//! in unit tests without a network.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use auth::{AuthError, AuthMode};
use history::Conversation;
use node::Core;
use protocol::rest::{CancelOutcome, ChatAccepted, ChatRequest};
use protocol::{DomainEvent, MessageId, SessionId, UserId};
use redis_state::Recovery;
use tracing::debug;

use super::limits::{SocketPass, TooManySockets, UserSockets};
use crate::ai_client::ForwardError;
use crate::gate::ChatGate;
use runtime::trace::TraceParent;

/// What a socket needs from the node it lives on.
pub trait Backend: Clone + Send + Sync + 'static {
    /// The user `token` names (a socket's `auth` frame).
    fn verify(&self, token: &str) -> Result<UserId, AuthError>;

    /// Whether `user` may watch `session`: always, unless sessions are guarded by their owner
    /// (required mode) and it is another user's.
    fn may_use(
        &self,
        user: &UserId,
        session: &SessionId,
    ) -> impl Future<Output = Result<bool, history::Error>> + Send;

    /// A place among `user`'s open sockets, unless the user holds the most already.
    fn admit(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<SocketPass, TooManySockets>> + Send;

    /// The session's history and in-flight answer, as one consistent snapshot.
    fn conversation(
        &self,
        session: &SessionId,
    ) -> impl Future<Output = Result<Conversation, history::Error>> + Send;

    /// Forwards a chat to an AI node as part of `trace` (called inside the chat's span).
    fn chat(
        &self,
        request: ChatRequest,
        trace: TraceParent,
    ) -> impl Future<Output = Result<ChatAccepted, ForwardError>> + Send;

    /// Asks the producer of `message` to stop.
    fn cancel(
        &self,
        session: &SessionId,
        message: &MessageId,
    ) -> impl Future<Output = Result<CancelOutcome, redis_state::Error>> + Send;

    /// The chunks of `message` from `from_index` on, or how it ended.
    fn recover(
        &self,
        session: &SessionId,
        message: &MessageId,
        from_index: u32,
    ) -> impl Future<Output = Result<Recovery, redis_state::Error>> + Send;

    /// Sends a best-effort event (a recovery attempt) to Kafka, if configured. Never waits.
    fn emit(&self, event: DomainEvent);

    /// A socket of `session` opened here: claim (or renew) the node's ownership of it, in the
    /// background (observability only; never delays the socket).
    fn serving(&self, session: &SessionId);

    /// The node's last socket of `session` closed: release the claim, in the background.
    fn stopped_serving(&self, session: &SessionId);
}

/// The backend of a running gateway node: one pointer, since every socket's reader and
/// writer hold a copy for their whole life.
#[derive(Clone)]
pub struct NodeBackend(Arc<NodeServices>);

/// What a [`NodeBackend`] serves sockets with.
pub struct NodeServices {
    pub core: Core,
    pub gate: ChatGate,
    pub sockets: Arc<UserSockets>,
    /// Lifetime of the node's claim on a session it serves.
    pub owner_ttl: Duration,
}

impl NodeBackend {
    pub fn new(services: NodeServices) -> NodeBackend {
        NodeBackend(Arc::new(services))
    }
}

impl std::ops::Deref for NodeBackend {
    type Target = NodeServices;

    fn deref(&self) -> &NodeServices {
        &self.0
    }
}

impl Backend for NodeBackend {
    fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        self.core.auth.verify(token)
    }

    async fn may_use(&self, user: &UserId, session: &SessionId) -> Result<bool, history::Error> {
        if self.core.auth.mode() == AuthMode::Dev {
            return Ok(true);
        }
        let owner = self.core.history.owner(session).await?;
        Ok(owner.is_none_or(|owner| owner == *user))
    }

    async fn admit(&self, user: &UserId) -> Result<SocketPass, TooManySockets> {
        self.sockets.admit(user).await
    }

    async fn conversation(&self, session: &SessionId) -> Result<Conversation, history::Error> {
        self.core.history.conversation(session).await
    }

    async fn chat(
        &self,
        request: ChatRequest,
        trace: TraceParent,
    ) -> Result<ChatAccepted, ForwardError> {
        self.gate.forward(&request, &trace).await
    }

    async fn cancel(
        &self,
        session: &SessionId,
        message: &MessageId,
    ) -> Result<CancelOutcome, redis_state::Error> {
        self.core.state.cancel(session, message).await
    }

    async fn recover(
        &self,
        session: &SessionId,
        message: &MessageId,
        from_index: u32,
    ) -> Result<Recovery, redis_state::Error> {
        self.core.state.recover(session, message, from_index).await
    }

    fn emit(&self, event: DomainEvent) {
        self.core.events.emit(&event);
    }

    fn serving(&self, session: &SessionId) {
        let state = self.core.state.clone();
        let node = self.core.node_id.clone();
        let session = session.clone();
        let ttl = self.owner_ttl;
        tokio::spawn(async move {
            match state.claim_owner(&session, &node, ttl).await {
                Ok(owner) if *owner != *node => {
                    debug!(session_id = %session, %owner, "session also served by another node");
                }
                Ok(_) => {}
                Err(e) => debug!(session_id = %session, cause = %e, "owner claim failed"),
            }
        });
    }

    fn stopped_serving(&self, session: &SessionId) {
        let state = self.core.state.clone();
        let node = self.core.node_id.clone();
        let session = session.clone();
        tokio::spawn(async move {
            if let Err(e) = state.release_owner(&session, &node).await {
                debug!(session_id = %session, cause = %e, "owner release failed");
            }
        });
    }
}
