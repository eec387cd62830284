//! Producing answers: one task per answer, chunk after chunk, until the end, a cancel, or
//! shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use history::Rewarmed;
use node::Core;
use protocol::rest::{ChatAccepted, ChatRequest};
use protocol::{ChatMessage, DomainEvent, MessageId, MessageStatus, SessionId};
use redis_state::{ChunkOutcome, HistoryCheck, StartOutcome, StreamHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, warn};

use crate::simulator;
use crate::stats::AiStats;

/// Text appended to an answer that was cancelled.
pub const CANCELLED_SUFFIX: &str = "\n\n[Cancelled]";
/// How long shutdown waits for queued SQL writes (the database may be down).
const SQL_FLUSH_LIMIT: Duration = Duration::from_secs(5);
/// How long a Redis write of the stream is retried before the answer is failed.
const REDIS_RETRY_FOR: Duration = Duration::from_secs(5);

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
}

/// Starts answers and keeps track of the tasks producing them.
#[derive(Clone)]
pub struct Streamer {
    /// Redis (the stream), history (to put a lost Redis history back from SQL before a new
    /// message is appended to it), and the writes of record to SQL.
    core: Core,
    delay: Duration,
    lease_secs: u64,
    /// Every answer task; closed and awaited at shutdown.
    tasks: TaskTracker,
    /// Cancelled when the shutdown grace period is over: answers still running end as failed.
    abort: CancellationToken,
    stats: Arc<AiStats>,
}

impl Streamer {
    pub fn new(core: Core, delay: Duration, lease_secs: u64) -> Self {
        Self {
            delay,
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
        let reply = simulator::reply_for(&user_message.content);
        let accepted = ChatAccepted {
            status: "accepted".into(),
            session_id: session,
            user_message_id: user_message.message_id,
            message_id: stream.message.clone(),
            node_id: self.core.node_id.to_string(),
        };
        let this = self.clone();
        self.tasks
            .spawn(async move { this.produce(stream, reply, arrived).await }.in_current_span());
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

    /// Streams `reply` as the answer of `stream`.
    async fn produce(&self, stream: StreamHandle, reply: &'static str, arrived: Instant) {
        let mut done = Produced {
            arrived: Some(arrived),
            ..Produced::default()
        };
        // One word every `delay`, counted from the previous word's due time rather than from
        // the end of its write, so a chunk's Redis round trip does not stretch the cadence; a
        // word that is late (a slow write, a busy node) is not followed by a burst.
        let mut due = tokio::time::Instant::now();
        for (index, delta) in (0u32..).zip(simulator::deltas(reply)) {
            due = (due + self.delay).max(tokio::time::Instant::now());
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = self.abort.cancelled() => {
                    self.finish(&stream, done, MessageStatus::Failed).await;
                    return;
                }
            }
            match self.append(&stream, index, delta).await {
                Some(ChunkOutcome::Appended) => {
                    if index == 0 {
                        self.stats.first_chunk.record(arrived.elapsed());
                    }
                    self.stats.chunks.increment(1);
                    done.content.push_str(delta);
                    done.chunks += 1;
                    self.core.writer.chunk(&stream.message, index, delta);
                    if self.core.events.chunk_events().includes(index) {
                        let now = protocol::now_ms();
                        let event = DomainEvent::chunk_received(&stream.answer, index, delta, now);
                        self.core.events.emit(&event);
                    }
                }
                Some(ChunkOutcome::Cancelled) => {
                    done.content.push_str(CANCELLED_SUFFIX);
                    self.finish(&stream, done, MessageStatus::Cancelled).await;
                    return;
                }
                Some(ChunkOutcome::LeaseLost) => {
                    // This node stalled past its lease (a freeze, a long pause) and a reaper
                    // failed the answer; it records that in SQL. Nothing of this node's
                    // reaches a socket any more: stop quietly.
                    self.stats.fenced.increment(1);
                    warn!(session_id = %stream.session, message_id = %stream.message, index,
                        "stream lease lost (fenced): another node has ended this answer; stopping");
                    return;
                }
                None => {
                    self.finish(&stream, done, MessageStatus::Failed).await;
                    return;
                }
            }
        }
        self.finish(&stream, done, MessageStatus::Completed).await;
    }

    /// Appends one chunk, retrying Redis errors for a while (a retry of the same index is
    /// harmless). `None` when Redis stayed unreachable.
    async fn append(&self, stream: &StreamHandle, index: u32, delta: &str) -> Option<ChunkOutcome> {
        let deadline = tokio::time::Instant::now() + REDIS_RETRY_FOR;
        let mut pause = Duration::from_millis(50);
        loop {
            match self
                .core
                .state
                .append_chunk(stream, index, delta, self.lease_secs)
                .await
            {
                Ok(outcome) => return Some(outcome),
                Err(e) if tokio::time::Instant::now() + pause < deadline => {
                    warn!(session_id = %stream.session, message_id = %stream.message, index,
                        cause = %e, "appending a chunk failed; retrying");
                    tokio::time::sleep(pause).await;
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
    async fn finish(&self, stream: &StreamHandle, done: Produced, status: MessageStatus) {
        let Produced {
            content,
            chunks,
            arrived,
        } = done;
        let deadline = tokio::time::Instant::now() + REDIS_RETRY_FOR;
        loop {
            match self
                .core
                .state
                .finish_stream(stream, content.clone(), status)
                .await
            {
                Ok(ended) => {
                    info!(session_id = %stream.session, message_id = %stream.message,
                        status = ?status, ended = ended.is_some(), "answer ended");
                    if let Some(change) = ended {
                        let took = arrived.map(|a| a.elapsed()).unwrap_or_default();
                        self.stats.ended(status, took);
                        let answer = stream.answer.finished(content, status);
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
