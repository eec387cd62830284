//! Durable history: the SQL schema, its migrations and every query, for SQLite (one file shared
//! by the processes of a host) and PostgreSQL (past one host), through sqlx's `Any` driver.
//!
//! The AI service is the writer of record: it queues writes on a [`StoreWriter`], whose task
//! applies them in order, batching chunk rows, retrying failures, and never making the stream
//! wait. Readers call [`Store`] directly.
//!
//! # Layout
//! - [`Store`] (this file): connecting, migrating, the queries.
//! - `writer.rs`: [`StoreWriter`], the background writer.
//! - `migrations/`: the schema (one set of files for both databases).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use protocol::{ChatMessage, EventType, MessageId, MessageStatus, Role, SessionId, UserId};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

mod writer;

pub use writer::{StoreWriter, WriterStats};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached, or refused a statement.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("DATABASE_URL {0:?}: use sqlite://PATH or postgres://...")]
    Url(String),
    #[error("creating the database directory: {0}")]
    Io(#[from] std::io::Error),
    /// A stored row holds a value no writer of this code makes (an id outside the alphabet).
    #[error("a stored row is invalid: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Longest session title kept, in characters.
pub const TITLE_CHARS: usize = 60;
/// Set on every SQLite connection. WAL lets readers and one writer work at once across
/// processes; `busy_timeout` (ms) makes a second writer wait for the lock instead of failing
/// with "database is locked".
const SQLITE_PRAGMAS: &str =
    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;";

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

pub use protocol::rest::SessionSummary;

/// One streamed chunk of an answer, as the `stream_chunk` table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    pub message_id: MessageId,
    /// Position in its answer: 0, 1, 2, ...
    pub index: u32,
    /// The text this chunk adds.
    pub delta: String,
    /// When it was produced (ms since the epoch).
    pub at: i64,
}

