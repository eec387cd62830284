//! [`Backend`]: everything a socket asks of the rest of the node, and [`NodeBackend`], the
//! answer of a running node (Redis, history, the AI nodes).
//!
//! The socket loop depends on this trait rather than on the node's handles, so that it runs
//! in unit tests without a network.

use std::future::Future;
use std::sync::Arc;

use history::Conversation;
use node::Core;
use protocol::rest::{CancelOutcome, ChatAccepted, ChatRequest};
use protocol::{DomainEvent, MessageId, SessionId};
use redis_state::Recovery;
use tracing::debug;

use crate::ai_client::{AiClient, ForwardError};

/// What a socket needs from the node it lives on.
pub trait Backend: Clone + Send + Sync + 'static {
    /// The session's history and in-flight answer, as one consistent snapshot.
    fn conversation(
        &self,
        session: &SessionId,
    ) -> impl Future<Output = Result<Conversation, history::Error>> + Send;

    /// Forwards a chat to an AI node.
    fn chat(
        &self,
        request: ChatRequest,
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

/// The backend of a running gateway node.
#[derive(Clone)]
pub struct NodeBackend {
    pub core: Core,
    pub ai: Arc<AiClient>,
}

impl Backend for NodeBackend {
    async fn conversation(&self, session: &SessionId) -> Result<Conversation, history::Error> {
        self.core.history.conversation(session).await
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatAccepted, ForwardError> {
        self.ai.chat(&request).await
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
        tokio::spawn(async move {
            match state.claim_owner(&session, &node).await {
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
