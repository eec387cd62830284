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

/// `TYPE:messageId` of each record.
fn typed_ids(records: &[&Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r.event_type(),
                r.event["messageId"].as_str().unwrap_or("")
            )
        })
        .collect()
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
    let lifecycle: Vec<&Record> = stream
        .iter()
        .filter(|r| r.event_type().starts_with("STREAM_"))
        .copied()
        .collect();
    let lifecycle = typed_ids(&lifecycle);
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

/// Has `answers` exchanges in `session` on `stack`'s first gateway, watching them on a socket;
/// returns the answers' ids.
async fn converse(stack: &Stack, session: &str, answers: usize) -> Vec<String> {
    let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, session)).await;
    let mut ids = Vec::new();
    for i in 0..answers {
        let accepted = api::chat(&stack.gateway(0), session, &format!("hello {i}")).await;
        let id = accepted["message_id"].as_str().unwrap().to_owned();
        ws.answer(session, &id).await;
        ids.push(id);
    }
    ids
}

/// Twenty sessions chatting at once: every session's events arrive once each, in its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_sessions_keep_per_session_order() {
    let (broker, log) = broker().await;
    let stack = std::sync::Arc::new(
        Stack::start(StackOptions {
            ai_nodes: 2,
            stream_delay_ms: 2,
            env: kafka_env(&broker, &[]),
            ..StackOptions::default()
        })
        .await,
    );
    let mut tasks = Vec::new();
    for i in 0..20 {
        let stack = stack.clone();
        tasks.push(tokio::spawn(async move {
            let session = format!("ev-many-{i}");
            let answers = converse(&stack, &session, 2).await;
            (session, answers)
        }));
    }
    let mut sessions = Vec::new();
    for task in tasks {
        sessions.push(task.await.unwrap());
    }
    let records = log
        .wait_until("every session's events", Duration::from_secs(20), |r| {
            sessions.iter().all(|(s, _)| {
                of_session(r, "chat-events", s).len() >= 5
                    && of_session(r, "stream-events", s).len() >= 4
            })
        })
        .await;
    for (session, answers) in &sessions {
        let got = typed_ids(&of_session(&records, "stream-events", session));
        let want: Vec<String> = answers
            .iter()
            .flat_map(|a| {
                [
                    format!("STREAM_STARTED:{a}"),
                    format!("STREAM_COMPLETED:{a}"),
                ]
            })
            .collect();
        assert_eq!(got, want, "{session}");
        let chat = of_session(&records, "chat-events", session);
        assert_eq!(chat.len(), 5, "{session}: each event once");
        assert_eq!(chat[0].event_type(), "SESSION_STARTED");
        let roles: Vec<&str> = chat[1..]
            .iter()
            .map(|r| r.event["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["user", "assistant", "user", "assistant"],
            "{session}"
        );
        assert_eq!(chat[2].event["messageId"], answers[0].as_str());
        assert_eq!(chat[4].event["messageId"], answers[1].as_str());
    }
}

