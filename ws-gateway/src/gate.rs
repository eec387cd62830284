//! [`ChatGate`]: the way a chat goes to an AI node, whether it came over REST or a socket: with
//! a short-lived token vouching for the user when the AI nodes require one. (The AI node
//! applies the user's rate limit, so that chats sent straight to it count too.)

use std::sync::Arc;

use auth::{AuthMode, Authenticator};
use protocol::rest::{ChatAccepted, ChatRequest};
use runtime::trace::TraceParent;

use crate::ai_client::{AiClient, ForwardError};

/// Lifetime of the token a gateway gives an AI node for one forwarded chat.
const FORWARD_TOKEN_SECS: u64 = 60;

/// The way chats go to the AI nodes. Cheap to clone.
#[derive(Clone)]
pub struct ChatGate {
    pub ai: Arc<AiClient>,
    pub auth: Authenticator,
}

impl ChatGate {
    /// Forwards `request`, whose `user_id` is the caller the gateway established, as part of
    /// `trace` (the AI node is sent its `traceparent`).
    pub async fn forward(
        &self,
        request: &ChatRequest,
        trace: &TraceParent,
    ) -> Result<ChatAccepted, ForwardError> {
        let token = match self.auth.mode() {
            AuthMode::Required => Some(self.auth.mint_for(&request.user_id, FORWARD_TOKEN_SECS)),
            AuthMode::Dev => None,
        };
        self.ai.chat(request, token.as_deref(), trace).await
    }
}
