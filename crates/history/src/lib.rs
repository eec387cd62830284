//! Reading a session's history: L1 (moka, in this node's memory) → L2 (Redis) → SQL.
//!
//! Every read is one atomic Redis snapshot, because the WebSocket handshake needs history and
//! the in-flight answer from the same instant (docs/PROTOCOL.md). L1 saves the bulk of it: it
//! keeps the session's completed messages with the stored list's length and last message id,
//! and the snapshot script then returns only the entries added since. L1 entries are therefore
//! validated against Redis on every read instead of being invalidated by broadcast: a
//! broadcast can arrive after the read it should have affected, a validation cannot. A deleted
//! or rewritten history fails the validation and is read whole.
//!
//! When Redis has no history for the session (expired after 24 h, or flushed), the completed
//! messages are read from SQL, Redis is re-warmed with them, and the snapshot is taken again.
//!
//! SQL is never on the delivery path: reads of it here are bounded ([`SQL_READ_BUDGET`]) and
//! skipped for a moment after one failed ([`SQL_RETRY_AFTER`]), and while it is unreachable a
//! session is served from Redis alone. A chat started meanwhile in a session Redis knew nothing
//! of is marked `unmerged` ([`redis_state::HistoryCheck::Unverified`]); the first read that
//! reaches SQL again merges the stored history in.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};
use protocol::{ChatMessage, MessageId, SessionId, StreamingState, UserId};
use redis_state::ChatState;
use store::Store;
use tracing::{info, warn};

/// Longest a read of SQL may hold up a socket's handshake or a chat.
pub const SQL_READ_BUDGET: Duration = Duration::from_millis(500);
/// After a read of SQL failed or timed out, reads skip it for this long.
pub const SQL_RETRY_AFTER: Duration = Duration::from_secs(2);

/// Errors of the read path, by the store that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Redis(#[from] redis_state::Error),
    #[error(transparent)]
    Sql(#[from] store::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Reads per level and outcome: `history_cache_total{node_id, level, outcome}` (`l1`, `l2`,
/// `sql` × `hit`, `miss`; `sql` × `unavailable` for reads served from Redis alone because SQL
/// could not be asked), and `sql_call_duration_seconds{op="history_read"}`.
#[derive(Debug, Clone)]
pub struct CacheStats {
    pub l1_hits: Counter,
    pub l1_misses: Counter,
    pub l2_hits: Counter,
    pub l2_misses: Counter,
    pub sql_hits: Counter,
    pub sql_misses: Counter,
    pub sql_unavailable: Counter,
    pub sql_reads: Histogram,
}

impl CacheStats {
    /// Registers the series of node `node_id`.
    pub fn new(node_id: &str) -> Self {
        metrics::describe_counter!(
            "history_cache_total",
            "History reads by cache level and outcome"
        );
        metrics::describe_histogram!(
            "sql_call_duration_seconds",
            metrics::Unit::Seconds,
            "SQL calls by operation"
        );
        let counter = |level: &'static str, outcome: &'static str| {
            metrics::counter!("history_cache_total",
                "node_id" => node_id.to_owned(), "level" => level, "outcome" => outcome)
        };
        Self {
            l1_hits: counter("l1", "hit"),
            l1_misses: counter("l1", "miss"),
            l2_hits: counter("l2", "hit"),
            l2_misses: counter("l2", "miss"),
            sql_hits: counter("sql", "hit"),
            sql_misses: counter("sql", "miss"),
            sql_unavailable: counter("sql", "unavailable"),
            sql_reads: metrics::histogram!("sql_call_duration_seconds",
                "node_id" => node_id.to_owned(), "op" => "history_read"),
        }
    }
}

/// What L1 keeps per session.
struct Cached {
    /// Length of the stored Redis history these messages were read from.
    len: usize,
    /// Id of the last of them: the stored list must still hold it at position `len - 1`.
    last_id: MessageId,
    messages: Arc<Vec<ChatMessage>>,
}

/// A session's conversation at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Chronological; an in-flight answer is last, with its content so far.
    pub messages: Vec<ChatMessage>,
    pub streaming: Option<StreamingState>,
}

/// What [`HistoryReader::rewarm`] found in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewarmed {
    /// SQL held messages; Redis has them again.
    Refilled,
    /// SQL holds nothing for the session: it is new (or was deleted).
    Empty,
    /// SQL could not be asked (down, hanging, locked): nobody knows what it holds.
    SqlUnavailable,
}

