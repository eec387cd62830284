//! Messages, sessions and chunks: the writes of record (each one transaction with the events
//! that describe it) and the reads.

use protocol::{ChatMessage, DomainEvent, MessageMetadata, MessageStatus, Role, SessionId, UserId};
use sqlx::any::AnyRow;
use sqlx::{Executor, Row};

use crate::events::write_events;
use crate::{Backend, ChunkRow, Error, Result, SessionSummary, Store, TITLE_CHARS};

/// One write of record, as an AI node makes them (the messages boxed, so that the queue of
/// them is sized for chunk rows). [`Store::write`] applies a batch of them in
/// one transaction; applying one again changes nothing more (every row and event has its id).
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// The start of an exchange, the session's change number `change`: the user's message,
    /// the session (created with this message as its title, or its last activity moved), the
    /// answer `node_id` started (streaming), and their events (`SESSION_STARTED` for a new
    /// session, `CHAT_MESSAGE`, `STREAM_STARTED`).
    AnswerStarted {
        user_message: Box<ChatMessage>,
        answer: Box<ChatMessage>,
        node_id: String,
        change: i64,
    },
    /// `answer` ended at `at` (its final content and status) after `total_chunks` chunks, the
    /// session's change number `change`: the message, the session's last activity,
    /// `STREAM_COMPLETED` / `STREAM_CANCELLED` / `STREAM_FAILED` and `CHAT_MESSAGE`.
    AnswerEnded {
        answer: Box<ChatMessage>,
        total_chunks: u32,
        change: i64,
        at: i64,
    },
    /// One streamed chunk (a row already stored is skipped).
    Chunk(ChunkRow),
}

/// Chunk rows per `INSERT` statement (4 parameters each; far below either database's limit).
const CHUNKS_PER_STATEMENT: usize = 100;

impl Store {
    /// Applies `records` in one transaction: the exchanges' writes in their order, and the
    /// chunk rows in multi-row inserts. Either all of them are stored or none.
    pub async fn write(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let outbox = self.outbox.is_some();
        let mut events = false;
        let mut chunks = Vec::new();
        let mut tx = self.pool.begin().await?;
        for record in records {
            match record {
                Record::AnswerStarted {
                    user_message,
                    answer,
                    node_id,
                    change,
                } => {
                    answer_started(&mut tx, outbox, user_message, answer, node_id, *change).await?;
                    events = true;
                }
                Record::AnswerEnded {
                    answer,
                    total_chunks,
                    change,
                    at,
                } => {
                    answer_ended(&mut tx, outbox, answer, *total_chunks, *change, *at).await?;
                    events = true;
                }
                Record::Chunk(row) => chunks.push(row),
            }
        }
        for rows in chunks.chunks(CHUNKS_PER_STATEMENT) {
            insert_chunks(&mut tx, self.backend, rows).await?;
        }
        tx.commit().await?;
        if events {
            self.events_committed();
        }
        Ok(())
    }

    /// [`Record::AnswerStarted`] alone, in its own transaction.
    pub async fn record_answer_started(
        &self,
        user_message: &ChatMessage,
        answer: &ChatMessage,
        node_id: &str,
        change: i64,
    ) -> Result<()> {
        self.write(&[Record::AnswerStarted {
            user_message: Box::new(user_message.clone()),
            answer: Box::new(answer.clone()),
            node_id: node_id.to_owned(),
            change,
        }])
        .await
    }

    /// [`Record::AnswerEnded`] alone, in its own transaction.
    pub async fn record_answer_ended(
        &self,
        answer: &ChatMessage,
        total_chunks: u32,
        change: i64,
        at: i64,
    ) -> Result<()> {
        self.write(&[Record::AnswerEnded {
            answer: Box::new(answer.clone()),
            total_chunks,
            change,
            at,
        }])
        .await
    }

    /// Stores chunk rows in one transaction; rows already stored are skipped.
    pub async fn append_chunks(&self, rows: &[ChunkRow]) -> Result<()> {
        let records: Vec<Record> = rows.iter().cloned().map(Record::Chunk).collect();
        self.write(&records).await
    }

