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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use protocol::{ChatMessage, MessageId, SessionId, StreamingState, UserId};
use redis_state::ChatState;
use store::Store;
use tracing::info;

/// Errors of the read path, by the store that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Redis(#[from] redis_state::Error),
    #[error(transparent)]
    Sql(#[from] store::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Hits and misses per level.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub l1_hits: AtomicU64,
    pub l1_misses: AtomicU64,
    pub l2_hits: AtomicU64,
    pub l2_misses: AtomicU64,
    pub sql_hits: AtomicU64,
    pub sql_misses: AtomicU64,
}

impl CacheStats {
    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(level, outcome, count)` rows, for metrics.
    pub fn rows(&self) -> [(&'static str, &'static str, u64); 6] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("l1", "hit", get(&self.l1_hits)),
            ("l1", "miss", get(&self.l1_misses)),
            ("l2", "hit", get(&self.l2_hits)),
            ("l2", "miss", get(&self.l2_misses)),
            ("sql", "hit", get(&self.sql_hits)),
            ("sql", "miss", get(&self.sql_misses)),
        ]
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

/// The history read path of one node. Cheap to clone.
#[derive(Clone)]
pub struct HistoryReader {
    state: ChatState,
    store: Store,
    l1: moka::sync::Cache<SessionId, Arc<Cached>>,
    pub stats: Arc<CacheStats>,
}

impl HistoryReader {
    /// `l1_max_sessions` (`CACHE_L1_MAX_SIZE`) sessions are kept at most, each for `l1_ttl`
    /// after it was written and half that after it was last read.
    pub fn new(state: ChatState, store: Store, l1_max_sessions: u64, l1_ttl: Duration) -> Self {
        let l1 = moka::sync::Cache::builder()
            .max_capacity(l1_max_sessions)
            .time_to_live(l1_ttl)
            .time_to_idle(l1_ttl / 2)
            .build();
        Self {
            state,
            store,
            l1,
            stats: Arc::default(),
        }
    }

    /// The session's history and in-flight answer, as one consistent snapshot.
    pub async fn conversation(&self, session: &SessionId) -> Result<Conversation> {
        let cached = self.l1.get(session);
        let known = cached.as_ref().map(|c| (c.len, &c.last_id));
        let mut snapshot = self.state.snapshot_since(session, known).await?;
        let mut history = match cached {
            Some(c) if known.is_some_and(|(len, _)| len > 0 && snapshot.history_from == len) => {
                CacheStats::inc(&self.stats.l1_hits);
                let mut messages = Vec::with_capacity(c.messages.len() + snapshot.history.len());
                messages.extend(c.messages.iter().cloned());
                messages.append(&mut snapshot.history);
                messages
            }
            _ => {
                CacheStats::inc(&self.stats.l1_misses);
                if snapshot.history_len > 0 {
                    CacheStats::inc(&self.stats.l2_hits);
                } else {
                    CacheStats::inc(&self.stats.l2_misses);
                    if self.rewarm(session).await? {
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

    /// The user `session` belongs to: Redis, else SQL (then Redis is told again). `None` for
    /// a session nobody has chatted in.
    pub async fn owner(&self, session: &SessionId) -> Result<Option<UserId>> {
        if let Some(user) = self.state.session_user(session).await? {
            return Ok(Some(user));
        }
        let user = self.store.session_user(session).await?;
        if let Some(user) = &user {
            self.state.warm_session_user(session, user).await?;
        }
        Ok(user)
    }

    /// Redis has no history (or no user) for `session`: refill them from SQL (completed
    /// messages only; an in-flight answer lives in its chunk log). Returns whether SQL had any
    /// messages. Writers call it too, before appending to a history that Redis has lost.
    pub async fn rewarm(&self, session: &SessionId) -> Result<bool> {
        self.owner(session).await?;
        let stored: Vec<ChatMessage> = self
            .store
            .history(session)
            .await?
            .into_iter()
            .filter(|m| m.is_complete)
            .collect();
        if stored.is_empty() {
            CacheStats::inc(&self.stats.sql_misses);
            return Ok(false);
        }
        CacheStats::inc(&self.stats.sql_hits);
        let warmed = self.state.warm_history(session, &stored).await?;
        info!(session_id = %session, messages = stored.len(), warmed,
            "history rebuilt from SQL");
        Ok(true)
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
