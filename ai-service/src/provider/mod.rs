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
    /// [`Provider::context_limits`]; empty when the provider wants none).
    pub context: Vec<(Role, String)>,
    /// The new user message.
    pub message: String,
}

impl Prompt {
    /// The prompt for `message` in a session whose history (the new message and the answer
    /// being started included) is `history`: its latest complete exchanges before
    /// `user_message_id`, at most `limit` messages and `max_chars` characters of them.
    ///
    /// An exchange is a user message and the answer it got. One whose answer did not complete
    /// (cancelled or failed: partial text the model should not imitate) is left out whole, so
    /// the context alternates user, assistant, user, ... and starts with a user message, as
    /// strict chat templates require.
    pub fn from_history(
        history: &[ChatMessage],
        user_message_id: &protocol::MessageId,
        message: String,
        limit: usize,
        max_chars: usize,
    ) -> Prompt {
        // Complete exchanges, oldest first.
        let mut exchanges: Vec<(&ChatMessage, &ChatMessage)> = Vec::new();
        let mut question: Option<&ChatMessage> = None;
        for m in history {
            if m.message_id == *user_message_id {
                break;
            }
            match m.role {
                Role::User => question = Some(m),
                Role::Assistant => {
                    if let Some(q) = question.take()
                        && m.is_complete
                        && m.status == protocol::MessageStatus::Completed
                        && !m.content.is_empty()
                        && !q.content.is_empty()
                    {
                        exchanges.push((q, m));
                    }
                }
                Role::System => {}
            }
        }
        // The latest exchanges that fit, whole.
        let (mut messages, mut chars) = (0, 0);
        let mut kept = Vec::new();
        for (q, a) in exchanges.iter().rev() {
            let size = q.content.chars().count() + a.content.chars().count();
            if messages + 2 > limit || chars + size > max_chars {
                break;
            }
            messages += 2;
            chars += size;
            kept.push((*q, *a));
        }
        let context = kept
            .iter()
            .rev()
            .flat_map(|(q, a)| {
                [
                    (Role::User, q.content.clone()),
                    (Role::Assistant, a.content.clone()),
                ]
            })
            .collect();
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

    /// At most how many of the session's latest messages, and of how many characters, to put
    /// in [`Prompt::context`]; `(0, 0)` (the default) spares the history read.
    fn context_limits(&self) -> (usize, usize) {
        (0, 0)
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

    /// The context is the latest complete exchanges before the new one, oldest first: an
    /// exchange whose answer was cancelled or failed goes whole, so roles alternate from a user
    /// message; the limits keep whole exchanges.
    #[test]
    fn the_prompt_takes_the_latest_complete_exchanges() {
        use MessageStatus::*;
        let new = message(Role::User, "fourth question", Completed);
        let history = vec![
            message(Role::User, "first question", Completed),
            message(Role::Assistant, "first answer", Completed),
            message(Role::User, "second question", Completed),
            message(Role::Assistant, "half an answer\n\n[Cancelled]", Cancelled),
            message(Role::User, "third question", Completed),
            message(Role::Assistant, "third answer", Completed),
            new.clone(),
            message(Role::Assistant, "", Streaming),
        ];
        let prompt = |limit, chars| {
            Prompt::from_history(
                &history,
                &new.message_id,
                "fourth question".into(),
                limit,
                chars,
            )
            .context
        };
        let all = prompt(20, 10_000);
        assert_eq!(
            all,
            vec![
                (Role::User, "first question".to_owned()),
                (Role::Assistant, "first answer".to_owned()),
                (Role::User, "third question".to_owned()),
                (Role::Assistant, "third answer".to_owned()),
            ]
        );
        // Three messages allowed: one whole exchange.
        assert_eq!(prompt(3, 10_000), all[2..].to_vec());
        // 30 characters allowed: "third question" + "third answer" is 26.
        assert_eq!(prompt(20, 30), all[2..].to_vec());
        assert!(prompt(0, 10_000).is_empty());
        assert!(prompt(20, 10).is_empty());
    }
}
