//! The producer's side: what an AI node does to stream one answer.
//!
//! `start_stream` → `append_chunk` (0, 1, 2, ...) → `finish_stream`, each one atomic script.
//! Every frame published is the exact text a socket receives.

use std::sync::Arc;

use protocol::{ChatMessage, MessageId, MessageStatus, ServerFrame, SessionId, UserId, keys};

use crate::scripts::{Eval, RENEW_LIVE_TTL_EVERY};
use crate::{ChatState, Error, Result};

/// What starting a stream assumes of a session whose history Redis does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryCheck {
    /// Refuse with [`StartOutcome::HistoryMissing`] when Redis lacks the session's history
    /// or user, so that the caller refills them from SQL first.
    Require,
    /// Go ahead: the caller has refilled whatever SQL holds.
    Refilled,
    /// Go ahead without knowing what SQL holds (it cannot be reached): a session Redis has
    /// no history for is marked `unmerged`, and its stored history is merged in by the next
    /// reader that reaches SQL.
    Unverified,
}

impl HistoryCheck {
    fn arg(self) -> &'static str {
        match self {
            HistoryCheck::Require => "1",
            HistoryCheck::Refilled => "0",
            HistoryCheck::Unverified => "2",
        }
    }
}

/// Result of trying to start a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The lease was taken, the user message stored and published.
    Started(StreamHandle),
    /// Another answer holds the session's lease.
    Busy { active_message_id: MessageId },
    /// The session belongs to another user (only when ownership is enforced): nothing was
    /// written.
    Forbidden { owner: UserId },
    /// Redis has no history for the session (it expired or was flushed) and the caller asked
    /// to be told ([`HistoryCheck::Require`]): nothing was written.
    HistoryMissing,
}

/// Result of appending one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Stored and published (or already stored by an earlier try of the same index).
    Appended,
    /// The cancel flag is set: stop and finish as `cancelled`. Nothing was appended.
    Cancelled,
    /// The lease now belongs to nobody or to another answer (this one was failed by another
    /// node): stop without finishing.
    LeaseLost,
}

/// Whether a producer waiting between chunks should go on ([`ChatState::keep_alive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Its deadline was pushed forward: go on.
    Alive,
    /// The cancel flag is set: stop and finish as `cancelled`.
    Cancelled,
    /// The lease now belongs to nobody or to another answer: stop without finishing.
    LeaseLost,
}

/// An answer this node is streaming: its ids and the record chunks are stamped from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHandle {
    pub session: SessionId,
    pub message: MessageId,
    /// The answer as it started: empty content, `streaming`.
    pub answer: ChatMessage,
    /// The start's number in the session's changes (see [`keys::session_changes`]).
    pub change: i64,
    /// Its keys, named once here rather than on every chunk.
    keys: Arc<AnswerKeys>,
}

/// The Redis keys of one streaming answer and its member in the deadline set.
#[derive(Debug, PartialEq, Eq)]
struct AnswerKeys {
    active: String,
    cancel: String,
    chunks: String,
    channel: String,
    message: String,
    deadlines: String,
    deadline_member: String,
}

impl AnswerKeys {
    fn new(state: &ChatState, session: &SessionId, message: &MessageId) -> Self {
        Self {
            active: keys::active_stream(session),
            cancel: keys::cancel_flag(session, message),
            chunks: keys::chunks(session, message),
            channel: keys::stream_channel(session),
            message: keys::message(session, message),
            deadlines: state.deadlines(session),
            deadline_member: keys::deadline_member(session, message),
        }
    }
}

impl ChatState {
    /// Takes `session`'s stream lease for `answer` and stores and publishes `user`, in one step.
    /// The session's user is recorded by its first chat; with `enforce_owner`, another user's
    /// chat is refused with [`StartOutcome::Forbidden`]. `history` says what to do when Redis
    /// has no history for the session (see [`HistoryCheck`]; a brand-new session is refused by
    /// `Require` too: start it again with `Refilled` once any stored history and user have been
    /// put back).
    pub async fn start_stream(
        &self,
        session: &SessionId,
        user: &ChatMessage,
        answer: ChatMessage,
        lease_secs: u64,
        history: HistoryCheck,
        enforce_owner: bool,
    ) -> Result<StartOutcome> {
        let message = answer.message_id.clone();
        let user_json = serde_json::to_string(user)?;
        let record = serde_json::to_string(&answer)?;
        let frame = ServerFrame::Message { data: user.clone() }.to_json();
        let (started, active, change): (i64, String, i64) = self
            .scripts()
            .start
            .key(keys::active_stream(session))
            .key(keys::history(session))
            .key(keys::message(session, &message))
            .key(keys::stream_channel(session))
            .key(self.deadlines(session))
            .key(keys::session_changes(session))
            .key(keys::session_user(session))
            .key(keys::unmerged(session))
            .key(keys::started(session, &message))
            .arg(message.as_str())
            .arg(lease_secs)
            .arg(user_json)
            .arg(record)
            .arg(frame)
            .arg(keys::HISTORY_TTL_SECS)
            .arg(keys::LIVE_STREAM_TTL_SECS)
            .arg(keys::deadline_member(session, &message))
            .arg(history.arg())
            .arg(keys::CHANGES_TTL_SECS)
            .arg(user.user_id.as_str())
            .arg(if enforce_owner { "1" } else { "0" })
            .arg(keys::SESSION_USER_TTL_SECS)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(if started == 3 {
            StartOutcome::Forbidden {
                owner: UserId::parse(active.as_str())
                    .map_err(|_| Error::Reply(format!("the session's user is {active:?}")))?,
            }
        } else if started == 2 {
            StartOutcome::HistoryMissing
        } else if started == 1 {
            StartOutcome::Started(StreamHandle {
                keys: Arc::new(AnswerKeys::new(self, session, &message)),
                session: session.clone(),
                message,
                answer,
                change,
            })
        } else {
            StartOutcome::Busy {
                active_message_id: MessageId::parse(active.as_str())
                    .map_err(|_| Error::Reply(format!("the lease names {active:?}")))?,
            }
        })
    }

