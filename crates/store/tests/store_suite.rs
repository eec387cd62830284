//! The store's shared test suite, run against real SQLite files and a real PostgreSQL.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use protocol::{ChatMessage, MessageId, MessageStatus, Role, SessionId, Topic, UserId};
use store::{ChunkRow, Record, Store, StoreWriter};

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
        metadata: None,
    }
}

/// The answer that starts with `user`'s message.
fn answer_to(user: &ChatMessage) -> ChatMessage {
    ChatMessage::started_answer(
        mid(&format!("{}-a", user.message_id)),
        user.session_id.clone(),
        user.user_id.clone(),
        user.timestamp,
    )
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
    store
        .record_answer_started(&u1, &a1, "ai-1", 1)
        .await
        .unwrap();
    store
        .record_answer_started(&u1, &a1, "ai-1", 1)
        .await
        .unwrap(); // a retry changes nothing
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
    store.record_answer_ended(&done, 2, 2, 104).await.unwrap();
    store.record_answer_ended(&done, 2, 2, 104).await.unwrap();
    let mut trail: Vec<String> = store
        .audit_trail(&sid("s1"))
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_id.clone())
        .collect();
    trail.sort();
    assert_eq!(
        trail,
        [
            "CHAT_MESSAGE:a1",
            "CHAT_MESSAGE:u1",
            "SESSION_STARTED:s1",
            "STREAM_COMPLETED:a1",
            "STREAM_STARTED:a1"
        ],
        "one audit row per event, however often it was written"
    );
    assert!(
        store.unpublished_events(100).await.unwrap().is_empty(),
        "without an outbox, no event waits for Kafka"
    );
    let u2 = message(
        "u2",
        "s1",
        Role::User,
        "next",
        200,
        MessageStatus::Completed,
    );
    store
        .record_answer_started(&u2, &answer_to(&u2), "ai-1", 3)
        .await
        .unwrap();
    let x = message(
        "x",
        "s2",
        Role::User,
        "other",
        150,
        MessageStatus::Completed,
    );
    store
        .record_answer_started(&x, &answer_to(&x), "ai-1", 1)
        .await
        .unwrap();

    let history = store.history(&sid("s1")).await.unwrap();
    let ids: Vec<&str> = history.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, ["u1", "a1", "u2", "u2-a"]);
    assert_eq!(history[3].status, MessageStatus::Streaming);
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

    assert_eq!(
        store
            .delete_history(&sid("s1"), 300, Some(4))
            .await
            .unwrap(),
        4
    );
    assert!(store.history(&sid("s1")).await.unwrap().is_empty());
    assert_eq!(store.chunk_count(&mid("a1")).await.unwrap(), 0);
    // A write queued before the deletion that lands after it stays hidden.
    store
        .record_answer_started(&u2, &answer_to(&u2), "ai-1", 3)
        .await
        .unwrap();
    assert!(store.history(&sid("s1")).await.unwrap().is_empty());
    let listed = |sessions: Vec<store::SessionSummary>| {
        sessions
            .into_iter()
            .map(|s| (s.session_id.as_str().to_owned(), s.title))
            .collect::<Vec<_>>()
    };
    let alice = UserId::parse("alice").unwrap();
    assert_eq!(
        listed(store.sessions(&alice, 10).await.unwrap()),
        [("s2".to_owned(), "other".to_owned())],
        "a deleted session is not listed, not even after a write that was queued before"
    );
    // The answer that was streaming when the history was deleted ends after it: still not listed.
    let mut ended = answer_to(&u2);
    ended.content = "late".into();
    ended.status = MessageStatus::Completed;
    ended.is_complete = true;
    store.record_answer_ended(&ended, 1, 6, 350).await.unwrap();
    assert_eq!(
        listed(store.sessions(&alice, 10).await.unwrap()),
        [("s2".to_owned(), "other".to_owned())],
        "an answer created before the deletion does not bring the session back"
    );
    // A chat after the deletion lists it again, titled by its new first message.
    let u3 = message(
        "u3",
        "s1",
        Role::User,
        "a fresh start",
        400,
        MessageStatus::Completed,
    );
    store
        .record_answer_started(&u3, &answer_to(&u3), "ai-1", 5)
        .await
        .unwrap();
    assert_eq!(
        listed(store.sessions(&alice, 10).await.unwrap()),
        [
            ("s1".to_owned(), "a fresh start".to_owned()),
            ("s2".to_owned(), "other".to_owned())
        ]
    );
}

