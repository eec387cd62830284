//! [`ChatGate`]: what a chat passes on its way to an AI node, whether it came over REST or a
//! socket: the user's rate limit, then the forward, with a short-lived token vouching for the
//! user when the AI nodes require one.

use std::sync::Arc;

use auth::{AuthMode, Authenticator};
use protocol::rest::{ChatAccepted, ChatRequest};
use redis_state::ChatState;
use tracing::warn;

use crate::ai_client::{AiClient, ForwardError};

/// Lifetime of the token a gateway gives an AI node for one forwarded chat.
const FORWARD_TOKEN_SECS: u64 = 60;

/// The way chats go to the AI nodes. Cheap to clone.
#[derive(Clone)]
pub struct ChatGate {
    pub ai: Arc<AiClient>,
    pub state: ChatState,
    pub auth: Authenticator,
    /// `CHAT_RATE_LIMIT_PER_MINUTE`; 0: no limit.
    pub per_minute: u32,
}

impl ChatGate {
    /// Takes one of the user's chats (refused while the user is over the limit) and forwards
    /// `request`, whose `user_id` is the caller the gateway established.
    pub async fn forward(&self, request: &ChatRequest) -> Result<ChatAccepted, ForwardError> {
        if self.per_minute > 0 {
            match self
                .state
                .take_chat(&request.user_id, self.per_minute)
                .await
            {
                Ok(None) => {}
                Ok(Some(wait)) => {
                    return Err(ForwardError::RateLimited {
                        retry_after_secs: wait.as_secs() + 1,
                    });
                }
                // The limit protects the nodes; Redis being down is the AI node's to report.
                Err(e) => warn!(cause = %e, "the chat rate limit could not be checked"),
            }
        }
        let token = match self.auth.mode() {
            AuthMode::Required => Some(self.auth.mint_for(&request.user_id, FORWARD_TOKEN_SECS)),
            AuthMode::Dev => None,
        };
        self.ai.chat(request, token.as_deref()).await
    }
}
