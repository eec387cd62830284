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

use protocol::{ChatMessage, MessageStatus, Role};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

mod writer;

pub use writer::{StoreWriter, WriterStats};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("DATABASE_URL {0:?}: use sqlite://PATH or postgres://...")]
    Url(String),
    #[error("creating the database directory: {0}")]
    Io(#[from] std::io::Error),
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
pub enum Backend {
    Sqlite,
    Postgres,
}

pub use protocol::rest::SessionSummary;

/// The SQL store. Cheap to clone (a pool).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
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
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A trivial query, for health checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Inserts `message`, or updates its content, status and update time if it exists.
    pub async fn save_message(&self, message: &ChatMessage) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        upsert_message(&mut *tx, message).await?;
        tx.commit().await?;
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
        .bind(&message.session_id)
        .bind(&message.user_id)
        .bind(&message.session_id)
        .bind(title)
        .bind(message.timestamp)
        .bind(message.timestamp)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut *tx,
            &message.session_id,
            "CHAT_MESSAGE",
            &message.message_id,
            message.timestamp,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a lifecycle event of an answer: the message as it now is, the session's last
    /// activity, and an audit row, in one transaction.
    pub async fn record_answer(&self, message: &ChatMessage, event: &str, at: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        upsert_message(&mut *tx, message).await?;
        sqlx::query("UPDATE chat_session SET last_activity_time = $1 WHERE session_id = $2")
            .bind(at)
            .bind(&message.session_id)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut *tx,
            &message.session_id,
            event,
            &message.message_id,
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores chunk rows `(message_id, index, delta, timestamp)` in one transaction; rows
    /// already stored are skipped.
    pub async fn append_chunks(&self, rows: &[(String, u32, String, i64)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (message_id, index, delta, at) in rows {
            sqlx::query(
                "INSERT INTO stream_chunk (id, message_id, chunk_index, content, timestamp) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(format!("{message_id}:{index}"))
            .bind(message_id)
            .bind(i64::from(*index))
            .bind(delta)
            .bind(*at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A session's messages in conversation order (a user message before the answer it got).
    pub async fn history(&self, session_id: &str) -> Result<Vec<ChatMessage>> {
        let rows = sqlx::query(
            "SELECT id, conversation_id, user_id, role, content, status, created_at \
             FROM message WHERE conversation_id = $1 AND created_at > COALESCE( \
               (SELECT NULLIF(cleared_at, 0) FROM chat_session WHERE session_id = $2), -1) \
             ORDER BY created_at, CASE role WHEN 'user' THEN 0 ELSE 1 END, id",
        )
        .bind(session_id)
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// `user_id`'s sessions, most recent first.
    pub async fn sessions(&self, user_id: &str, limit: u32) -> Result<Vec<SessionSummary>> {
        let rows = sqlx::query(
            "SELECT session_id, title, last_activity_time, start_time FROM chat_session \
             WHERE user_id = $1 ORDER BY last_activity_time DESC, session_id LIMIT $2",
        )
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SessionSummary {
                    session_id: row.try_get("session_id")?,
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
    pub async fn delete_history(&self, session_id: &str, at: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM stream_chunk WHERE message_id IN \
             (SELECT id FROM message WHERE conversation_id = $1)",
        )
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM message WHERE conversation_id = $1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE chat_session SET cleared_at = $1 WHERE session_id = $2")
            .bind(at)
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        audit(&mut *tx, session_id, "HISTORY_DELETED", "", at).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Number of stored chunk rows of a message (for tests and checks).
    pub async fn chunk_count(&self, message_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM stream_chunk WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
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
    .bind(&m.message_id)
    .bind(&m.session_id)
    .bind(&m.user_id)
    .bind(role_text(m.role))
    .bind(&m.content)
    .bind(status_text(m.status))
    .bind(m.timestamp)
    .bind(protocol::now_ms())
    .execute(executor)
    .await?;
    Ok(())
}

async fn audit<'c, E>(
    executor: E,
    session: &str,
    event: &str,
    message_id: &str,
    at: i64,
) -> Result<()>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    let data = serde_json::json!({ "messageId": message_id }).to_string();
    sqlx::query(
        "INSERT INTO audit_log (id, session_id, event_type, event_data, timestamp) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(session)
    .bind(event)
    .bind(data)
    .bind(at)
    .execute(executor)
    .await?;
    Ok(())
}

fn message_from_row(row: &AnyRow) -> Result<ChatMessage> {
    let status = status_from(&row.try_get::<String, _>("status")?);
    Ok(ChatMessage {
        message_id: row.try_get("id")?,
        session_id: row.try_get("conversation_id")?,
        user_id: row.try_get("user_id")?,
        role: role_from(&row.try_get::<String, _>("role")?),
        content: row.try_get("content")?,
        timestamp: row.try_get("created_at")?,
        is_complete: status.is_final(),
        status,
        index: None,
        chunk: None,
    })
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
