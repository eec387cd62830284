//! Durable history: SQLite behind Redis, the L1/L2/SQL read path, and the sessions list.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::time::Duration;

use api::chat_as as chat;
use e2e::{Cluster, ClusterOptions, Json, Stack, StackOptions, WsClient, api, http};

fn sid(session: &str) -> protocol::SessionId {
    protocol::SessionId::parse(session).unwrap()
}

async fn get_json(url: String) -> Json {
    api::get_json(&url).await
}

/// Has a two-exchange conversation in `session` and returns the stored history.
async fn converse(stack: &Stack, session: &str) -> Json {
    let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, session)).await;
    for question in ["hello", "and the workflow?"] {
        let accepted = chat(&stack.gateway(0), session, question, "dana").await;
        ws.answer(session, accepted["message_id"].as_str().unwrap())
            .await;
    }
    get_json(format!("{}/api/history/{session}", stack.gateway(0))).await
}

/// Waits until SQL holds `count` complete messages of `session` (its writes are asynchronous).
async fn wait_stored(stack: &Stack, session: &str, count: usize) {
    let store = store::Store::connect(&stack.database_url()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let history = store.history(&sid(session)).await.unwrap();
        if history.len() == count && history.iter().all(|m| m.is_complete) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SQL never got {count} messages: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(history: &Json) -> Vec<String> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect()
}

async fn metric(stack: &Stack, name: &str) -> u64 {
    api::metric(&stack.gateway(0), name).await
}

/// After FLUSHALL on Redis, history over REST and in the WebSocket `history` frame is still
/// complete and in order, and Redis is re-warmed from SQL.
#[tokio::test]
async fn history_survives_flushall() {
    history_survives_flushall_on(StackOptions::default()).await;
}

/// The same with PostgreSQL as the durable store.
#[tokio::test]
async fn history_survives_flushall_on_postgres() {
    let postgres = testkit::PostgresServer::start();
    history_survives_flushall_on(StackOptions {
        database_url: Some(postgres.url()),
        ..StackOptions::default()
    })
    .await;
}

async fn history_survives_flushall_on(options: StackOptions) {
    let stack = Stack::start(options).await;
    let before = converse(&stack, "dur-flush").await;
    assert_eq!(before["count"], 4);
    wait_stored(&stack, "dur-flush", 4).await;

    let mut redis = stack.redis().await;
    let () = redis::cmd("FLUSHALL")
        .query_async(&mut redis)
        .await
        .unwrap();

    // A page reconnecting first (no REST read before it) gets the whole history.
    let (_ws, _, frame) = WsClient::open(&stack.ws_url(0, "dur-flush")).await;
    assert_eq!(frame["messages"], before["messages"]);
    let after = get_json(format!("{}/api/history/dur-flush", stack.gateway(0))).await;
    assert_eq!(ids(&after), ids(&before));
    assert_eq!(after["messages"], before["messages"]);
    let warmed: i64 = redis::cmd("LLEN")
        .arg("chat:history:{dur-flush}")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(warmed, 4, "Redis was not re-warmed");
    assert!(
        metric(
            &stack,
            "history_cache_total{node_id=\"ws-test-0\",level=\"sql\",outcome=\"hit\"}"
        )
        .await
            >= 1
    );

    // Flushed again, and the next thing is a new chat: the old history is put back before the
    // new message is appended, so nothing is hidden behind it.
    let () = redis::cmd("FLUSHALL")
        .query_async(&mut redis)
        .await
        .unwrap();
    let accepted = chat(&stack.gateway(0), "dur-flush", "one more", "dana").await;
    let history = loop {
        let h = get_json(format!("{}/api/history/dur-flush", stack.gateway(0))).await;
        if h["streaming"].is_null() {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all = ids(&history);
    assert_eq!(all.len(), 6, "{history}");
    assert_eq!(all[..4], ids(&before)[..]);
    assert_eq!(all[5], accepted["message_id"].as_str().unwrap());
}

/// Stop every process (Redis too, which keeps nothing here) and start them again: the history
/// is intact, and the conversation goes on in order.
#[tokio::test]
async fn history_survives_a_restart_of_everything() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let before = converse(&stack, "dur-restart").await;
    stack.restart_all().await;
    let after = get_json(format!("{}/api/history/dur-restart", stack.gateway(0))).await;
    assert_eq!(after["messages"], before["messages"]);
    // The next exchange lands after the old ones.
    let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, "dur-restart")).await;
    let accepted = chat(&stack.gateway(0), "dur-restart", "hello again", "dana").await;
    ws.answer("dur-restart", accepted["message_id"].as_str().unwrap())
        .await;
    let later = get_json(format!("{}/api/history/dur-restart", stack.gateway(0))).await;
    let later_ids = ids(&later);
    assert_eq!(later_ids.len(), 6);
    assert_eq!(later_ids[..4], ids(&before)[..]);
}