/// Reads of SQL on the delivery path: bounded in time, and skipped for a while after one
/// failed, so that a database that is down or hanging costs a socket or a chat nothing.
struct SqlReads {
    /// Until when reads skip SQL.
    down_until: Mutex<Option<Instant>>,
    /// How long each read took (timed-out ones included).
    latency: Histogram,
}

impl SqlReads {
    /// Runs `read`; `None` when SQL is unavailable (now, or known to be since a moment ago).
    /// A read that fails as unavailable is tried once more within the budget: the first query
    /// after a database restart meets a pooled connection that died with it.
    async fn read<T, F, Fut>(&self, mut read: F) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = store::Result<T>>,
    {
        if self.lock().is_some_and(|until| Instant::now() < until) {
            return Ok(None);
        }
        let attempts = async {
            match read().await {
                Err(e) if e.is_unavailable() => read().await,
                done => done,
            }
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(SQL_READ_BUDGET, attempts).await;
        self.latency.record(started.elapsed());
        let failure = match outcome {
            Ok(Ok(value)) => {
                *self.lock() = None;
                return Ok(Some(value));
            }
            Ok(Err(e)) if e.is_unavailable() => e.to_string(),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => format!("no answer within {SQL_READ_BUDGET:?}"),
        };
        let mut down_until = self.lock();
        if down_until.is_none() {
            warn!(cause = %failure, "SQL unavailable; serving history from Redis alone");
        }
        *down_until = Some(Instant::now() + SQL_RETRY_AFTER);
        Ok(None)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The history read path of one node. Cheap to clone.
#[derive(Clone)]
pub struct HistoryReader {
    state: ChatState,
    store: Store,
    sql: Arc<SqlReads>,
    l1: moka::sync::Cache<SessionId, Arc<Cached>>,
    pub stats: CacheStats,
}

impl HistoryReader {
    /// `l1_max_sessions` (`CACHE_L1_MAX_SIZE`) sessions are kept at most, each for `l1_ttl`
    /// after it was written and half that after it was last read.
    pub fn new(
        state: ChatState,
        store: Store,
        l1_max_sessions: u64,
        l1_ttl: Duration,
        stats: CacheStats,
    ) -> Self {
        let l1 = moka::sync::Cache::builder()
            .max_capacity(l1_max_sessions)
            .time_to_live(l1_ttl)
            .time_to_idle(l1_ttl / 2)
            .build();
        Self {
            state,
            store,
            sql: Arc::new(SqlReads {
                down_until: Mutex::default(),
                latency: stats.sql_reads.clone(),
            }),
            l1,
            stats,
        }
    }

    /// The session's history and in-flight answer, as one consistent snapshot.
    pub async fn conversation(&self, session: &SessionId) -> Result<Conversation> {
        let mut cached = self.l1.get(session);
        let known = cached.as_ref().map(|c| (c.len, &c.last_id));
        let mut snapshot = self.state.snapshot_since(session, known).await?;
        if snapshot.unmerged && self.merge(session).await? {
            cached = None;
            snapshot = self.state.snapshot(session).await?;
        }
        let known = cached.as_ref().map(|c| (c.len, &c.last_id));
        let mut history = match cached {
            Some(c) if known.is_some_and(|(len, _)| len > 0 && snapshot.history_from == len) => {
                self.stats.l1_hits.increment(1);
                let mut messages = Vec::with_capacity(c.messages.len() + snapshot.history.len());
                messages.extend(c.messages.iter().cloned());
                messages.append(&mut snapshot.history);
                messages
            }
            _ => {
                self.stats.l1_misses.increment(1);
                if snapshot.history_len > 0 {
                    self.stats.l2_hits.increment(1);
                } else {
                    self.stats.l2_misses.increment(1);
                    if self.rewarm(session).await? == Rewarmed::Refilled {
                        snapshot = self.state.snapshot(session).await?;
                    }
                }
                std::mem::take(&mut snapshot.history)
            }
        };
        if let Some(last) = history.last() {
            self.l1.insert(
                session.clone(),
                Arc::new(Cached {
                    len: snapshot.history_len,
                    last_id: last.message_id.clone(),
                    messages: Arc::new(history.clone()),
                }),
            );
        }
        let streaming = snapshot.streaming.map(|f| f.append_to(&mut history));
        Ok(Conversation {
            messages: history,
            streaming,
        })
    }

    /// Deletes the session's history in SQL and Redis; returns how many messages it held. SQL
    /// goes first: a read between the two steps must not re-warm Redis from rows that are
    /// about to go. The deletion takes its place in the session's changes first, so its event
    /// is published in order with the answers'.
    pub async fn delete(&self, session: &SessionId) -> Result<usize> {
        let change = self.state.next_change(session).await?;
        let in_sql = self
            .store
            .delete_history(session, protocol::now_ms(), Some(change))
            .await?;
        let in_redis = self.state.delete_history(session).await?;
        self.l1.invalidate(session);
        Ok(in_redis.max(usize::try_from(in_sql).unwrap_or(usize::MAX)))
    }

    /// The user `session` belongs to: Redis (which keeps it a month after the last chat),
    /// else SQL (then Redis is told again). `None` for a session nobody has chatted in, or
    /// when Redis does not know and SQL cannot be asked.
    pub async fn owner(&self, session: &SessionId) -> Result<Option<UserId>> {
        if let Some(user) = self.state.session_user(session).await? {
            return Ok(Some(user));
        }
        let Some(user) = self.sql.read(|| self.store.session_user(session)).await? else {
            self.stats.sql_unavailable.increment(1);
            return Ok(None);
        };
        if let Some(user) = &user {
            self.state.warm_session_user(session, user).await?;
        }
        Ok(user)
    }

    /// Redis has no history (or no user) for `session`: refill them from SQL (completed
    /// messages only; an in-flight answer lives in its chunk log). Writers call it too, before
    /// appending to a history that Redis has lost.
    pub async fn rewarm(&self, session: &SessionId) -> Result<Rewarmed> {
        self.owner(session).await?;
        let Some(stored) = self.stored(session).await? else {
            self.stats.sql_unavailable.increment(1);
            return Ok(Rewarmed::SqlUnavailable);
        };
        if stored.is_empty() {
            self.stats.sql_misses.increment(1);
            return Ok(Rewarmed::Empty);
        }
        self.stats.sql_hits.increment(1);
        let warmed = self.state.warm_history(session, &stored).await?;
        info!(session_id = %session, messages = stored.len(), warmed,
            "history rebuilt from SQL");
        Ok(Rewarmed::Refilled)
    }

    /// The session was chatted in while SQL was unreachable and Redis knew nothing of it:
    /// put the stored history in front of what Redis holds. Returns whether it was merged
    /// (false: SQL still unreachable; the next read tries again).
    async fn merge(&self, session: &SessionId) -> Result<bool> {
        let Some(stored) = self.stored(session).await? else {
            self.stats.sql_unavailable.increment(1);
            return Ok(false);
        };
        let stored_owner = self
            .sql
            .read(|| self.store.session_user(session))
            .await?
            .flatten();
        let live_owner = self.state.session_user(session).await?;
        if let (Some(stored_owner), Some(live_owner)) = (&stored_owner, &live_owner)
            && stored_owner != live_owner
        {
            // Somebody else chatted in a stored session while its owner could not be checked:
            // never show one user's messages to another.
            warn!(session_id = %session, %stored_owner, %live_owner,
                "not merging the stored history of another user's session");
            self.state.merge_history(session, &[]).await?;
            return Ok(true);
        }
        let added = self.state.merge_history(session, &stored).await?;
        self.l1.invalidate(session);
        info!(session_id = %session, added, "stored history merged in after SQL came back");
        Ok(true)
    }

    /// The session's complete messages in SQL; `None` when SQL cannot be asked now.
    async fn stored(&self, session: &SessionId) -> Result<Option<Vec<ChatMessage>>> {
        let stored = self.sql.read(|| self.store.history(session)).await?;
        Ok(stored.map(|messages| messages.into_iter().filter(|m| m.is_complete).collect()))
    }

    /// `user`'s sessions, most recent first, at most `limit` (from SQL: the session list is
    /// not cached).
    pub async fn sessions(&self, user: &UserId, limit: u32) -> Result<Vec<store::SessionSummary>> {
        Ok(self.store.sessions(user, limit).await?)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}
