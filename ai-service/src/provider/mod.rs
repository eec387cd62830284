//! Where answers come from: a [`Provider`] turns a [`Prompt`] into a stream of text deltas.
//!
//! The streaming machinery ([`crate::Streamer`]) owns everything around the text: the lease,
//! chunk indexes, the exactly-once log, cancel, failover and the SQL record. A provider only
//! produces the text, so every provider gets the same guarantees.
//!
//! - [`Simulator`] (`AI_PROVIDER=simulator`, the default): canned answers, one word every
//!   `STREAM_DELAY_MS`, no network.
//! - [`OpenAi`] (`AI_PROVIDER=openai`): an OpenAI-compatible Chat Completions server, streamed
//!   over server-sent events.

use std::borrow::Cow;
use std::sync::Arc;

use futures_util::stream::BoxStream;
use protocol::{ChatMessage, MessageMetadata, Role};

use crate::config::ProviderConfig;

mod openai;
mod simulator;

pub use openai::OpenAi;
pub use simulator::Simulator;

/// What an answer is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The session's latest complete messages before the new one, oldest first (at most
    /// [`Provider::context_messages`] of them; empty when the provider wants none).
    pub context: Vec<(Role, String)>,
    /// The new user message.
    pub message: String,
}

impl Prompt {
    /// The prompt for `message` in a session whose history (the new message and the answer
    /// being started included) is `history`: its last `limit` complete messages before
    /// `message_id`, leaving out answers that did not complete (a cancelled or failed answer is
    /// partial text the model should not imitate).
    pub fn from_history(
        history: &[ChatMessage],
        user_message_id: &protocol::MessageId,
        message: String,
        limit: usize,
    ) -> Prompt {
        let usable = |m: &&ChatMessage| {
            m.is_complete
                && m.message_id != *user_message_id
                && !m.content.is_empty()
                && match m.role {
                    Role::User | Role::System => true,
                    Role::Assistant => m.status == protocol::MessageStatus::Completed,
                }
        };
        let mut context: Vec<(Role, String)> = history
            .iter()
            .filter(usable)
            .rev()
            .take(limit)
            .map(|m| (m.role, m.content.clone()))
            .collect();
        context.reverse();
        Prompt { context, message }
    }
}

/// One step of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The next delta of the answer's text: never empty. The deltas concatenated are the
    /// answer.
    Text(Cow<'static, str>),
    /// What the model server reported about the answer (model, token usage); may come at any
    /// point, usually last. A later one replaces the parts it has.
    Metadata(MessageMetadata),
}

/// Why a provider could not produce (all of) an answer. The text is for the node's log only:
/// it may carry what the model server said, which users are never shown.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The server could not be reached (refused, unreachable, TLS).
    #[error("the model server could not be reached: {0}")]
    Connect(String),
    /// The server answered with an HTTP error.
    #[error("the model server answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// No token came within `AI_FIRST_TOKEN_TIMEOUT_MS` of the request.
    #[error("no token within {0:?} of the request")]
    FirstTokenTimeout(std::time::Duration),
    /// No token came within `AI_IDLE_TIMEOUT_MS` of the previous one.
    #[error("no token within {0:?} of the previous one")]
    IdleTimeout(std::time::Duration),
    /// The server sent something that is not the streaming protocol.
    #[error("the model server sent a malformed stream: {0}")]
    Malformed(String),
    /// The stream ended before the answer did (the connection dropped, or the body ended
    /// without `[DONE]` or a `finish_reason`).
    #[error("the model server's stream was cut off: {0}")]
    Dropped(String),
}

impl ProviderError {
    /// A short name for metrics (`ai_upstream_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Connect(_) => "connect",
            ProviderError::Status { .. } => "status",
            ProviderError::FirstTokenTimeout(_) => "first_token_timeout",
            ProviderError::IdleTimeout(_) => "idle_timeout",
            ProviderError::Malformed(_) => "malformed",
            ProviderError::Dropped(_) => "dropped",
        }
    }
}

/// An answer being produced: pieces until it ends (`None`: the answer is complete) or fails
/// (one `Err`, then nothing). Dropping it stops the production at once: for a model server,
/// its HTTP request is aborted and its connection closed, so the model stops generating.
pub type Answer = BoxStream<'static, Result<Piece, ProviderError>>;

/// A source of answers.
///
/// Contract, checked for every implementation by `tests/provider_contract.rs`:
/// - [`Provider::answer`] returns at once; the work happens as the stream is polled.
/// - Every [`Piece::Text`] is non-empty, and they come in the answer's order.
/// - The stream ends with `None` only when the answer is complete; a failure is one `Err`
///   after the pieces produced so far, and the stream ends there.
/// - Dropping the stream stops the work (and closes any connection it holds).
/// - A provider that may go quiet for longer than a chunk interval says so with
///   [`Provider::may_stall`], so that the streamer keeps the answer's lease alive and notices
///   a cancel while it waits.
pub trait Provider: Send + Sync + 'static {
    /// Starts producing the answer to `prompt`.
    fn answer(&self, prompt: Prompt) -> Answer;

    /// How many of the session's latest complete messages to put in [`Prompt::context`]; 0
    /// (the default) spares the history read.
    fn context_messages(&self) -> usize {
        0
    }

    /// Whether the stream may wait longer than a chunk interval for its next piece.
    fn may_stall(&self) -> bool {
        false
    }
}

/// The provider `config` names; `stream_delay` paces the simulator.
pub fn from_config(
    config: &ProviderConfig,
    stream_delay: std::time::Duration,
) -> anyhow::Result<Arc<dyn Provider>> {
    Ok(match config {
        ProviderConfig::Simulator => Arc::new(Simulator::new(stream_delay)),
        ProviderConfig::OpenAi(openai) => Arc::new(OpenAi::new(openai.clone())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{MessageId, MessageStatus, SessionId, UserId};

    fn message(role: Role, content: &str, status: MessageStatus) -> ChatMessage {
        let mut m = ChatMessage::user(
            MessageId::random(),
            SessionId::parse("s").unwrap(),
            UserId::parse("u").unwrap(),
            content.into(),
            1,
        );
        m.role = role;
        m.status = status;
        m.is_complete = status.is_final();
        m
    }

    /// The context is the latest complete messages before the new one, oldest first; partial
    /// answers and the answer being started are left out.
    #[test]
    fn the_prompt_takes_the_latest_complete_messages() {
        use MessageStatus::*;
        let new = message(Role::User, "third question", Completed);
        let history = vec![
            message(Role::User, "first question", Completed),
            message(Role::Assistant, "first answer", Completed),
            message(Role::User, "second question", Completed),
            message(Role::Assistant, "half an answer\n\n[Cancelled]", Cancelled),
            message(Role::Assistant, "broken", Failed),
            new.clone(),
            message(Role::Assistant, "", Streaming),
        ];
        let prompt = Prompt::from_history(&history, &new.message_id, "third question".into(), 2);
        assert_eq!(
            prompt.context,
            vec![
                (Role::Assistant, "first answer".to_owned()),
                (Role::User, "second question".to_owned()),
            ]
        );
        assert_eq!(prompt.message, "third question");
        let none = Prompt::from_history(&history, &new.message_id, "q".into(), 0);
        assert!(none.context.is_empty());
    }
}