    /// Appends chunk `index` (the delta `delta`) and publishes its frame, in one step, unless
    /// the answer was cancelled or lost its lease. Retrying the same index is harmless.
    /// `renew: Some(lease_secs)` also pushes the answer's deadline to now + `lease_secs`;
    /// `None` leaves it where START, an earlier chunk or `keep_alive` put it.
    pub async fn append_chunk(
        &self,
        stream: &StreamHandle,
        index: u32,
        delta: &str,
        renew: Option<u64>,
    ) -> Result<ChunkOutcome> {
        let mut chunk = stream.answer.chunk_of(index, delta);
        // A live chunk carries its publish time: gateways measure delivery latency from it.
        chunk.timestamp = protocol::now_ms();
        let frame = ServerFrame::Message { data: chunk }.to_json();
        let k = &*stream.keys;
        // Only a chunk that pushes the deadline or renews the TTLs passes the record, the
        // deadline set and their arguments; the others pass two keys and three arguments fewer
        // (each costs Redis on every call).
        let live_ttl = if index.is_multiple_of(RENEW_LIVE_TTL_EVERY) {
            keys::LIVE_STREAM_TTL_SECS
        } else {
            0
        };
        let renewing = renew.is_some() || live_ttl > 0;
        let all_keys = [
            &*k.active,
            &k.cancel,
            &k.chunks,
            &k.channel,
            &k.message,
            &k.deadlines,
        ];
        let declared = if renewing {
            &all_keys[..]
        } else {
            &all_keys[..4]
        };
        let mut eval = Eval::new(&self.scripts().append, declared)
            .arg(stream.message.as_str())
            .arg(index)
            .arg(delta)
            .arg(frame);
        if renewing {
            eval = eval
                .arg(renew.unwrap_or(0))
                .arg(live_ttl)
                .arg(&k.deadline_member);
        }
        let reply: i64 = eval.invoke(&mut self.conn()).await?;
        match reply {
            -1 => Ok(ChunkOutcome::Cancelled),
            -2 => Ok(ChunkOutcome::LeaseLost),
            r if r == i64::from(index) => Ok(ChunkOutcome::Appended),
            r => Err(Error::Reply(format!(
                "appending chunk {index} of {} answered {r}",
                stream.message
            ))),
        }
    }

    /// Pushes the answer's deadline forward without a chunk, while its producer waits (for a
    /// model's first token, say), and tells whether to go on. Cheap: one short script.
    pub async fn keep_alive(&self, stream: &StreamHandle, lease_secs: u64) -> Result<Liveness> {
        let k = &*stream.keys;
        let reply: i64 = Eval::new(
            &self.scripts().keep_alive,
            &[&k.active, &k.cancel, &k.deadlines],
        )
        .arg(stream.message.as_str())
        .arg(lease_secs)
        .arg(&k.deadline_member)
        .invoke(&mut self.conn())
        .await?;
        match reply {
            0 => Ok(Liveness::Alive),
            -1 => Ok(Liveness::Cancelled),
            -2 => Ok(Liveness::LeaseLost),
            r => Err(Error::Reply(format!(
                "keeping {} alive answered {r}",
                stream.message
            ))),
        }
    }

    /// Ends the answer with `content` and `status`: [`ChatState::end_stream`] without metadata
    /// or an error frame.
    pub async fn finish_stream(
        &self,
        stream: &StreamHandle,
        content: String,
        status: MessageStatus,
    ) -> Result<Option<i64>> {
        let done = stream.answer.finished(content, status);
        self.end_stream(stream, &done, None).await
    }

    /// Ends the answer as `done` (its final form: content, status, metadata): appends it to
    /// history, releases the lease and publishes `error` (when given: an `error` frame about
    /// this answer, which sockets get just before it) and then the final frame, in one step.
    /// Returns the ending's number in the session's changes, or `None` (and changes nothing)
    /// when the answer had already ended otherwise. A retry of an ending that did run (its
    /// reply was lost) gets the same number again, so the caller records the ending durably
    /// either way.
    pub async fn end_stream(
        &self,
        stream: &StreamHandle,
        done: &ChatMessage,
        error: Option<&ServerFrame>,
    ) -> Result<Option<i64>> {
        let json = serde_json::to_string(done)?;
        let frame = ServerFrame::Message { data: done.clone() }.to_json();
        let k = &*stream.keys;
        let mut invocation = self.scripts().finish.prepare_invoke();
        invocation
            .key(&k.active)
            .key(keys::history(&stream.session))
            .key(&k.message)
            .key(&k.chunks)
            .key(&k.cancel)
            .key(&k.channel)
            .key(&k.deadlines)
            .key(keys::session_changes(&stream.session))
            .key(keys::ended(&stream.session, &stream.message))
            .arg(stream.message.as_str())
            .arg(json)
            .arg(frame)
            .arg(keys::HISTORY_TTL_SECS)
            .arg(keys::ENDED_STREAM_TTL_SECS)
            .arg(&k.deadline_member)
            .arg(keys::CHANGES_TTL_SECS);
        if let Some(error) = error {
            invocation.arg(error.to_json());
        }
        let ended: i64 = invocation.invoke_async(&mut self.conn()).await?;
        Ok((ended > 0).then_some(ended))
    }
}
