//! Domain events on a real Kafka-compatible broker (Tansu, started per test): what arrives, in
//! which order, through a frozen broker and a relay whose node dies, and what replay rebuilds.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use e2e::kafka::{EventLog, Record, create_topics, first_of_each, of_session};
use e2e::{Json, Stack, StackOptions, WsClient, api};
use protocol::SessionId;
use serde_json::json;
use testkit::Broker;

/// How long an event may take to reach the broker with everything up ("about a second", with
/// a margin for a loaded CI machine).
const EVENT_DELAY: Duration = Duration::from_secs(3);

/// A broker with the system's topics, and a consumer reading them from the beginning.
async fn broker() -> (Broker, EventLog) {
    let broker = Broker::start();
    create_topics(&broker.bootstrap()).await;
    let log = EventLog::start(&broker.bootstrap());
    (broker, log)
}

fn kafka_env(broker: &Broker, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

fn types(records: &[&Record]) -> Vec<String> {
    records.iter().map(|r| r.event_type().to_owned()).collect()
}

/// Every event SQL recorded (the audit trail) for `sessions`, by id.
async fn recorded_events(stack: &Stack, sessions: &[String]) -> HashSet<String> {
    let store = store::Store::connect(&stack.database_url()).await.unwrap();
    let mut ids = HashSet::new();
    for session in sessions {
        let trail = store
            .audit_trail(&SessionId::parse(session.as_str()).unwrap())
            .await
            .unwrap();
        ids.extend(trail.into_iter().map(|e| e.event_id));
    }
    ids
}

/// A conversation's events arrive in order, each on its topic, keyed by the session, with the
/// right fields, within moments of their change; the messages they carry are the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversations_events_arrive_in_order_and_match_history() {
    let (broker, log) = broker().await;
    let stack = Stack::start(StackOptions {
        stream_delay_ms: 20,
        env: kafka_env(&broker, &[("KAFKA_CHUNK_EVENTS", "sample:5")]),
        ..StackOptions::default()
    })
    .await;
    let session = "ev-conversation";
    let gateway = stack.gateway(0);
    let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, session)).await;

    let first = api::chat_as(&gateway, session, "hello", "erin").await;
    let first_id = first["message_id"].as_str().unwrap().to_owned();
    let answer = ws.answer(session, &first_id).await;
    let ended_at = Instant::now();

    let second = api::chat_as(&gateway, session, "and the workflow?", "erin").await;
    let second_id = second["message_id"].as_str().unwrap().to_owned();
    ws.frame_of("message").await; // the user message
    ws.frame_of("message").await; // a first chunk
    let (status, _) = api::post_json(
        &format!("{gateway}/api/cancel"),
        json!({"session_id": session, "message_id": second_id}),
    )
    .await;
    assert_eq!(status, 200);
    let cancelled = ws.answer(session, &second_id).await;
    assert_eq!(cancelled.last["status"], "cancelled");
    // A best-effort event: a recovery attempt.
    ws.send_json(json!({"type": "resume", "messageId": first_id, "fromIndex": 2}))
        .await;
    assert_eq!(ws.frame_of("recovery").await["status"], "COMPLETED");

    let records = log
        .wait_until("the first answer's end", EVENT_DELAY, |r| {
            r.iter()
                .any(|r| r.event_id() == format!("STREAM_COMPLETED:{first_id}"))
        })
        .await;
    let completed = records
        .iter()
        .find(|r| r.event_id() == format!("STREAM_COMPLETED:{first_id}"))
        .unwrap();
    assert!(
        completed.received.duration_since(ended_at) < EVENT_DELAY,
        "an event took {:?}",
        completed.received.duration_since(ended_at)
    );

    let records = log
        .wait_until(
            "every event of the conversation",
            Duration::from_secs(10),
            |r| {
                of_session(r, "chat-events", session).len() == 5
                    && of_session(r, "stream-events", session)
                        .iter()
                        .any(|r| r.event_type() == "RECOVERY_ATTEMPT")
            },
        )
        .await;
    let chat = of_session(&records, "chat-events", session);
    assert_eq!(
        types(&chat),
        [
            "SESSION_STARTED",
            "CHAT_MESSAGE",
            "CHAT_MESSAGE",
            "CHAT_MESSAGE",
            "CHAT_MESSAGE"
        ]
    );
    let stream = of_session(&records, "stream-events", session);
    let lifecycle: Vec<String> = stream
        .iter()
        .filter(|r| r.event_type().starts_with("STREAM_"))
        .map(|r| {
            format!(
                "{}:{}",
                r.event_type(),
                r.event["messageId"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        lifecycle,
        [
            format!("STREAM_STARTED:{first_id}"),
            format!("STREAM_COMPLETED:{first_id}"),
            format!("STREAM_STARTED:{second_id}"),
            format!("STREAM_CANCELLED:{second_id}"),
        ]
    );
    for record in chat.iter().chain(&stream) {
        assert_eq!(record.event["sessionId"], session);
        // The socket's user asked for the recovery; the chats were erin's.
        let user = if record.event_type() == "RECOVERY_ATTEMPT" {
            "tester"
        } else {
            "erin"
        };
        assert_eq!(record.event["userId"], user, "{:?}", record.event);
        assert!(record.event["timestamp"].as_i64().unwrap() > 0);
        assert!(!record.event_id().is_empty());
    }
    let done = &completed.event;
    assert_eq!(done["totalChunks"], answer.chunks.len());
    assert_eq!(
        done["contentLength"],
        answer.last["content"].as_str().unwrap().len()
    );
    assert!(done["durationMs"].as_i64().unwrap() > 0);
    // Chunks are sampled: every fifth of the first answer.
    let sampled: Vec<u64> = stream
        .iter()
        .filter(|r| r.event_type() == "CHUNK_RECEIVED" && r.event["messageId"] == first_id.as_str())
        .map(|r| r.event["index"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..answer.chunks.len() as u64)
        .filter(|i| i % 5 == 0)
        .collect();
    assert_eq!(sampled, expected);
    let recovery = stream
        .iter()
        .find(|r| r.event_type() == "RECOVERY_ATTEMPT")
        .unwrap();
    assert_eq!(recovery.event["fromIndex"], 2);
    assert_eq!(recovery.event["status"], "COMPLETED");

    // The messages the events carry are the conversation as stored.
    let history = api::get_json(&format!("{gateway}/api/history/{session}")).await;
    let from_events: Vec<(Json, Json, Json)> = chat
        .iter()
        .filter(|r| r.event_type() == "CHAT_MESSAGE")
        .map(|r| {
            (
                r.event["messageId"].clone(),
                r.event["content"].clone(),
                r.event["status"].clone(),
            )
        })
        .collect();
    let stored: Vec<(Json, Json, Json)> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["messageId"].clone(),
                m["content"].clone(),
                m["status"].clone(),
            )
        })
        .collect();
    assert_eq!(from_events, stored);

    api::delete_json(&format!("{gateway}/api/history/{session}")).await;
    let records = log
        .wait_until("the deletion", EVENT_DELAY, |r| {
            of_session(r, "chat-events", session)
                .iter()
                .any(|r| r.event_type() == "HISTORY_DELETED")
        })
        .await;
    let deleted = of_session(&records, "chat-events", session);
    assert_eq!(deleted.last().unwrap().event["deleted"], 4);
    let health = api::get_json(&format!("{gateway}/health")).await;
    assert_eq!(health["components"]["kafka"], "up");
}