/// The SQL store. Cheap to clone (a pool).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Connects to `url` (`sqlite://data/chat.db`, `sqlite::memory:`, `postgres://...`), creating
    /// a SQLite file and its directory when missing, and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend: Backend = url.parse()?;
        let url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(15));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        migrate(&pool).await?;
        Ok(Store { pool })
    }

    /// A trivial query, for health checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records a new user message: the message, the session (created with this message as its
    /// title, or its last activity moved), and an audit row, in one transaction.
    pub async fn record_user_message(&self, message: &ChatMessage) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        upsert_message(&mut *tx, message).await?;
        let title: String = message.content.chars().take(TITLE_CHARS).collect();
        sqlx::query(
            "INSERT INTO chat_session \
               (session_id, user_id, conversation_id, title, status, start_time, last_activity_time) \
             VALUES ($1, $2, $3, $4, 'active', $5, $6) \
             ON CONFLICT (session_id) DO UPDATE SET last_activity_time = excluded.last_activity_time",
        )
        .bind(message.session_id.as_str())
        .bind(message.user_id.as_str())
        .bind(message.session_id.as_str())
        .bind(title)
        .bind(message.timestamp)
        .bind(message.timestamp)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut *tx,
            &message.session_id,
            EventType::ChatMessage,
            Some(&message.message_id),
            message.timestamp,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a lifecycle event of an answer: the message as it now is, the session's last
    /// activity, and an audit row, in one transaction. A retry changes nothing more.
    pub async fn record_answer(
        &self,
        message: &ChatMessage,
        event: EventType,
        at: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        upsert_message(&mut *tx, message).await?;
        sqlx::query("UPDATE chat_session SET last_activity_time = $1 WHERE session_id = $2")
            .bind(at)
            .bind(message.session_id.as_str())
            .execute(&mut *tx)
            .await?;
        audit(
            &mut *tx,
            &message.session_id,
            event,
            Some(&message.message_id),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores chunk rows in one transaction; rows already stored are skipped.
    pub async fn append_chunks(&self, rows: &[ChunkRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO stream_chunk (id, message_id, chunk_index, content, timestamp) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(format!("{}:{}", row.message_id, row.index))
            .bind(row.message_id.as_str())
            .bind(i64::from(row.index))
            .bind(row.delta.as_str())
            .bind(row.at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A session's messages in conversation order (a user message before the answer it got).
    pub async fn history(&self, session_id: &SessionId) -> Result<Vec<ChatMessage>> {
        let rows = sqlx::query(
            "SELECT id, conversation_id, user_id, role, content, status, created_at \
             FROM message WHERE conversation_id = $1 AND created_at > COALESCE( \
               (SELECT NULLIF(cleared_at, 0) FROM chat_session WHERE session_id = $2), -1) \
             ORDER BY created_at, CASE role WHEN 'user' THEN 0 ELSE 1 END, id",
        )
        .bind(session_id.as_str())
        .bind(session_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// `user_id`'s sessions, most recent first.
    pub async fn sessions(&self, user_id: &UserId, limit: u32) -> Result<Vec<SessionSummary>> {
        let rows = sqlx::query(
            "SELECT session_id, title, last_activity_time, start_time FROM chat_session \
             WHERE user_id = $1 ORDER BY last_activity_time DESC, session_id LIMIT $2",
        )
        .bind(user_id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SessionSummary {
                    session_id: id_from(row, "session_id")?,
                    title: row.try_get("title")?,
                    last_activity_time: row.try_get("last_activity_time")?,
                    start_time: row.try_get("start_time")?,
                })
            })
            .collect()
    }

    /// Deletes a session's messages and their chunks (the session row and the audit trail
    /// stay), and marks the session cleared at `at`, so that messages created until then stay
    /// hidden even if a write queued earlier lands later. Returns how many messages were deleted.
    pub async fn delete_history(&self, session_id: &SessionId, at: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM stream_chunk WHERE message_id IN \
             (SELECT id FROM message WHERE conversation_id = $1)",
        )
        .bind(session_id.as_str())
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM message WHERE conversation_id = $1")
            .bind(session_id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE chat_session SET cleared_at = $1 WHERE session_id = $2")
            .bind(at)
            .bind(session_id.as_str())
            .execute(&mut *tx)
            .await?;
        audit(&mut *tx, session_id, EventType::HistoryDeleted, None, at).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

/// Queries that only tests and checks ask: what the writer has stored.
#[cfg(any(test, feature = "test-support"))]
impl Store {
    /// Number of stored chunk rows of a message.
    pub async fn chunk_count(&self, message_id: &MessageId) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM stream_chunk WHERE message_id = $1")
            .bind(message_id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// The audit trail of a session: `(event type, message id)` in the order written.
    pub async fn audit_trail(&self, session_id: &SessionId) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT event_type, event_data FROM audit_log WHERE session_id = $1 \
             ORDER BY timestamp, id",
        )
        .bind(session_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let data: String = row.try_get("event_data")?;
                let data: serde_json::Value =
                    serde_json::from_str(&data).map_err(|e| Error::Corrupt(e.to_string()))?;
                Ok((
                    row.try_get("event_type")?,
                    data["messageId"].as_str().unwrap_or_default().to_owned(),
                ))
            })
            .collect()
    }
}

/// Applies pending migrations. Processes starting together on a new SQLite file race to create
/// the schema (PostgreSQL serializes them with an advisory lock; SQLite has none): the loser
/// retries and then finds the migrations applied.
async fn migrate(pool: &AnyPool) -> Result<()> {
    let mut attempt = 0;
    loop {
        match sqlx::migrate!("./migrations").run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 10 => {
                attempt += 1;
                tracing::debug!(attempt, cause = %e, "migration raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn upsert_message<'c, E>(executor: E, m: &ChatMessage) -> Result<()>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO message (id, conversation_id, user_id, role, content, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET content = excluded.content, status = excluded.status, \
           updated_at = excluded.updated_at",
    )
    .bind(m.message_id.as_str())
    .bind(m.session_id.as_str())
    .bind(m.user_id.as_str())
    .bind(role_text(m.role))
    .bind(&m.content)
    .bind(status_text(m.status))
    .bind(m.timestamp)
    .bind(protocol::now_ms())
    .execute(executor)
    .await?;
    Ok(())
}

/// Writes one audit row. Its id is made from what it records (the event and its message, or
/// the session and time for an event without a message), so a retried write is a no-op rather
/// than a second row.
async fn audit<'c, E>(
    executor: E,
    session: &SessionId,
    event: EventType,
    message_id: Option<&MessageId>,
    at: i64,
) -> Result<()>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    let id = match message_id {
        Some(message) => format!("{event}:{message}"),
        None => format!("{event}:{session}:{at}"),
    };
    let data = serde_json::json!({ "messageId": message_id.map_or("", MessageId::as_str) });
    sqlx::query(
        "INSERT INTO audit_log (id, session_id, event_type, event_data, timestamp) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(session.as_str())
    .bind(event.as_str())
    .bind(data.to_string())
    .bind(at)
    .execute(executor)
    .await?;
    Ok(())
}

fn message_from_row(row: &AnyRow) -> Result<ChatMessage> {
    let status = status_from(&row.try_get::<String, _>("status")?);
    Ok(ChatMessage {
        message_id: id_from(row, "id")?,
        session_id: id_from(row, "conversation_id")?,
        user_id: id_from(row, "user_id")?,
        role: role_from(&row.try_get::<String, _>("role")?),
        content: row.try_get("content")?,
        timestamp: row.try_get("created_at")?,
        is_complete: status.is_final(),
        status,
        index: None,
        chunk: None,
    })
}

/// Reads column `column` as one of the id types.
fn id_from<T>(row: &AnyRow, column: &str) -> Result<T>
where
    T: TryFrom<String, Error = protocol::InvalidInput>,
{
    let raw: String = row.try_get(column)?;
    T::try_from(raw).map_err(|e| Error::Corrupt(format!("{column}: {e}")))
}

fn role_text(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
    }
}

fn role_from(text: &str) -> Role {
    match text {
        "user" => Role::User,
        "system" => Role::System,
        _ => Role::Assistant,
    }
}

fn status_text(status: MessageStatus) -> &'static str {
    match status {
        MessageStatus::Pending => "pending",
        MessageStatus::Streaming => "streaming",
        MessageStatus::Completed => "completed",
        MessageStatus::Cancelled => "cancelled",
        MessageStatus::Failed => "failed",
    }
}

fn status_from(text: &str) -> MessageStatus {
    match text {
        "pending" => MessageStatus::Pending,
        "streaming" => MessageStatus::Streaming,
        "cancelled" => MessageStatus::Cancelled,
        "failed" => MessageStatus::Failed,
        _ => MessageStatus::Completed,
    }
}

/// `sqlite://path` with the file's directory created and `mode=rwc` (create if missing).
fn sqlite_url(url: &str) -> Result<String> {
    if url.contains(":memory:") {
        return Ok(url.to_owned());
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| Error::Url(url.to_owned()))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !params.iter().any(|p| p.starts_with("mode=")) {
        params.push("mode=rwc");
    }
    Ok(format!("sqlite://{path}?{}", params.join("&")))
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres") {
            Ok(Backend::Postgres)
        } else {
            Err(Error::Url(url.to_owned()))
        }
    }
}