    /// A session's messages in conversation order (a user message before the answer it got).
    pub async fn history(&self, session_id: &SessionId) -> Result<Vec<ChatMessage>> {
        let rows = sqlx::query(
            "SELECT id, conversation_id, user_id, role, content, status, created_at, metadata \
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

    /// The user `session_id` belongs to (whose chat created it), if it exists.
    pub async fn session_user(&self, session_id: &SessionId) -> Result<Option<UserId>> {
        let row = sqlx::query("SELECT user_id FROM chat_session WHERE session_id = $1")
            .bind(session_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| id_from(&row, "user_id")).transpose()
    }

    /// `user_id`'s sessions, most recent first. A session whose history was deleted is left
    /// out until it has a message created since (an answer that was streaming when it was
    /// deleted, and ends later, does not count: it was created before); its title is then its
    /// first user message since the deletion.
    pub async fn sessions(&self, user_id: &UserId, limit: u32) -> Result<Vec<SessionSummary>> {
        let rows = sqlx::query(
            "SELECT s.session_id, s.last_activity_time, s.start_time, \
               CASE WHEN s.cleared_at = 0 THEN s.title ELSE COALESCE( \
                 (SELECT substr(m.content, 1, CAST($3 AS INTEGER)) FROM message m \
                   WHERE m.conversation_id = s.session_id AND m.role = 'user' \
                     AND m.created_at > s.cleared_at \
                   ORDER BY m.created_at, m.id LIMIT 1), s.title) END AS title \
             FROM chat_session s \
             WHERE s.user_id = $1 AND (s.cleared_at = 0 OR EXISTS ( \
               SELECT 1 FROM message m \
                WHERE m.conversation_id = s.session_id AND m.created_at > s.cleared_at)) \
             ORDER BY s.last_activity_time DESC, s.session_id LIMIT $2",
        )
        .bind(user_id.as_str())
        .bind(i64::from(limit))
        .bind(TITLE_CHARS as i64)
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
    /// hidden even if a write queued earlier lands later; writes `HISTORY_DELETED` as the
    /// session's change number `change`. Returns how many messages were deleted.
    pub async fn delete_history(
        &self,
        session_id: &SessionId,
        at: i64,
        change: Option<i64>,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let (deleted, owner) = delete_messages(&mut tx, session_id, at).await?;
        let user = owner.unwrap_or_default();
        let event = DomainEvent::history_deleted(session_id, &user, deleted, at);
        write_events(&mut tx, self.outbox.is_some(), &[event], change).await?;
        tx.commit().await?;
        self.events_committed();
        Ok(deleted)
    }

    /// Tells whoever waits for new outbox rows (the relay) that some were committed.
    fn events_committed(&self) {
        if let Some(written) = &self.outbox {
            written();
        }
    }
}

/// [`Record::AnswerStarted`] on `conn` (a transaction's connection).
async fn answer_started(
    conn: &mut sqlx::AnyConnection,
    outbox: bool,
    user_message: &ChatMessage,
    answer: &ChatMessage,
    node_id: &str,
    change: i64,
) -> Result<()> {
    upsert_message(&mut *conn, user_message).await?;
    let title = session_title(&user_message.content);
    let created = insert_session(
        conn,
        &user_message.session_id,
        &user_message.user_id,
        &title,
        user_message.timestamp,
    )
    .await?;
    if !created {
        touch_session(&mut *conn, &user_message.session_id, user_message.timestamp).await?;
    }
    upsert_message(&mut *conn, answer).await?;
    let mut events = Vec::with_capacity(3);
    if created {
        events.push(DomainEvent::session_started(user_message, title));
    }
    events.push(DomainEvent::chat_message(
        user_message,
        user_message.timestamp,
    ));
    events.push(DomainEvent::stream_started(
        answer,
        node_id,
        answer.timestamp,
    ));
    write_events(conn, outbox, &events, Some(change)).await
}

/// [`Record::AnswerEnded`] on `conn` (a transaction's connection).
async fn answer_ended(
    conn: &mut sqlx::AnyConnection,
    outbox: bool,
    answer: &ChatMessage,
    total_chunks: u32,
    change: i64,
    at: i64,
) -> Result<()> {
    let mut events: Vec<DomainEvent> = DomainEvent::stream_ended(answer, total_chunks, at)
        .into_iter()
        .collect();
    events.push(DomainEvent::chat_message(answer, at));
    upsert_message(&mut *conn, answer).await?;
    touch_session(&mut *conn, &answer.session_id, at).await?;
    write_events(conn, outbox, &events, Some(change)).await
}

/// Inserts `rows` in one statement, skipping those already stored.
async fn insert_chunks(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[&ChunkRow],
) -> Result<()> {
    // Only placeholders are spliced in; every value is bound. PostgreSQL numbers them; SQLite
    // takes them in order (`?`), since it looks a numbered one up by a scan of all of them.
    let values: Vec<String> = (0..rows.len())
        .map(|i| match backend {
            Backend::Sqlite => "(?, ?, ?, ?)".to_owned(),
            Backend::Postgres => {
                let p = i * 4;
                format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4)
            }
        })
        .collect();
    // Both skip a chunk already stored. On SQLite `OR IGNORE` also spares the statement its
    // journal (kept so that a statement that may abort half-way can undo itself, which one
    // that ignores instead cannot): 5 % of an AI node's CPU at 20k chunk rows a second.
    let values = values.join(", ");
    let sql = match backend {
        Backend::Sqlite => format!(
            "INSERT OR IGNORE INTO stream_chunk (message_id, chunk_index, content, timestamp) \
             VALUES {values}"
        ),
        Backend::Postgres => format!(
            "INSERT INTO stream_chunk (message_id, chunk_index, content, timestamp) VALUES \
             {values} ON CONFLICT (message_id, chunk_index) DO NOTHING"
        ),
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        query = query
            .bind(row.message_id.as_str())
            .bind(i64::from(row.index))
            .bind(row.delta.as_str())
            .bind(row.at);
    }
    query.execute(conn).await?;
    Ok(())
}

/// Deletes a session's messages and their chunks and marks the session cleared at `at`.
/// Returns how many messages went, and the session's user (when it has a row).
pub(crate) async fn delete_messages(
    conn: &mut sqlx::AnyConnection,
    session_id: &SessionId,
    at: i64,
) -> Result<(u64, Option<UserId>)> {
    sqlx::query(
        "DELETE FROM stream_chunk WHERE message_id IN \
         (SELECT id FROM message WHERE conversation_id = $1)",
    )
    .bind(session_id.as_str())
    .execute(&mut *conn)
    .await?;
    let deleted = sqlx::query("DELETE FROM message WHERE conversation_id = $1")
        .bind(session_id.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let owner = sqlx::query(
        "UPDATE chat_session SET cleared_at = $1 WHERE session_id = $2 RETURNING user_id",
    )
    .bind(at)
    .bind(session_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let user = match owner {
        Some(row) => Some(id_from(&row, "user_id")?),
        None => None,
    };
    Ok((deleted, user))
}

/// A session's title: its first message, shortened.
pub(crate) fn session_title(first_message: &str) -> String {
    first_message.chars().take(TITLE_CHARS).collect()
}

/// Creates the row of `session` (of `user`, titled `title`, started at `start_time`) unless it
/// exists; returns whether it did.
pub(crate) async fn insert_session(
    conn: &mut sqlx::AnyConnection,
    session: &SessionId,
    user: &UserId,
    title: &str,
    start_time: i64,
) -> Result<bool> {
    let created = sqlx::query(
        "INSERT INTO chat_session \
           (session_id, user_id, conversation_id, title, status, start_time, last_activity_time) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6) ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(session.as_str())
    .bind(user.as_str())
    .bind(session.as_str())
    .bind(title)
    .bind(start_time)
    .bind(start_time)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(created == 1)
}

/// Moves a session's last activity forward to `at` (never back: a write that was queued behind a
/// newer one lands later).
pub(crate) async fn touch_session<'c, E>(executor: E, session: &SessionId, at: i64) -> Result<()>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "UPDATE chat_session SET last_activity_time = $1 \
         WHERE session_id = $2 AND last_activity_time < $1",
    )
    .bind(at)
    .bind(session.as_str())
    .execute(executor)
    .await?;
    Ok(())
}

pub(crate) async fn upsert_message<'c, E>(executor: E, m: &ChatMessage) -> Result<()>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO message \
           (id, conversation_id, user_id, role, content, status, created_at, updated_at, metadata) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (id) DO UPDATE SET content = excluded.content, status = excluded.status, \
           updated_at = excluded.updated_at, \
           metadata = COALESCE(excluded.metadata, message.metadata)",
    )
    .bind(m.message_id.as_str())
    .bind(m.session_id.as_str())
    .bind(m.user_id.as_str())
    .bind(role_text(m.role))
    .bind(&m.content)
    .bind(status_text(m.status))
    .bind(m.timestamp)
    .bind(protocol::now_ms())
    .bind(
        m.metadata
            .as_ref()
            .map(|meta| serde_json::to_string(meta).unwrap_or_default()),
    )
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
        metadata: metadata_from(row)?,
    })
}

/// The `metadata` column: NULL, or the JSON of a [`MessageMetadata`].
fn metadata_from(row: &AnyRow) -> Result<Option<Box<MessageMetadata>>> {
    let Some(json) = row.try_get::<Option<String>, _>("metadata")? else {
        return Ok(None);
    };
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| Error::Corrupt(format!("metadata: {e}")))
}

/// Reads column `column` as one of the id types.
pub(crate) fn id_from<T>(row: &AnyRow, column: &str) -> Result<T>
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