/// With the outbox on, each change writes its events in order, once; the relay's view
/// (unpublished, oldest first) and marking them published work; retention trims them.
async fn outbox_holds_each_event_once_in_order(url: &str) {
    let woken = Arc::new(AtomicUsize::new(0));
    let counter = woken.clone();
    let store = Store::connect(url)
        .await
        .unwrap()
        .with_outbox(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
    let u1 = message(
        "ou1",
        "os",
        Role::User,
        "hello",
        100,
        MessageStatus::Completed,
    );
    let a1 = message(
        "oa1",
        "os",
        Role::Assistant,
        "",
        100,
        MessageStatus::Streaming,
    );
    let done = message(
        "oa1",
        "os",
        Role::Assistant,
        "Hi",
        100,
        MessageStatus::Cancelled,
    );
    store
        .record_answer_started(&u1, &a1, "ai-1", 1)
        .await
        .unwrap();
    store
        .record_answer_started(&u1, &a1, "ai-1", 1)
        .await
        .unwrap();
    store.record_answer_ended(&done, 1, 2, 150).await.unwrap();
    store
        .delete_history(&sid("os"), 200, Some(3))
        .await
        .unwrap();
    assert_eq!(
        woken.load(Ordering::SeqCst),
        4,
        "every commit wakes the relay"
    );

    let rows = store.unpublished_events(100).await.unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "SESSION_STARTED:os",
            "CHAT_MESSAGE:ou1",
            "STREAM_STARTED:oa1",
            "STREAM_CANCELLED:oa1",
            "CHAT_MESSAGE:oa1",
            "HISTORY_DELETED:os:200"
        ]
    );
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(rows.iter().all(|r| r.key == "os"));
    let changes: Vec<Option<i64>> = rows.iter().map(|r| r.change).collect();
    assert_eq!(
        changes,
        [Some(1), Some(1), Some(1), Some(2), Some(2), Some(3)],
        "each event carries its change's number in the session"
    );
    assert_eq!(rows[0].topic, Topic::Chat);
    assert_eq!(rows[2].topic, Topic::Stream);
    let ended: protocol::DomainEvent = serde_json::from_str(&rows[3].payload).unwrap();
    assert_eq!(ended.user_id.as_str(), "alice");
    let deleted: serde_json::Value = serde_json::from_str(&rows[5].payload).unwrap();
    assert_eq!(deleted["deleted"], 2);
    assert_eq!(
        deleted["userId"], "alice",
        "the session's user, from its row"
    );
    assert_eq!(store.outbox_backlog().await.unwrap().0, 6);

    let first: Vec<i64> = rows[..4].iter().map(|r| r.seq).collect();
    assert!(store.session_cursors(&["os"]).await.unwrap().is_empty());
    store
        .mark_published(&first, &[("os".to_owned(), 2)], 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.session_cursors(&["os", "other"]).await.unwrap()["os"],
        2
    );
    let rest = store.unpublished_events(100).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0].event_id, "CHAT_MESSAGE:oa1");
    assert_eq!(store.trim_published(999).await.unwrap(), 0);
    assert_eq!(store.trim_published(1_001).await.unwrap(), 4);
    assert_eq!(store.outbox_backlog().await.unwrap().0, 2);
}

