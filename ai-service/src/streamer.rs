//! Producing answers: one task per answer, chunk after chunk, until the end, a cancel, or
//! shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use history::Rewarmed;
use node::Core;
use protocol::rest::{ChatAccepted, ChatRequest};
use protocol::{
    ChatMessage, DomainEvent, ErrorCode, MessageId, MessageMetadata, MessageStatus, ServerFrame,
    SessionId,
};
use redis_state::{ChunkOutcome, HistoryCheck, Liveness, StartOutcome, StreamHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, warn};

use crate::provider::{Piece, Prompt, Provider, ProviderError};
use crate::stats::AiStats;

/// Text appended to an answer that was cancelled.
pub const CANCELLED_SUFFIX: &str = "\n\n[Cancelled]";
/// What the `error` frame of an answer its model server failed says (the server's own words
/// are only logged).
pub const UPSTREAM_ERROR_TEXT: &str =
    "the model server failed while answering; the answer is incomplete";
/// While a provider that may stall has sent nothing for this long, the answer's lease is
/// renewed and its cancel flag read, so a cancel stops the model within this (plus a round
/// trip) even when no token comes.
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(100);
/// How long shutdown waits for queued SQL writes (the database may be down).
const SQL_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Why a chat could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("session {session} already has an answer streaming ({active_message_id})")]
    Busy {
        session: SessionId,
        active_message_id: MessageId,
    },
    /// The session belongs to another user (only when ownership is enforced).
    #[error("the session belongs to another user")]
    Forbidden,
    #[error(transparent)]
    Redis(#[from] redis_state::Error),
    #[error(transparent)]
    History(history::Error),
}

/// What an answer has produced so far.
#[derive(Debug, Default)]
struct Produced {
    /// When its chat arrived.
    arrived: Option<Instant>,
    /// Its text: the chunks so far, in order.
    content: String,
    /// How many chunks were appended.
    chunks: u32,
    /// What the model server reported about the answer.
    metadata: MessageMetadata,
}

/// How an answer ends.
enum Ending {
    Completed,
    Cancelled,
    /// Shutdown, or Redis unreachable: no `error` frame (the final message says `failed`).
    Failed,
    /// The provider failed: an `error UPSTREAM_ERROR` frame precedes the final message.
    Upstream,
}

/// Starts answers and keeps track of the tasks producing them.
#[derive(Clone)]
pub struct Streamer {
    /// Redis (the stream), history (to put a lost Redis history back from SQL before a new
    /// message is appended to it), and the writes of record to SQL.
    core: Core,
    /// Where the answers' text comes from.
    provider: Arc<dyn Provider>,
    lease_secs: u64,
    /// Every answer task; closed and awaited at shutdown.
    tasks: TaskTracker,
    /// Cancelled when the shutdown grace period is over: answers still running end as failed.
    abort: CancellationToken,
    stats: Arc<AiStats>,
}

impl Streamer {
    pub fn new(core: Core, provider: Arc<dyn Provider>, lease_secs: u64) -> Self {
        Self {
            provider,
            lease_secs,
            tasks: TaskTracker::new(),
            abort: CancellationToken::new(),
            stats: Arc::new(AiStats::new(&core.node_id)),
            core,
        }
    }

    /// The node's metrics.
    pub fn stats(&self) -> &AiStats {
        &self.stats
    }

