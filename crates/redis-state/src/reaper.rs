//! Ending answers whose producer vanished (an AI node killed mid-stream, or cut off from Redis).
//!
//! Every streaming answer sits in `streaming:deadlines` (on a cluster, in its slot's
//! `streaming:deadlines:{tag}`), scored by when its lease runs out; the producer's chunks push
//! the deadline forward (at most once a tenth of the lease). Every node runs [`run_reaper`]:
//! once a deadline has passed, the answer is ended as `failed` with the text it had, an `error`
//! frame and a final frame are published, and the session's lease is released, so the session
//! takes a new chat only after the dead answer has its place in history. Several reapers may
//! race, and a producer that was only slow may come back; the `FAIL` script re-checks the
//! deadline, so either the producer's next chunk or the failure wins, never both.

use std::time::Duration;

use protocol::{ChatMessage, ErrorCode, MessageId, MessageStatus, ServerFrame, SessionId, keys};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::reader::parse_message;
use crate::{ChatState, Result};

/// An answer the reaper failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    /// Its final message: `failed`, with the text produced before its producer vanished.
    pub answer: ChatMessage,
    /// How many chunks it had.
    pub chunks: u32,
    /// The failure's number in the session's changes.
    pub change: i64,
}

/// What the `error` frame of a failed answer says.
pub const STREAM_FAILED_TEXT: &str =
    "the node producing this answer stopped; the answer is incomplete";

impl ChatState {
    /// Fails every answer whose lease has run out. Returns the final messages it wrote.
    ///
    /// On a cluster, every master is asked about the deadline sets of the slots it serves
    /// (one script call each); a master that cannot answer now (failing over, slots moving) is
    /// asked again next round, and the others are reaped meanwhile.
    pub async fn reap_orphans(&self) -> Result<Vec<Reaped>> {
        let mut failed = Vec::new();
        if !self.is_cluster() {
            self.reap_sets(vec![keys::STREAM_DEADLINES.to_owned()], &mut failed)
                .await?;
            return Ok(failed);
        }
        let mut last_error = None;
        for slots in self.slots_by_master().await? {
            let sets = slots.into_iter().map(keys::slot_deadlines).collect();
            if let Err(e) = self.reap_sets(sets, &mut failed).await {
                warn!(cause = %e, "reaping one master's slots failed; next round");
                last_error = Some(e);
            }
        }
        match last_error {
            Some(e) if failed.is_empty() => Err(e),
            _ => Ok(failed),
        }
    }

    /// Fails the due answers in deadline `sets` (all on one node), adding them to `failed`.
    async fn reap_sets(&self, sets: Vec<String>, failed: &mut Vec<Reaped>) -> Result<()> {
        let Some((first, rest)) = sets.split_first() else {
            return Ok(());
        };
        let mut invocation = self.scripts().due.prepare_invoke();
        invocation.key(first.as_str());
        for set in rest {
            invocation.arg(set.as_str());
        }
        let due: Vec<String> = invocation.invoke_async(&mut self.conn()).await?;
        for pair in due.chunks_exact(2) {
            let (set, member) = (&pair[0], &pair[1]);
            match keys::parse_deadline_member(member) {
                Some((session, message)) => {
                    if let Some(done) = self.fail_orphan(&session, &message, member).await? {
                        failed.push(done);
                    }
                }
                None => self.forget_deadline(set, member).await?,
            }
        }
        Ok(())
    }

    async fn fail_orphan(
        &self,
        session: &SessionId,
        message: &MessageId,
        member: &str,
    ) -> Result<Option<Reaped>> {
        let (record, chunks): (Option<String>, Vec<String>) = redis::pipe()
            .cmd("GET")
            .arg(keys::message(session, message))
            .cmd("LRANGE")
            .arg(keys::chunks(session, message))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await?;
        let Some(answer) = record.and_then(|json| parse_message(&json, session)) else {
            self.forget_deadline(&self.deadlines(session), member)
                .await?;
            return Ok(None);
        };
        if answer.is_complete {
            self.forget_deadline(&self.deadlines(session), member)
                .await?;
            return Ok(None);
        }
        let chunk_count = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let done = answer.finished(chunks.concat(), MessageStatus::Failed);
        let json = serde_json::to_string(&done)?;
        let error = ServerFrame::Error {
            error: STREAM_FAILED_TEXT.to_owned(),
            code: ErrorCode::StreamFailed,
            timestamp: protocol::now_ms(),
            message_id: Some(message.clone()),
        }
        .to_json();
        let frame = ServerFrame::Message { data: done.clone() }.to_json();
        let mut invocation = self.scripts().fail.prepare_invoke();
        invocation
            .key(keys::active_stream(session))
            .key(keys::history(session))
            .key(keys::message(session, message))
            .key(keys::chunks(session, message))
            .key(keys::cancel_flag(session, message))
            .key(keys::stream_channel(session))
            .key(self.deadlines(session))
            .key(keys::session_changes(session))
            .key(keys::ended(session, message))
            .arg(message.as_str())
            .arg(json)
            .arg(frame)
            .arg(keys::HISTORY_TTL_SECS)
            .arg(keys::ENDED_STREAM_TTL_SECS)
            .arg(member)
            .arg(keys::CHANGES_TTL_SECS)
            .arg(error);
        // The deadline goes with the failure: a failure whose reply was lost is never due
        // again, so it is retried here (the script answers a retry as the first run).
        let mut attempt = 0;
        let outcome: i64 = loop {
            attempt += 1;
            match invocation.invoke_async(&mut self.conn()).await {
                Ok(outcome) => break outcome,
                Err(e) if attempt < 5 => {
                    warn!(session_id = %session, message_id = %message, cause = %e,
                        "failing an orphaned answer failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if outcome < 1 {
            return Ok(None);
        }
        warn!(session_id = %session, message_id = %message,
            "answer failed: its producer's lease ran out");
        Ok(Some(Reaped {
            answer: done,
            chunks: chunk_count,
            change: outcome,
        }))
    }

    async fn forget_deadline(&self, set: &str, member: &str) -> Result<()> {
        let mut conn = self.conn();
        redis::cmd("ZREM")
            .arg(set)
            .arg(member)
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }
}

/// Runs [`ChatState::reap_orphans`] every `every` until `shutdown`, handing each failed answer
/// to `on_failed` (to record it durably). Errors (Redis down) are logged and retried on the
/// next round.
pub async fn run_reaper(
    state: ChatState,
    every: Duration,
    shutdown: CancellationToken,
    on_failed: impl Fn(&Reaped) + Send + 'static,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match state.reap_orphans().await {
            Ok(failed) if failed.is_empty() => {}
            Ok(failed) => {
                info!(failed = failed.len(), "reaper failed orphaned answers");
                failed.iter().for_each(&on_failed);
            }
            Err(e) => warn!(cause = %e, "reaper round failed"),
        }
    }
}