/// Several pools on one database (as several processes have) write at once without "database
/// is locked", and data written by one is read by another.
async fn concurrent_writers_share_one_database(url: &str) {
    let with_outbox = |store: Store| store.with_outbox(Arc::new(|| {}));
    let stores = [
        with_outbox(Store::connect(url).await.unwrap()),
        with_outbox(Store::connect(url).await.unwrap()),
        with_outbox(Store::connect(url).await.unwrap()),
    ];
    let mut tasks = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let id = format!("m{n}-{i}");
                let session = format!("s{}", i % 7);
                let m = message(&id, &session, Role::User, "hi", i, MessageStatus::Completed);
                store
                    .record_answer_started(&m, &answer_to(&m), "ai", i)
                    .await
                    .unwrap();
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
    assert_eq!(total, 240, "each user message and its answer");
    // Every event is in the outbox once, each with its own place in the order.
    let events = reopened.unpublished_events(1_000).await.unwrap();
    let chat_messages = events
        .iter()
        .filter(|e| e.event_id.starts_with("CHAT_MESSAGE:"))
        .count();
    assert_eq!(chat_messages, 120);
    assert_eq!(
        events.len(),
        2 * 120 + 7,
        "a STREAM_STARTED each, and one SESSION_STARTED per session"
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// A batch of records is one transaction: the exchanges in their order, chunk rows past one
/// statement's worth, the events in the outbox in the records' order; applying the batch again
/// changes nothing.
async fn a_batch_of_records_is_one_transaction(url: &str) {
    let store = Store::connect(url)
        .await
        .unwrap()
        .with_outbox(Arc::new(|| {}));
    let u1 = message(
        "u1",
        "s1",
        Role::User,
        "first",
        100,
        MessageStatus::Completed,
    );
    let a1 = answer_to(&u1);
    let u2 = message(
        "u2",
        "s1",
        Role::User,
        "second",
        900,
        MessageStatus::Completed,
    );
    let a2 = answer_to(&u2);
    let mut records = vec![Record::AnswerStarted {
        user_message: Box::new(u1.clone()),
        answer: Box::new(a1.clone()),
        node_id: "ai-1".into(),
        change: 1,
    }];
    records.extend((0..250).map(|i| Record::Chunk(chunk("u1-a", i, "w", 101 + i64::from(i)))));
    let done = ChatMessage {
        content: "w".repeat(250),
        status: MessageStatus::Completed,
        is_complete: true,
        ..a1.clone()
    };
    records.push(Record::AnswerEnded {
        answer: Box::new(done.clone()),
        total_chunks: 250,
        change: 2,
        at: 400,
    });
    records.push(Record::AnswerStarted {
        user_message: Box::new(u2.clone()),
        answer: Box::new(a2.clone()),
        node_id: "ai-1".into(),
        change: 3,
    });
    records.push(Record::Chunk(chunk("u2-a", 0, "x", 901)));
    store.write(&records).await.unwrap();
    store.write(&records).await.unwrap();

    assert_eq!(store.chunk_count(&mid("u1-a")).await.unwrap(), 250);
    assert_eq!(store.chunk_count(&mid("u2-a")).await.unwrap(), 1);
    assert_eq!(store.history(&sid("s1")).await.unwrap(), [u1, done, u2, a2]);
    let events: Vec<String> = store
        .unpublished_events(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(
        events,
        [
            "SESSION_STARTED:s1",
            "CHAT_MESSAGE:u1",
            "STREAM_STARTED:u1-a",
            "STREAM_COMPLETED:u1-a",
            "CHAT_MESSAGE:u1-a",
            "CHAT_MESSAGE:u2",
            "STREAM_STARTED:u2-a",
        ]
    );
}

/// The batch on SQLite.
#[tokio::test]
async fn sqlite_a_batch_of_records_is_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    a_batch_of_records_is_one_transaction(&sqlite_url(&dir)).await;
}

/// The batch on PostgreSQL.
#[tokio::test]
async fn postgres_a_batch_of_records_is_one_transaction() {
    let server = testkit::PostgresServer::start();
    a_batch_of_records_is_one_transaction(&server.url()).await;
}

/// A record the database refuses (PostgreSQL takes no NUL in text) does not take the records
/// queued with it down: the writer applies its batch again one record at a time.
#[tokio::test]
async fn postgres_writer_keeps_a_batch_when_one_record_is_refused() {
    let server = testkit::PostgresServer::start();
    let store = Store::connect(&server.url()).await.unwrap();
    let writer = StoreWriter::start(store.clone(), "test");
    let u1 = message("u1", "s1", Role::User, "hi", 100, MessageStatus::Completed);
    let a1 = answer_to(&u1);
    // Queued without a pause, so the writer finds them together.
    writer.answer_started(&u1, &a1, "ai-1", 1);
    writer.chunk(&a1.message_id, 0, "good");
    writer.chunk(&a1.message_id, 1, "bad\0");
    writer.chunk(&a1.message_id, 2, "good");
    writer.flush().await;
    assert_eq!(store.chunk_count(&a1.message_id).await.unwrap(), 2);
    assert_eq!(store.history(&sid("s1")).await.unwrap(), [u1, a1]);
}

/// While the database is down the writer's queue fills: past half of it chunk rows are shed,
/// and the answers' starts and ends still queue, so they land when it is back.
#[tokio::test]
async fn postgres_writer_sheds_chunk_rows_before_answers_while_the_database_is_down() {
    let mut server = testkit::PostgresServer::start();
    let store = Store::connect(&server.url()).await.unwrap();
    let writer = StoreWriter::with_capacity(store.clone(), "test", 1_000);
    server.stop();
    let u1 = message("u1", "s1", Role::User, "hi", 100, MessageStatus::Completed);
    let a1 = answer_to(&u1);
    writer.answer_started(&u1, &a1, "ai-1", 1);
    for i in 0..2_000 {
        writer.chunk(&a1.message_id, i, "w");
    }
    let done = ChatMessage {
        content: "w".repeat(2_000),
        status: MessageStatus::Completed,
        is_complete: true,
        ..a1.clone()
    };
    writer.answer_ended(&done, 2_000, 2);
    server.start_again();
    writer.flush().await;
    // The start, then chunk rows up to half the queue; the rest shed, and the end kept.
    assert_eq!(store.chunk_count(&a1.message_id).await.unwrap(), 499);
    assert_eq!(store.history(&sid("s1")).await.unwrap(), [u1, done]);
}

/// The round trip on SQLite.
#[tokio::test]
async fn sqlite_conversation_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    conversation_round_trip(&sqlite_url(&dir)).await;
}

/// The outbox on SQLite.
#[tokio::test]
async fn sqlite_outbox_holds_each_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    outbox_holds_each_event_once_in_order(&sqlite_url(&dir)).await;
}

