//! The readers' side: a consistent snapshot of a session, and recovery of missed chunks.

use protocol::{ChatMessage, MessageId, MessageStatus, SessionId, StreamingState, keys};
use redis::Value;
use tracing::warn;

use crate::{ChatState, Error, Result};

/// A session as it was at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Completed messages, chronological, from position `history_from` of the stored history.
    pub history: Vec<ChatMessage>,
    /// Position of `history[0]` in the stored history: 0, or the `known` count the caller
    /// passed to [`ChatState::snapshot_since`] when its prefix was still valid.
    pub history_from: usize,
    /// Entries in the stored history (0: none, expired or flushed).
    pub history_len: usize,
    /// A chat started while SQL was unreachable and Redis had no history: the stored history
    /// must still be merged in ([`ChatState::merge_history`]).
    pub unmerged: bool,
    /// The answer streaming at that instant, if any.
    pub streaming: Option<InFlight>,
}

/// An answer caught mid-stream by a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The answer with `content` = every chunk so far, `isComplete: false`.
    pub message: ChatMessage,
    /// Index of the last chunk in `content`; -1 when none was produced yet.
    pub last_index: i64,
}

impl InFlight {
    /// Appends the in-flight answer to `messages` (it is always last) and returns the
    /// `streaming` state that names it.
    pub fn append_to(self, messages: &mut Vec<ChatMessage>) -> StreamingState {
        let state = StreamingState {
            message_id: self.message.message_id.clone(),
            last_index: self.last_index,
        };
        messages.push(self.message);
        state
    }
}

/// What `resume` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Still streaming: the chunks from the asked index on, in order.
    Recovered {
        chunks: Vec<ChatMessage>,
    },
    /// Ended: the final message.
    Completed(ChatMessage),
    /// Still streaming, but its chunk log is gone.
    Expired,
    NotFound,
}

impl ChatState {
    /// History, the active answer and its chunk log, read in one atomic step.
    pub async fn snapshot(&self, session: &SessionId) -> Result<Snapshot> {
        self.snapshot_since(session, None).await
    }

    /// Like [`ChatState::snapshot`], for a caller that already holds the first `known.0`
    /// history entries, the last of which is message `known.1`: if they are still the stored
    /// history's first entries, only the later ones are read (`history_from == known.0`).
    pub async fn snapshot_since(
        &self,
        session: &SessionId,
        known: Option<(usize, &MessageId)>,
    ) -> Result<Snapshot> {
        let (known_len, known_id) = known.map_or((0, ""), |(len, id)| (len, id.as_str()));
        let reply: Vec<Value> = self
            .scripts()
            .snapshot
            .key(keys::history(session))
            .key(keys::active_stream(session))
            .key(keys::unmerged(session))
            .arg(keys::message_prefix(session))
            .arg(keys::chunks_prefix(session))
            .arg(known_len)
            .arg(known_id)
            .invoke_async(&mut self.conn())
            .await?;
        let mut parts = reply.into_iter();
        let history = parts
            .next()
            .map(strings)
            .transpose()?
            .unwrap_or_default()
            .iter()
            .filter_map(|json| parse_message(json, session))
            .collect();
        let history_from = parts.next().map(integer).transpose()?.unwrap_or(0);
        let history_len = parts.next().map(integer).transpose()?.unwrap_or(0);
        let unmerged = parts.next().map(integer).transpose()?.unwrap_or(0) == 1;
        let Some(message_id) = parts.next().map(string).transpose()? else {
            return Ok(Snapshot {
                history,
                history_from,
                history_len,
                unmerged,
                streaming: None,
            });
        };
        let record = parts.next().map(optional_string).transpose()?.flatten();
        let chunks = parts.next().map(strings).transpose()?.unwrap_or_default();
        let message_id = MessageId::parse(message_id.as_str())
            .map_err(|_| Error::Reply(format!("the lease names {message_id:?}")))?;
        let mut message = record
            .and_then(|json| parse_message(&json, session))
            .unwrap_or_else(|| placeholder_answer(session, message_id));
        message.content = chunks.concat();
        message.is_complete = false;
        message.status = MessageStatus::Streaming;
        Ok(Snapshot {
            history,
            history_from,
            history_len,
            unmerged,
            streaming: Some(InFlight {
                message,
                last_index: chunks.len() as i64 - 1,
            }),
        })
    }