/// With the broker frozen for 10 s mid-stream, chunks keep their pace and the node stays
/// healthy (Kafka shown down); after it thaws, every event arrives, repeats only with the same
/// id and the same content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_delays_events_but_loses_none_and_never_slows_a_stream() {
    let (broker, log) = broker().await;
    let stack = std::sync::Arc::new(
        Stack::start(StackOptions {
            stream_delay_ms: 20,
            env: kafka_env(&broker, &[("KAFKA_CHUNK_EVENTS", "all")]),
            ..StackOptions::default()
        })
        .await,
    );
    converse(&stack, "ev-frozen-before", 1).await;
    log.wait_until("the first conversation", EVENT_DELAY, |r| {
        of_session(r, "chat-events", "ev-frozen-before").len() == 3
    })
    .await;

    broker.freeze();
    let frozen_at = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let stack = stack.clone();
        tasks.push(tokio::spawn(async move {
            let session = format!("ev-frozen-{i}");
            let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, &session)).await;
            let mut widest = Duration::ZERO;
            for question in ["hello", "how does the workflow go?"] {
                let accepted = api::chat(&stack.gateway(0), &session, question).await;
                let id = accepted["message_id"].as_str().unwrap().to_owned();
                let mut last = Instant::now();
                loop {
                    let frame = ws.frame_of("message").await;
                    if frame["data"]["messageId"] != id.as_str() {
                        continue;
                    }
                    let now = Instant::now();
                    if frame["data"]["index"].as_u64().is_some_and(|i| i > 0) {
                        widest = widest.max(now - last);
                    }
                    last = now;
                    if frame["data"]["isComplete"] == true {
                        break;
                    }
                }
            }
            (session, widest)
        }));
    }
    let health = api::get_json(&format!("{}/health", stack.gateway(0))).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["components"]["kafka"], "down", "{health}");
    let mut sessions = vec!["ev-frozen-before".to_owned()];
    for task in tasks {
        let (session, widest) = task.await.unwrap();
        // 20 ms between chunks; a stream waiting on Kafka would stall for seconds.
        assert!(
            widest < Duration::from_secs(1),
            "{session}: a {widest:?} gap between chunks"
        );
        sessions.push(session);
    }
    assert!(
        frozen_at.elapsed() < Duration::from_secs(10),
        "the answers should have ended while the broker was frozen"
    );
    // The relaying node's gauges show the events waiting while the broker is frozen.
    let ai = stack.ai[0].url();
    let waiting = || async {
        let scrape = e2e::metrics::Scrape::of(&ai).await;
        (
            scrape.value("events_outbox_pending", &[]),
            scrape.value("events_outbox_lag_seconds", &[]),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (pending, lag) = waiting().await;
        if pending > 0.0 && lag > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "outbox gauges {pending}, {lag}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent_before = e2e::metrics::Scrape::of(&ai)
        .await
        .value("events_sent_total", &[]);
    tokio::time::sleep_until((frozen_at + Duration::from_secs(10)).into()).await;
    broker.thaw();

    let recorded = recorded_events(&stack, &sessions).await;
    let records = log
        .wait_until("every recorded event", Duration::from_secs(30), |r| {
            let ids: HashSet<&str> = r.iter().map(Record::event_id).collect();
            recorded.iter().all(|id| ids.contains(id.as_str()))
        })
        .await;
    let after = e2e::metrics::Scrape::of(&ai).await;
    assert!(after.value("events_sent_total", &[]) > sent_before);
    let mut by_id: HashMap<&str, &Json> = HashMap::new();
    for record in &records {
        if let Some(earlier) = by_id.insert(record.event_id(), &record.event) {
            assert_eq!(
                earlier,
                &record.event,
                "a repeat of {} differs",
                record.event_id()
            );
        }
    }
    for session in &sessions[1..] {
        let stream = first_of_each(&of_session(&records, "stream-events", session));
        let lifecycle: Vec<String> = stream
            .iter()
            .filter(|r| r.event_type().starts_with("STREAM_"))
            .map(|r| r.event_type().to_owned())
            .collect();
        assert_eq!(
            lifecycle,
            [
                "STREAM_STARTED",
                "STREAM_COMPLETED",
                "STREAM_STARTED",
                "STREAM_COMPLETED"
            ],
            "{session}"
        );
    }
}

/// `ai-service replay --from-beginning` rebuilds, in an empty database, the histories that
/// were: answered, cancelled and deleted conversations alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_history_in_an_empty_database() {
    let (broker, log) = broker().await;
    let stack = Stack::start(StackOptions {
        stream_delay_ms: 2,
        env: kafka_env(&broker, &[]),
        ..StackOptions::default()
    })
    .await;
    let gateway = stack.gateway(0);
    converse(&stack, "ev-replay-plain", 2).await;
    // A cancelled answer.
    let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, "ev-replay-cancel")).await;
    let accepted = api::chat(
        &gateway,
        "ev-replay-cancel",
        "give me a technical deep dive",
    )
    .await;
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    ws.frame_of("message").await;
    api::post_json(
        &format!("{gateway}/api/cancel"),
        json!({"session_id": "ev-replay-cancel", "message_id": id}),
    )
    .await;
    ws.answer("ev-replay-cancel", &id).await;
    // A deleted history, then a new exchange.
    converse(&stack, "ev-replay-deleted", 1).await;
    api::delete_json(&format!("{gateway}/api/history/ev-replay-deleted")).await;
    converse(&stack, "ev-replay-deleted", 1).await;

    let sessions = ["ev-replay-plain", "ev-replay-cancel", "ev-replay-deleted"];
    let mut before = Vec::new();
    for session in sessions {
        before.push(api::get_json(&format!("{gateway}/api/history/{session}")).await);
    }
    let store = store::Store::connect(&stack.database_url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.outbox_backlog().await.unwrap().0 > 0 {
        assert!(Instant::now() < deadline, "the outbox never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(log);

    let empty = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/replayed.db", empty.path().display());
    let output = std::process::Command::new(testkit::workspace_binary("ai-service"))
        .args(["replay", "--from-beginning", "--idle-seconds", "5"])
        .env_clear()
        .env("DATABASE_URL", &database_url)
        .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "replay failed: {output:?}");

    // A new system on the rebuilt database, with an empty Redis, reads the same histories.
    let rebuilt = Stack::start(StackOptions {
        database_url: Some(database_url),
        ..StackOptions::default()
    })
    .await;
    for (session, before) in sessions.iter().zip(&before) {
        let after = api::get_json(&format!("{}/api/history/{session}", rebuilt.gateway(0))).await;
        assert_eq!(after["messages"], before["messages"], "{session}");
        assert!(after["count"].as_u64().unwrap() >= 2, "{session}: {after}");
    }
}

/// The outbox rows of `sessions` in the order their sessions' events must keep: by change,
/// then as written.
fn session_order(rows: &[store::OutboxRow], session: &str, topic: protocol::Topic) -> Vec<String> {
    let mut mine: Vec<&store::OutboxRow> = rows
        .iter()
        .filter(|r| r.key == session && r.topic == topic)
        .collect();
    mine.sort_by_key(|r| (r.change, r.seq));
    mine.iter().map(|r| r.event_id.clone()).collect()
}

/// kill -9 of the node relaying the outbox while the broker is frozen with events in flight:
/// another AI node takes the lease, and once the broker thaws every event arrives, each
/// session's in its order (repeats only of the same event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_relays_node_hands_the_lease_to_another_without_reordering() {
    let (broker, log) = broker().await;
    let mut cluster = e2e::Cluster::start(e2e::ClusterOptions {
        ai_nodes: 3,
        gateways: 1,
        stream_delay_ms: 5,
        env: kafka_env(&broker, &[]),
        ..e2e::ClusterOptions::default()
    })
    .await;
    let redis = redis::Client::open(cluster.redis.url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let holder = loop {
        let holder: Option<String> = redis::cmd("GET")
            .arg(protocol::keys::RELAY_LEASE)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some(holder) = holder {
            break holder;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sessions: Vec<String> = (0..5).map(|i| format!("ev-takeover-{i}")).collect();
    let exchange = |session: String| {
        let url = cluster.ws_url(0, &session);
        let gateway = cluster.gateway(0);
        async move {
            let (mut ws, _, _) = WsClient::open(&url).await;
            let accepted = api::chat(&gateway, &session, "hello").await;
            ws.answer(&session, accepted["message_id"].as_str().unwrap())
                .await;
        }
    };
    for session in &sessions {
        exchange(session.clone()).await;
    }
    log.wait_until("the first exchanges", EVENT_DELAY, |r| {
        sessions
            .iter()
            .all(|s| of_session(r, "stream-events", s).len() == 2)
    })
    .await;

    broker.freeze();
    for session in &sessions {
        exchange(session.clone()).await;
    }
    let database_url = format!("sqlite://{}/chat.db", cluster.data_dir.path().display());
    let store = store::Store::connect(&database_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.outbox_backlog().await.unwrap().0 < 5 * 4 {
        assert!(
            Instant::now() < deadline,
            "the second exchanges were never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = e2e::Cluster::index_of(&cluster.ai, &holder);
    cluster.ai[victim].kill9();
    broker.thaw();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now: Option<String> = redis::cmd("GET")
            .arg(protocol::keys::RELAY_LEASE)
            .query_async(&mut conn)
            .await
            .unwrap();
        let drained = store.outbox_backlog().await.unwrap().0 == 0;
        if drained && now.as_ref().is_some_and(|n| *n != holder) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no other node took over ({now:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = store.outbox_rows().await.unwrap();
    let records = log
        .wait_until("every outbox row", Duration::from_secs(10), |r| {
            let ids: HashSet<&str> = r.iter().map(Record::event_id).collect();
            rows.iter().all(|row| ids.contains(row.event_id.as_str()))
        })
        .await;
    for session in &sessions {
        for (topic, name) in [
            (protocol::Topic::Chat, "chat-events"),
            (protocol::Topic::Stream, "stream-events"),
        ] {
            let got: Vec<String> = first_of_each(&of_session(&records, name, session))
                .iter()
                .map(|r| r.event_id().to_owned())
                .collect();
            assert_eq!(
                got,
                session_order(&rows, session, topic),
                "{session} on {name}"
            );
        }
    }
}

/// With no topics on the broker, the nodes create them (partitions as configured) before
/// sending anything, so a session's events all land in one partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_create_the_topics_so_a_session_stays_in_one_partition() {
    let broker = Broker::start();
    let stack = Stack::start(StackOptions {
        stream_delay_ms: 2,
        env: kafka_env(&broker, &[("KAFKA_TOPIC_PARTITIONS", "6")]),
        ..StackOptions::default()
    })
    .await;
    let bootstrap = broker.bootstrap();
    let counts = tokio::task::spawn_blocking(move || {
        e2e::kafka::wait_for_topics(&bootstrap, Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert_eq!(counts, [6, 6]);
    let log = EventLog::start(&broker.bootstrap());
    let sessions: Vec<String> = (0..6).map(|i| format!("ev-partition-{i}")).collect();
    for session in &sessions {
        converse(&stack, session, 2).await;
    }
    let records = log
        .wait_until("every session's events", Duration::from_secs(10), |r| {
            sessions
                .iter()
                .all(|s| of_session(r, "chat-events", s).len() == 5)
        })
        .await;
    for session in &sessions {
        for topic in ["chat-events", "stream-events"] {
            let partitions: HashSet<i32> = of_session(&records, topic, session)
                .iter()
                .map(|r| r.partition)
                .collect();
            assert_eq!(partitions.len(), 1, "{session} on {topic}: {partitions:?}");
        }
    }
}