/// The outbox on PostgreSQL.
#[tokio::test]
async fn postgres_outbox_holds_each_event_once_in_order() {
    let server = testkit::PostgresServer::start();
    outbox_holds_each_event_once_in_order(&server.url()).await;
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

/// A database made before `stream_chunk` lost its `id` column keeps every chunk row through
/// migration 0004, and stores new ones (a repeated one still skipped) afterwards.
async fn chunks_survive_the_key_migration(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    // The schema as it was: migrations 0001 to 0003.
    let mut before = sqlx::migrate!("./migrations");
    let old: Vec<_> = before
        .migrations
        .iter()
        .filter(|m| m.version <= 3)
        .cloned()
        .collect();
    before.migrations = old.into();
    before.run(&pool).await.unwrap();
    for index in 0..3 {
        sqlx::query(
            "INSERT INTO stream_chunk (id, message_id, chunk_index, content, timestamp) \
             VALUES ($1, 'old-a', $2, $3, 100)",
        )
        .bind(format!("old-a:{index}"))
        .bind(index)
        .bind(format!("w{index} "))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = Store::connect(url).await.unwrap();
    assert_eq!(store.chunk_count(&mid("old-a")).await.unwrap(), 3);
    store
        .append_chunks(&[chunk("old-a", 2, "w2 ", 100), chunk("old-a", 3, "w3", 110)])
        .await
        .unwrap();
    assert_eq!(
        store.chunk_count(&mid("old-a")).await.unwrap(),
        4,
        "the repeated row is skipped, the new one stored"
    );
}

#[tokio::test]
async fn sqlite_chunks_survive_the_key_migration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nested")).unwrap();
    let url = format!("{}?mode=rwc", sqlite_url(&dir));
    chunks_survive_the_key_migration(&url).await;
}

#[tokio::test]
async fn postgres_chunks_survive_the_key_migration() {
    let server = testkit::PostgresServer::start();
    chunks_survive_the_key_migration(&server.url()).await;
}

/// What a model server reported about an answer (model, usage) is stored with it, read back
/// with its history, carried by its STREAM_COMPLETED and CHAT_MESSAGE events, and not erased
/// by a later write of the same message without it.
async fn answer_metadata_is_kept(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let user = message("mu", "sm", Role::User, "hi", 10, MessageStatus::Completed);
    let started = answer_to(&user);
    store
        .record_answer_started(&user, &started, "ai-1", 1)
        .await
        .unwrap();
    let mut done = started.finished("Hello.".into(), MessageStatus::Completed);
    let usage = protocol::Usage {
        prompt_tokens: 12,
        completion_tokens: 3,
        total_tokens: 15,
    };
    done.metadata = protocol::MessageMetadata {
        model: Some("gemma3".into()),
        usage: Some(usage),
    }
    .into_option();
    store.record_answer_ended(&done, 2, 2, 20).await.unwrap();
    // The same message written again without metadata (a replayed record) keeps it.
    let mut bare = done.clone();
    bare.metadata = None;
    store.record_answer_ended(&bare, 2, 2, 20).await.unwrap();

    let history = store.history(&sid("sm")).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].metadata, done.metadata);
    assert_eq!(history[0].metadata, None);
    let trail = store.audit_trail(&sid("sm")).await.unwrap();
    let completed = trail
        .iter()
        .find(|e| e.event_type() == protocol::EventType::StreamCompleted)
        .unwrap();
    let json = serde_json::to_value(completed).unwrap();
    assert_eq!(
        json["usage"],
        serde_json::json!({"promptTokens": 12, "completionTokens": 3, "totalTokens": 15})
    );
    let message_event = trail
        .iter()
        .find(|e| {
            e.event_type() == protocol::EventType::ChatMessage
                && e.message_id.as_ref() == Some(&done.message_id)
        })
        .unwrap();
    let json = serde_json::to_value(message_event).unwrap();
    assert_eq!(json["metadata"]["model"], "gemma3", "{json}");
}

/// Answer metadata on SQLite.
#[tokio::test]
async fn sqlite_answer_metadata_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    answer_metadata_is_kept(&sqlite_url(&dir)).await;
}

/// Answer metadata on PostgreSQL.
#[tokio::test]
async fn postgres_answer_metadata_is_kept() {
    let server = testkit::PostgresServer::start();
    answer_metadata_is_kept(&server.url()).await;
}
