//! The store's shared test suite, run against real SQLite files and a real PostgreSQL.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use protocol::{ChatMessage, EventType, MessageId, MessageStatus, Role, SessionId, UserId};
use store::{ChunkRow, Store};

fn mid(s: &str) -> MessageId {
    MessageId::parse(s).unwrap()
}

fn sid(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

fn chunk(message: &str, index: u32, delta: &str, at: i64) -> ChunkRow {
    ChunkRow {
        message_id: mid(message),
        index,
        delta: delta.into(),
        at,
    }
}

fn message(
    id: &str,
    session: &str,
    role: Role,
    content: &str,
    at: i64,
    status: MessageStatus,
) -> ChatMessage {
    ChatMessage {
        message_id: mid(id),
        session_id: sid(session),
        user_id: UserId::parse("alice").unwrap(),
        role,
        content: content.into(),
        timestamp: at,
        is_complete: status.is_final(),
        status,
        index: None,
        chunk: None,
    }
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}/nested/chat.db", dir.path().display())
}

/// A conversation is stored in order, answers move from streaming to final, writes (audit rows
/// included) are idempotent, and sessions list most recent first with their first message as
/// title.
async fn conversation_round_trip(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let u1 = message(
        "u1",
        "s1",
        Role::User,
        "What is a streaming architecture, really?",
        100,
        MessageStatus::Completed,
    );
    let a1 = message(
        "a1",
        "s1",
        Role::Assistant,
        "",
        100,
        MessageStatus::Streaming,
    );
    store.record_user_message(&u1).await.unwrap();
    store.record_user_message(&u1).await.unwrap(); // a retry changes nothing
    store
        .record_answer(&a1, EventType::StreamStarted, 101)
        .await
        .unwrap();
    store
        .record_answer(&a1, EventType::StreamStarted, 101)
        .await
        .unwrap(); // nor here
    store
        .append_chunks(&[chunk("a1", 0, "Hi", 102), chunk("a1", 1, " there", 103)])
        .await
        .unwrap();
    store
        .append_chunks(&[chunk("a1", 1, " there", 103)])
        .await
        .unwrap();
    assert_eq!(store.chunk_count(&mid("a1")).await.unwrap(), 2);
    let done = message(
        "a1",
        "s1",
        Role::Assistant,
        "Hi there",
        100,
        MessageStatus::Completed,
    );
    store
        .record_answer(&done, EventType::StreamCompleted, 104)
        .await
        .unwrap();
    let audit = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(e, m)| (e.to_string(), m.to_string()))
            .collect()
    };
    assert_eq!(
        store.audit_trail(&sid("s1")).await.unwrap(),
        audit(&[
            ("CHAT_MESSAGE", "u1"),
            ("STREAM_STARTED", "a1"),
            ("STREAM_COMPLETED", "a1")
        ]),
        "one audit row per event, however often it was written"
    );
    let u2 = message(
        "u2",
        "s1",
        Role::User,
        "next",
        200,
        MessageStatus::Completed,
    );
    store.record_user_message(&u2).await.unwrap();
    store
        .record_user_message(&message(
            "x",
            "s2",
            Role::User,
            "other",
            150,
            MessageStatus::Completed,
        ))
        .await
        .unwrap();

    let history = store.history(&sid("s1")).await.unwrap();
    let ids: Vec<&str> = history.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, ["u1", "a1", "u2"]);
    assert_eq!(history[1].content, "Hi there");
    assert_eq!(history[1].status, MessageStatus::Completed);
    assert!(history[1].is_complete);

    let sessions = store
        .sessions(&UserId::parse("alice").unwrap(), 10)
        .await
        .unwrap();
    let order: Vec<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(order, ["s1", "s2"]);
    assert_eq!(
        sessions[0].title,
        "What is a streaming architecture, really?"
    );
    assert_eq!(sessions[0].last_activity_time, 200);

    assert_eq!(store.delete_history(&sid("s1"), 300).await.unwrap(), 3);
    assert!(store.history(&sid("s1")).await.unwrap().is_empty());
    assert_eq!(store.chunk_count(&mid("a1")).await.unwrap(), 0);
    // A write queued before the deletion that lands after it stays hidden.
    store.record_user_message(&u2).await.unwrap();
    assert!(store.history(&sid("s1")).await.unwrap().is_empty());
}

/// Several pools on one database (as several processes have) write at once without "database
/// is locked", and data written by one is read by another.
async fn concurrent_writers_share_one_database(url: &str) {
    let stores = [
        Store::connect(url).await.unwrap(),
        Store::connect(url).await.unwrap(),
        Store::connect(url).await.unwrap(),
    ];
    let mut tasks = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let id = format!("m{n}-{i}");
                let session = format!("s{}", i % 7);
                let m = message(&id, &session, Role::User, "hi", i, MessageStatus::Completed);
                store.record_user_message(&m).await.unwrap();
                store
                    .append_chunks(&[chunk(&id, 0, "a", i), chunk(&id, 1, "b", i)])
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let reopened = Store::connect(url).await.unwrap();
    let mut total = 0;
    for s in 0..7 {
        total += reopened
            .history(&sid(&format!("s{s}")))
            .await
            .unwrap()
            .len();
    }
    assert_eq!(total, 120);
}

/// The round trip on SQLite.
#[tokio::test]
async fn sqlite_conversation_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    conversation_round_trip(&sqlite_url(&dir)).await;
}

/// Concurrent writers on one SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_writers_share_one_database() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_writers_share_one_database(&sqlite_url(&dir)).await;
}

/// The round trip on PostgreSQL.
#[tokio::test]
async fn postgres_conversation_round_trip() {
    let server = testkit::PostgresServer::start();
    conversation_round_trip(&server.url()).await;
}

/// Concurrent writers on one PostgreSQL database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_writers_share_one_database() {
    let server = testkit::PostgresServer::start();
    concurrent_writers_share_one_database(&server.url()).await;
}