    /// Refills `session`'s history with `messages` (complete ones, in order) if it does not
    /// exist; returns whether it did.
    pub async fn warm_history(
        &self,
        session: &SessionId,
        messages: &[ChatMessage],
    ) -> Result<bool> {
        if messages.is_empty() {
            return Ok(false);
        }
        let mut invocation = self.scripts().warm.key(keys::history(session));
        invocation.arg(keys::HISTORY_TTL_SECS);
        for message in messages {
            invocation.arg(serde_json::to_string(message)?);
        }
        let warmed: i64 = invocation.invoke_async(&mut self.conn()).await?;
        Ok(warmed == 1)
    }

    /// Puts the stored `messages` (complete ones, in order) that Redis does not hold in front
    /// of `session`'s history, and clears its unmerged marker; returns how many went in.
    pub async fn merge_history(
        &self,
        session: &SessionId,
        messages: &[ChatMessage],
    ) -> Result<usize> {
        let mut invocation = self.scripts().merge.key(keys::history(session));
        invocation.key(keys::unmerged(session));
        invocation.arg(keys::HISTORY_TTL_SECS);
        for message in messages {
            invocation.arg(serde_json::to_string(message)?);
        }
        let added: usize = invocation.invoke_async(&mut self.conn()).await?;
        Ok(added)
    }

    /// Finds answer `message` of `session` for a client that has every chunk before
    /// `from_index`.
    pub async fn recover(
        &self,
        session: &SessionId,
        message: &MessageId,
        from_index: u32,
    ) -> Result<Recovery> {
        let reply: Vec<Value> = self
            .scripts()
            .recover
            .key(keys::message(session, message))
            .key(keys::chunks(session, message))
            .key(keys::history(session))
            .arg(message.as_str())
            .arg(from_index)
            .arg(session.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        let mut parts = reply.into_iter();
        let status = parts.next().map(string).transpose()?.unwrap_or_default();
        let record = parts
            .next()
            .map(string)
            .transpose()?
            .and_then(|json| parse_message(&json, session));
        match (status.as_str(), record) {
            ("NOT_FOUND", _) => Ok(Recovery::NotFound),
            ("EXPIRED", _) => Ok(Recovery::Expired),
            ("COMPLETED", Some(done)) => Ok(Recovery::Completed(done)),
            ("RECOVERED", Some(answer)) => {
                let deltas = parts.next().map(strings).transpose()?.unwrap_or_default();
                let chunks = (from_index..)
                    .zip(deltas)
                    .map(|(index, delta)| answer.chunk_of(index, &delta))
                    .collect();
                Ok(Recovery::Recovered { chunks })
            }
            (other, _) => Err(Error::Reply(format!("recover answered {other:?}"))),
        }
    }
}

/// Parses one stored message; a corrupt entry is logged and skipped rather than failing the
/// whole read.
pub(crate) fn parse_message(json: &str, session: &SessionId) -> Option<ChatMessage> {
    match serde_json::from_str(json) {
        Ok(message) => Some(message),
        Err(e) => {
            warn!(session_id = %session, cause = %e, "skipping unreadable stored message");
            None
        }
    }
}

/// The answer when its record has vanished but its lease has not (it expired on its own); the
/// user it answers is unknown.
fn placeholder_answer(session: &SessionId, message_id: MessageId) -> ChatMessage {
    ChatMessage::started_answer(message_id, session.clone(), protocol::UserId::default(), 0)
}

fn string(value: Value) -> Result<String> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|e| Error::Reply(e.to_string()))
        }
        Value::SimpleString(s) => Ok(s),
        other => Err(Error::Reply(format!("expected a string, got {other:?}"))),
    }
}

fn integer(value: Value) -> Result<usize> {
    match value {
        Value::Int(n) => usize::try_from(n).map_err(|e| Error::Reply(e.to_string())),
        other => Err(Error::Reply(format!("expected an integer, got {other:?}"))),
    }
}

fn optional_string(value: Value) -> Result<Option<String>> {
    match value {
        Value::Nil => Ok(None),
        other => string(other).map(Some),
    }
}

fn strings(value: Value) -> Result<Vec<String>> {
    match value {
        Value::Array(items) => items.into_iter().map(string).collect(),
        other => Err(Error::Reply(format!("expected an array, got {other:?}"))),
    }
}