    /// Stores the user message, takes the lease and spawns the answer's task. Returns once the
    /// answer is registered, so a cancel sent right after the 202 finds it. With
    /// `enforce_owner`, a chat in another user's session is refused.
    pub async fn start(
        &self,
        request: ChatRequest,
        enforce_owner: bool,
    ) -> Result<ChatAccepted, StartError> {
        let ChatRequest {
            session_id: session,
            message: text,
            user_id: user,
        } = request;
        let arrived = Instant::now();
        let now = protocol::now_ms();
        let answer =
            ChatMessage::started_answer(MessageId::random(), session.clone(), user.clone(), now);
        let user_message = ChatMessage::user(MessageId::random(), session.clone(), user, text, now);
        // First try insists that Redis still has the session's history: when it expired or was
        // flushed, it is put back from SQL before the new message is appended to it. When SQL
        // cannot be asked, the chat goes on and the session is marked for a merge later.
        let mut check = HistoryCheck::Require;
        let mut retried = false;
        let stream = loop {
            let outcome = match self
                .core
                .state
                .start_stream(
                    &session,
                    &user_message,
                    answer.clone(),
                    self.lease_secs,
                    check,
                    enforce_owner,
                )
                .await
            {
                Ok(outcome) => outcome,
                // Its reply may be what was lost: once more, which the script answers as the
                // first run if that one did start the answer.
                Err(e) if !retried => {
                    warn!(session_id = %session, cause = %e, "starting the answer failed; retrying once");
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match outcome {
                StartOutcome::Started(stream) => break stream,
                StartOutcome::Forbidden { .. } => return Err(StartError::Forbidden),
                StartOutcome::Busy { active_message_id } => {
                    return Err(StartError::Busy {
                        session,
                        active_message_id,
                    });
                }
                StartOutcome::HistoryMissing => {
                    let rewarmed = self
                        .core
                        .history
                        .rewarm(&session)
                        .await
                        .map_err(StartError::History)?;
                    check = match rewarmed {
                        Rewarmed::Refilled | Rewarmed::Empty => HistoryCheck::Refilled,
                        Rewarmed::SqlUnavailable => HistoryCheck::Unverified,
                    };
                }
            }
        };
        info!(session_id = %session, message_id = %stream.message, "answer started");
        self.stats.started.increment(1);
        self.core.writer.answer_started(
            &user_message,
            &stream.answer,
            &self.core.node_id,
            stream.change,
        );
        let accepted = ChatAccepted {
            status: "accepted".into(),
            session_id: session,
            user_message_id: user_message.message_id.clone(),
            message_id: stream.message.clone(),
            node_id: self.core.node_id.to_string(),
        };
        let this = self.clone();
        self.tasks.spawn(
            async move { this.produce(stream, user_message, arrived).await }.in_current_span(),
        );
        Ok(accepted)
    }

    /// Waits up to `grace` for running answers to end, then ends the rest as `failed`, and
    /// waits for their SQL writes.
    pub async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                running = self.tasks.len(),
                "shutdown grace period over; failing running answers"
            );
            self.abort.cancel();
            self.tasks.wait().await;
        }
        self.core.finish_writes(SQL_FLUSH_LIMIT).await;
    }

    /// Asks the provider for the answer to `user_message` and streams it as `stream`.
    async fn produce(&self, stream: StreamHandle, user_message: ChatMessage, arrived: Instant) {
        let mut done = Produced {
            arrived: Some(arrived),
            ..Produced::default()
        };
        let prompt = self.prompt(&stream, user_message).await;
        let mut answer = self.provider.answer(prompt);
        // Only for a provider that may go quiet: renewed on every piece.
        let may_stall = self.provider.may_stall();
        let quiet = tokio::time::sleep(KEEP_ALIVE_EVERY);
        tokio::pin!(quiet);
        let mut index = 0u32;
        // When the answer's deadline was last pushed forward, at the latest (START set it after
        // the chat arrived; the prompt may have taken a while since): a chunk pushes it again
        // only once `renew_every` has passed, so the deadline stays at least 90 % of the lease
        // ahead of the latest chunk at a tenth of the Redis work.
        let mut renewed = tokio::time::Instant::from_std(arrived);
        // A failing keep-alive is logged once per answer, not every interval.
        let mut keep_alive_warned = false;
        let ending = loop {
            let piece = tokio::select! {
                piece = answer.next() => piece,
                () = &mut quiet, if may_stall => {
                    quiet.as_mut().reset(tokio::time::Instant::now() + KEEP_ALIVE_EVERY);
                    let asked = tokio::time::Instant::now();
                    match self.core.state.keep_alive(&stream, self.lease_secs).await {
                        Ok(Liveness::Alive) => {
                            renewed = asked;
                            continue;
                        }
                        Ok(Liveness::Cancelled) => break Ending::Cancelled,
                        Ok(Liveness::LeaseLost) => {
                            drop(answer);
                            self.fenced(&stream, index);
                            return;
                        }
                        // The next chunk's append retries Redis; meanwhile keep waiting.
                        Err(e) => {
                            if !keep_alive_warned {
                                keep_alive_warned = true;
                                warn!(session_id = %stream.session, message_id = %stream.message,
                                    cause = %e, "renewing the lease of a waiting answer failed");
                            }
                            continue;
                        }
                    }
                }
                () = self.abort.cancelled() => break Ending::Failed,
            };
            if may_stall {
                quiet
                    .as_mut()
                    .reset(tokio::time::Instant::now() + KEEP_ALIVE_EVERY);
            }
            let delta = match piece {
                None => break Ending::Completed,
                Some(Ok(Piece::Text(delta))) => delta,
                Some(Ok(Piece::Metadata(metadata))) => {
                    done.metadata = MessageMetadata {
                        model: metadata.model.or(done.metadata.model),
                        usage: metadata.usage.or(done.metadata.usage),
                    };
                    continue;
                }
                Some(Err(e)) => {
                    self.upstream_failed(&stream, index, &e);
                    break Ending::Upstream;
                }
            };
            let asked = tokio::time::Instant::now();
            let renew = asked >= renewed + self.renew_every();
            match self.append(&stream, index, &delta, renew).await {
                Some(ChunkOutcome::Appended) => {
                    if renew {
                        renewed = asked;
                    }
                    if index == 0 {
                        self.stats.first_chunk.record(arrived.elapsed());
                    }
                    self.stats.chunks.increment(1);
                    done.content.push_str(&delta);
                    done.chunks += 1;
                    self.core.writer.chunk(&stream.message, index, &delta);
                    if self.core.events.chunk_events().includes(index) {
                        let now = protocol::now_ms();
                        let event = DomainEvent::chunk_received(&stream.answer, index, &delta, now);
                        self.core.events.emit(&event);
                    }
                    index += 1;
                }
                Some(ChunkOutcome::Cancelled) => break Ending::Cancelled,
                Some(ChunkOutcome::LeaseLost) => {
                    drop(answer);
                    self.fenced(&stream, index);
                    return;
                }
                None => break Ending::Failed,
            }
        };
        // Stop the provider first (a model server stops generating), then record the end.
        drop(answer);
        self.finish(&stream, done, ending).await;
    }

    /// The provider's prompt: the new message, with the session's latest messages when the
    /// provider wants them. A history that cannot be read leaves the context empty.
    async fn prompt(&self, stream: &StreamHandle, user_message: ChatMessage) -> Prompt {
        let (limit, max_chars) = self.provider.context_limits();
        if limit == 0 || max_chars == 0 {
            return Prompt {
                context: Vec::new(),
                message: user_message.content,
            };
        }
        match self.core.history.conversation(&stream.session).await {
            Ok(conversation) => Prompt::from_history(
                &conversation.messages,
                &user_message.message_id,
                user_message.content,
                limit,
                max_chars,
            ),
            Err(e) => {
                warn!(session_id = %stream.session, cause = %e,
                    "the session's history could not be read; answering without context");
                Prompt {
                    context: Vec::new(),
                    message: user_message.content,
                }
            }
        }
    }

    /// This node stalled past its lease (a freeze, a long pause) and a reaper failed the
    /// answer; it records that in SQL. Nothing of this node's reaches a socket any more.
    fn fenced(&self, stream: &StreamHandle, index: u32) {
        self.stats.fenced.increment(1);
        warn!(session_id = %stream.session, message_id = %stream.message, index,
            "stream lease lost (fenced): another node has ended this answer; stopping");
    }

    /// Logs (with what the server said) and counts a provider's failure.
    fn upstream_failed(&self, stream: &StreamHandle, index: u32, e: &ProviderError) {
        self.stats.upstream_error(e.kind());
        warn!(session_id = %stream.session, message_id = %stream.message, chunks = index,
            kind = e.kind(), cause = %e, "the model server failed the answer; ending it as failed");
    }

    /// How long a Redis write of the stream is retried before the answer is failed: as long as
    /// its lease, which covers a Redis Cluster master failing over (node timeout plus a
    /// second or two). Retrying past the lease is harmless: once a reaper has failed the
    /// answer, the write is fenced.
    fn redis_retry_for(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// How long a chunk leaves the answer's deadline where it is: a tenth of the lease, at
    /// most a second.
    fn renew_every(&self) -> Duration {
        (Duration::from_secs(self.lease_secs) / 10).min(Duration::from_secs(1))
    }

    /// Appends one chunk (with `renew`, also pushing the answer's deadline forward), retrying
    /// Redis errors for a while (a retry of the same index is harmless). `None` when Redis
    /// stayed unreachable.
    async fn append(
        &self,
        stream: &StreamHandle,
        index: u32,
        delta: &str,
        renew: bool,
    ) -> Option<ChunkOutcome> {
        let deadline = tokio::time::Instant::now() + self.redis_retry_for();
        let mut pause = Duration::from_millis(50);
        let mut renew = renew.then_some(self.lease_secs);
        loop {
            match self
                .core
                .state
                .append_chunk(stream, index, delta, renew)
                .await
            {
                Ok(outcome) => return Some(outcome),
                Err(e) if tokio::time::Instant::now() + pause < deadline => {
                    warn!(session_id = %stream.session, message_id = %stream.message, index,
                        cause = %e, "appending a chunk failed; retrying");
                    tokio::time::sleep(pause).await;
                    // Time has passed: the retry pushes the deadline forward whatever was due.
                    renew = Some(self.lease_secs);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    warn!(session_id = %stream.session, message_id = %stream.message, index,
                        cause = %e, "appending a chunk failed; failing the answer");
                    return None;
                }
            }
        }
    }

    /// Ends the answer with what was produced, retrying Redis errors for a while, and records
    /// the end in SQL when this node ended it (otherwise whoever did records it).
    async fn finish(&self, stream: &StreamHandle, done: Produced, ending: Ending) {
        let Produced {
            mut content,
            chunks,
            arrived,
            metadata,
        } = done;
        let status = match ending {
            Ending::Completed => MessageStatus::Completed,
            Ending::Cancelled => {
                content.push_str(CANCELLED_SUFFIX);
                MessageStatus::Cancelled
            }
            Ending::Failed | Ending::Upstream => MessageStatus::Failed,
        };
        let error = matches!(ending, Ending::Upstream).then(|| ServerFrame::Error {
            error: UPSTREAM_ERROR_TEXT.to_owned(),
            code: ErrorCode::UpstreamError,
            timestamp: protocol::now_ms(),
            message_id: Some(stream.message.clone()),
        });
        let mut answer = stream.answer.finished(content, status);
        answer.metadata = metadata.into_option();
        let deadline = tokio::time::Instant::now() + self.redis_retry_for();
        loop {
            match self
                .core
                .state
                .end_stream(stream, &answer, error.as_ref())
                .await
            {
                Ok(ended) => {
                    info!(session_id = %stream.session, message_id = %stream.message,
                        status = ?status, ended = ended.is_some(), "answer ended");
                    if let Some(change) = ended {
                        let took = arrived.map(|a| a.elapsed()).unwrap_or_default();
                        self.stats.ended(status, took);
                        self.core.writer.answer_ended(&answer, chunks, change);
                    }
                    return;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    warn!(session_id = %stream.session, message_id = %stream.message,
                        cause = %e, "ending the answer failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    warn!(session_id = %stream.session, message_id = %stream.message,
                        cause = %e, "could not end the answer; its lease will expire");
                    return;
                }
            }
        }
    }
}
