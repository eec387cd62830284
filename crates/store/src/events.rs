//! Domain events in SQL: the audit trail, and the outbox that a relay publishes to Kafka.
//!
//! Both are written by [`write_events`] inside the transaction of the change the events
//! describe, so an event exists exactly when its change does. Each row's id is the event's
//! stable `eventId`, so a retried transaction adds nothing.
//!
//! Outbox rows get their `seq` from the one-row counter `outbox_sequence`, incremented in the
//! same transaction: the counter's row lock makes concurrent writers take turns, so `seq` grows
//! in commit order. Commit order is not always a session's order, though: two AI nodes record
//! two answers of one session, and the first one's end may commit after the second one's
//! start. So each row also carries its change's number in the session (`session_change`, taken
//! in Redis by the script that made the change), and the relay publishes a session's changes in
//! that order, with the help of a cursor per session (its last published change).

use std::collections::HashMap;

use protocol::{DomainEvent, Topic};
use sqlx::{AnyConnection, Row};

use crate::{Error, Result, Store};

/// One event waiting in (or published from) the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Position in the outbox: grows in commit order.
    pub seq: i64,
    pub event_id: String,
    pub topic: Topic,
    /// The record key: the session id, so one session's events stay in one partition.
    pub key: String,
    /// The change's number in its session, when it has one (events of best-effort origin do
    /// not reach the outbox; every lifecycle change has one).
    pub change: Option<i64>,
    /// The event's JSON.
    pub payload: String,
    /// When it was written (ms since the epoch).
    pub created_at: i64,
}

/// Writes `events` (of the session's change number `change`) to the audit trail, and to the
/// outbox when `outbox` is set, on `conn` (a transaction's connection). Events already written
/// (same id) are skipped.
pub(crate) async fn write_events(
    conn: &mut AnyConnection,
    outbox: bool,
    events: &[DomainEvent],
    change: Option<i64>,
) -> Result<()> {
    for event in events {
        let payload = event.to_json();
        let written = sqlx::query(
            "INSERT INTO audit_log (id, session_id, event_type, event_data, timestamp) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(event.event_id.as_str())
        .bind(event.session_id.as_str())
        .bind(event.event_type().as_str())
        .bind(payload.as_str())
        .bind(event.timestamp)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        // An event already in the audit trail was written by an earlier try: it is in the
        // outbox too, or was published and trimmed from it.
        if outbox && written == 1 {
            let seq: i64 = sqlx::query(
                "UPDATE outbox_sequence SET value = value + 1 WHERE name = 'event_outbox' \
                 RETURNING value",
            )
            .fetch_one(&mut *conn)
            .await?
            .try_get("value")?;
            sqlx::query(
                "INSERT INTO event_outbox \
                   (seq, event_id, topic, event_key, session_change, payload, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(seq)
            .bind(event.event_id.as_str())
            .bind(topic_text(event.event_type().topic()))
            .bind(event.session_id.as_str())
            .bind(change)
            .bind(payload.as_str())
            .bind(protocol::now_ms())
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

impl Store {
    /// Up to `limit` unpublished events, oldest first (by `seq`).
    pub async fn unpublished_events(&self, limit: u32) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT seq, event_id, topic, event_key, session_change, payload, created_at \
             FROM event_outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_row).collect()
    }

    /// The last published change of each of `sessions` that has one.
    pub async fn session_cursors(&self, sessions: &[&str]) -> Result<HashMap<String, i64>> {
        let mut cursors = HashMap::new();
        for chunk in sessions.chunks(100) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT session_id, last_change FROM outbox_session_cursor \
                 WHERE session_id IN ({})",
                placeholders.join(", ")
            );
            // Only numbered placeholders are spliced in; the ids are bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for session in chunk {
                query = query.bind(*session);
            }
            for row in query.fetch_all(&self.pool).await? {
                cursors.insert(row.try_get("session_id")?, row.try_get("last_change")?);
            }
        }
        Ok(cursors)
    }

    /// Marks events `seqs` published at `at` (after the broker acknowledged them) and moves
    /// the sessions' cursors to `cursors` (session, last published change), in one
    /// transaction.
    pub async fn mark_published(
        &self,
        seqs: &[i64],
        cursors: &[(String, i64)],
        at: i64,
    ) -> Result<()> {
        if seqs.is_empty() && cursors.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for seq in seqs {
            sqlx::query("UPDATE event_outbox SET published_at = $1 WHERE seq = $2")
                .bind(at)
                .bind(*seq)
                .execute(&mut *tx)
                .await?;
        }
        for (session, change) in cursors {
            sqlx::query(
                "INSERT INTO outbox_session_cursor (session_id, last_change) VALUES ($1, $2) \
                 ON CONFLICT (session_id) DO UPDATE SET last_change = excluded.last_change",
            )
            .bind(session.as_str())
            .bind(*change)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes events published before `before`; returns how many.
    pub async fn trim_published(&self, before: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM event_outbox WHERE published_at IS NOT NULL AND published_at < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// How many events wait to be published, and when the oldest of them was written.
    pub async fn outbox_backlog(&self) -> Result<(i64, Option<i64>)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM event_outbox \
             WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }
}

/// Queries that only tests and checks ask: what the writer has stored.
#[cfg(any(test, feature = "test-support"))]
impl Store {
    /// Number of stored chunk rows of a message.
    pub async fn chunk_count(&self, message_id: &protocol::MessageId) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM stream_chunk WHERE message_id = $1")
            .bind(message_id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Every outbox row, published or not, in `seq` order.
    pub async fn outbox_rows(&self) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT seq, event_id, topic, event_key, session_change, payload, created_at \
             FROM event_outbox ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_row).collect()
    }

    /// The audit trail of a session, in the order written.
    pub async fn audit_trail(&self, session_id: &protocol::SessionId) -> Result<Vec<DomainEvent>> {
        let rows = sqlx::query(
            "SELECT event_data FROM audit_log WHERE session_id = $1 ORDER BY timestamp, id",
        )
        .bind(session_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let data: String = row.try_get("event_data")?;
                serde_json::from_str(&data).map_err(|e| Error::Corrupt(e.to_string()))
            })
            .collect()
    }
}

fn outbox_row(row: &sqlx::any::AnyRow) -> Result<OutboxRow> {
    let topic: String = row.try_get("topic")?;
    Ok(OutboxRow {
        seq: row.try_get("seq")?,
        event_id: row.try_get("event_id")?,
        topic: topic_from(&topic)?,
        key: row.try_get("event_key")?,
        change: row.try_get("session_change")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
    })
}

fn topic_text(topic: Topic) -> &'static str {
    match topic {
        Topic::Chat => "chat",
        Topic::Stream => "stream",
    }
}

fn topic_from(text: &str) -> Result<Topic> {
    match text {
        "chat" => Ok(Topic::Chat),
        "stream" => Ok(Topic::Stream),
        other => Err(Error::Corrupt(format!("outbox topic {other:?}"))),
    }
}