/// The second read of a session is an L1 hit; a new message is read as a delta, still a hit.
#[tokio::test]
async fn cache_counters_move_as_expected() {
    let stack = Stack::start(StackOptions::default()).await;
    converse(&stack, "dur-cache").await;
    let hits = "history_cache_total{node_id=\"ws-test-0\",level=\"l1\",outcome=\"hit\"}";
    let misses = "history_cache_total{node_id=\"ws-test-0\",level=\"l1\",outcome=\"miss\"}";
    let url = format!("{}/api/history/dur-cache", stack.gateway(0));
    let (h0, m0) = (metric(&stack, hits).await, metric(&stack, misses).await);
    let first = get_json(url.clone()).await;
    let second = get_json(url.clone()).await;
    assert_eq!(first, second);
    let (h1, m1) = (metric(&stack, hits).await, metric(&stack, misses).await);
    assert_eq!(h1 - h0, 2, "both reads after the conversation are L1 hits");
    assert_eq!(m1, m0);
    // Deleting invalidates: the next read is a miss and sees the empty history.
    http().delete(&url).send().await.unwrap();
    assert_eq!(get_json(url.clone()).await["count"], 0);
    assert_eq!(metric(&stack, misses).await, m1 + 1);
}

/// DELETE removes the history from Redis and SQL: it does not come back from SQL after a flush.
#[tokio::test]
async fn delete_removes_history_everywhere() {
    let stack = Stack::start(StackOptions::default()).await;
    converse(&stack, "dur-delete").await;
    wait_stored(&stack, "dur-delete", 4).await;
    let deleted = api::delete_json(&format!("{}/api/history/dur-delete", stack.gateway(0))).await;
    assert_eq!(deleted["deleted"], 4);
    let mut redis = stack.redis().await;
    let () = redis::cmd("FLUSHALL")
        .query_async(&mut redis)
        .await
        .unwrap();
    let after = get_json(format!("{}/api/history/dur-delete", stack.gateway(0))).await;
    assert_eq!(after["count"], 0);
    let store = store::Store::connect(&stack.database_url()).await.unwrap();
    assert!(store.history(&sid("dur-delete")).await.unwrap().is_empty());
}

/// `GET /api/sessions?user_id=` lists the user's sessions, most recent first, titled by their
/// first message.
#[tokio::test]
async fn sessions_are_listed_most_recent_first() {
    let stack = Stack::start(StackOptions {
        stream_delay_ms: 1,
        ..StackOptions::default()
    })
    .await;
    for (session, question) in [("dur-s1", "first topic"), ("dur-s2", "second topic")] {
        let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, session)).await;
        let accepted = chat(&stack.gateway(0), session, question, "erin").await;
        ws.answer(session, accepted["message_id"].as_str().unwrap())
            .await;
    }
    chat(&stack.gateway(0), "dur-other", "not erin's", "frank").await;
    wait_stored(&stack, "dur-s2", 2).await;
    let listed = get_json(format!("{}/api/sessions?user_id=erin", stack.gateway(0))).await;
    let sessions = listed["sessions"].as_array().unwrap();
    let order: Vec<&str> = sessions
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["dur-s2", "dur-s1"]);
    assert_eq!(sessions[1]["title"], "first topic");
    assert!(
        sessions[0]["last_activity_time"].as_i64() >= sessions[1]["last_activity_time"].as_i64()
    );
    let bad = http()
        .get(format!("{}/api/sessions?user_id=a:b", stack.gateway(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}

/// Three AI node processes write one SQLite file for 50 concurrent sessions: no write is lost
/// to "database is locked", and every message is stored exactly once with its final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ai_nodes_share_one_sqlite_file() {
    let cluster = Cluster::start(ClusterOptions {
        stream_delay_ms: 5,
        ..ClusterOptions::default()
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let session = format!("dur-many-{i}");
        let url = cluster.ws_url(i % 3, &session);
        let gateway = cluster.gateway(i % 3);
        tasks.push(tokio::spawn(async move {
            let (mut ws, _, _) = WsClient::open(&url).await;
            let accepted = chat(&gateway, &session, "hello", "gina").await;
            let id = accepted["message_id"].as_str().unwrap().to_owned();
            ws.answer(&session, &id).await;
            (
                session,
                accepted["user_message_id"].as_str().unwrap().to_owned(),
                id,
            )
        }));
    }
    let mut expected = Vec::new();
    for task in tasks {
        expected.push(task.await.unwrap());
    }
    let url = format!("sqlite://{}/chat.db", cluster.data_dir.path().display());
    let store = store::Store::connect(&url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for (session, user_id, answer_id) in &expected {
        let history = loop {
            let history = store.history(&sid(session)).await.unwrap();
            let settled = history.len() == 2 && history.iter().all(|m| m.is_complete);
            if settled || std::time::Instant::now() > deadline {
                break history;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let got: Vec<&str> = history.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(got, [user_id.as_str(), answer_id.as_str()], "{session}");
        assert_eq!(history[1].status, protocol::MessageStatus::Completed);
        assert!(!history[1].content.is_empty());
        let answer_id = protocol::MessageId::parse(answer_id.as_str()).unwrap();
        assert!(store.chunk_count(&answer_id).await.unwrap() > 50);
    }
}
