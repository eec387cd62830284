//! The single-node streaming path, end to end: a real redis-server, an AI node and a gateway,
//! driven over real WebSocket and HTTP connections.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::time::{Duration, Instant};

use e2e::{Json, Stack, StackOptions, WsClient, api, http};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn post_chat(stack: &Stack, session: &str, message: &str) -> (u16, Json) {
    api::try_chat_as(&stack.gateway(0), session, message, "tester").await
}

async fn history(stack: &Stack, session: &str) -> Json {
    api::get_json(&format!("{}/api/history/{session}", stack.gateway(0))).await
}

async fn dbsize(stack: &Stack) -> i64 {
    let mut redis = stack.redis().await;
    redis::cmd("DBSIZE")
        .query_async(&mut redis)
        .await
        .expect("DBSIZE")
}

/// A whole reply arrives over the socket with indexes 0..n-1 in order, and its deltas
/// concatenated equal the final content and the history entry.
#[tokio::test]
async fn whole_reply_arrives_in_order_and_matches_history() {
    let stack = Stack::start(StackOptions::default()).await;
    let (mut ws, welcome, first_history) = WsClient::open(&stack.ws_url(0, "s-whole")).await;
    assert_eq!(welcome["nodeId"], "ws-test-0");
    assert_eq!(welcome["sessionId"], "s-whole");
    assert_eq!(first_history["messages"], json!([]));
    assert_eq!(first_history["streaming"], Json::Null);

    let (status, accepted) = post_chat(&stack, "s-whole", "Tell me about Redis").await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["session_id"], "s-whole");
    assert_eq!(accepted["node_id"], "ai-test-0");
    let message_id = accepted["message_id"].as_str().unwrap();
    let user_message_id = accepted["user_message_id"].as_str().unwrap();

    let user = ws.frame_of("message").await;
    assert_eq!(user["data"]["messageId"], user_message_id);
    assert_eq!(user["data"]["role"], "user");
    assert_eq!(user["data"]["content"], "Tell me about Redis");

    let answer = ws.answer("s-whole", message_id).await;
    assert!(answer.chunks.len() > 50, "{} chunks", answer.chunks.len());
    assert!(answer.indexes_are_contiguous(), "{:?}", answer.chunks);
    assert_eq!(answer.last["status"], "completed");
    assert_eq!(answer.last["role"], "assistant");
    assert_eq!(answer.text(), answer.last["content"].as_str().unwrap());
    assert!(answer.text().contains("Redis"));

    let stored = history(&stack, "s-whole").await;
    assert_eq!(stored["count"], 2);
    assert_eq!(stored["streaming"], Json::Null);
    assert_eq!(stored["messages"][1]["content"], answer.last["content"]);
    assert_eq!(stored["messages"][1]["messageId"], message_id);
}

/// Bad chats get 400 with a JSON error, and nothing is written to Redis.
#[tokio::test]
async fn bad_chat_requests_get_400_and_write_nothing() {
    let stack = Stack::start(StackOptions::default()).await;
    let long = "a".repeat(5001);
    let cases: Vec<(Json, &str)> = vec![
        (
            json!({"session_id": "ok", "message": ""}),
            "INVALID_MESSAGE",
        ),
        (
            json!({"session_id": "ok", "message": "  \n\t "}),
            "INVALID_MESSAGE",
        ),
        (
            json!({"session_id": "ok", "message": long}),
            "INVALID_MESSAGE",
        ),
        (json!({"session_id": "a:b", "message": "hi"}), "INVALID_ID"),
        (json!({"session_id": "*", "message": "hi"}), "INVALID_ID"),
        (json!({"session_id": "../x", "message": "hi"}), "INVALID_ID"),
        (json!({"session_id": "", "message": "hi"}), "INVALID_ID"),
        (
            json!({"session_id": "ok", "message": "hi", "user_id": "a b"}),
            "INVALID_ID",
        ),
        (json!({"message": "hi"}), "BAD_REQUEST"),
        (json!({"session_id": 7, "message": "hi"}), "BAD_REQUEST"),
    ];
    let client = http();
    for base in [stack.gateway(0) + "/api", stack.ai[0].url()] {
        for (body, code) in &cases {
            let response = client
                .post(format!("{base}/chat"))
                .json(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 400, "{base} {body}");
            let error: Json = response.json().await.unwrap();
            assert_eq!(error["code"], *code, "{base} {body}: {error}");
            assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
        let response = client
            .post(format!("{base}/chat"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let error: Json = response.json().await.unwrap();
        assert_eq!(error["code"], "INVALID_JSON");
    }
    for path in ["history/a:b", "history/*"] {
        let response = client
            .get(format!("{}/api/{path}", stack.gateway(0)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{path}");
    }
    assert_eq!(dbsize(&stack).await, 0, "a refused request wrote to Redis");
    // 5000 characters (multi-byte ones included) are fine.
    let (status, body) = post_chat(&stack, "ok", &"é".repeat(5000)).await;
    assert_eq!(status, 202, "{body}");
}

/// A second chat while streaming gets 409; a cancel mid-stream ends the answer with
/// `[Cancelled]` within two chunk intervals; a new chat in that session then works.
#[tokio::test]
async fn cancel_mid_stream_ends_within_two_intervals_and_session_is_reusable() {
    let interval = Duration::from_millis(250);
    let stack = Stack::start(StackOptions {
        stream_delay_ms: interval.as_millis() as u64,
        ..StackOptions::default()
    })
    .await;
    let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, "s-cancel")).await;
    let (status, accepted) = post_chat(&stack, "s-cancel", "hello").await;
    assert_eq!(status, 202);
    let message_id = accepted["message_id"].as_str().unwrap().to_owned();

    let (status, busy) = post_chat(&stack, "s-cancel", "hello again").await;
    assert_eq!(status, 409, "{busy}");
    assert_eq!(busy["code"], "STREAM_ACTIVE");

    // Wait for a few chunks, then cancel over REST.
    let mut seen = 0;
    while seen < 3 {
        let f = ws.frame_of("message").await;
        if f["data"]["messageId"] == message_id.as_str() {
            seen += 1;
        }
    }
    let response = http()
        .post(format!("{}/api/cancel", stack.gateway(0)))
        .json(&json!({"session_id": "s-cancel", "message_id": message_id}))
        .send()
        .await
        .unwrap();
    let cancelled_at = Instant::now();
    assert_eq!(response.status().as_u16(), 200);
    let body: Json = response.json().await.unwrap();
    assert_eq!(body["status"], "cancelling");

    let rest = ws.answer("s-cancel", &message_id).await;
    let elapsed = cancelled_at.elapsed();
    assert!(
        elapsed <= 2 * interval,
        "final frame {elapsed:?} after the cancel (limit {:?})",
        2 * interval
    );
    assert!(
        rest.chunks.len() <= 1,
        "{} chunks after the cancel",
        rest.chunks.len()
    );
    assert_eq!(rest.last["status"], "cancelled");
    let content = rest.last["content"].as_str().unwrap();
    assert!(content.ends_with("\n\n[Cancelled]"), "{content:?}");

    // Cancelling again is a harmless no-op.
    let again = http()
        .post(format!("{}/api/cancel", stack.gateway(0)))
        .json(&json!({"session_id": "s-cancel", "message_id": message_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(
        again.json::<Json>().await.unwrap()["status"],
        "already_finished"
    );

    let (status, body) = post_chat(&stack, "s-cancel", "hello once more").await;
    assert_eq!(status, 202, "{body}");
}

/// Cancelling an unknown message is a 404 with a clear status, never a 5xx.
#[tokio::test]
async fn cancelling_an_unknown_message_is_404() {
    let stack = Stack::start(StackOptions::default()).await;
    for base in [stack.gateway(0) + "/api", stack.ai[0].url()] {
        let response = http()
            .post(format!("{base}/cancel"))
            .json(&json!({"session_id": "s", "message_id": "no-such-message"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404);
        assert_eq!(
            response.json::<Json>().await.unwrap()["status"],
            "not_found"
        );
        let bad = http()
            .post(format!("{base}/cancel"))
            .json(&json!({"session_id": "s:x", "message_id": "m"}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status().as_u16(), 400);
    }
}

/// History is chronological (user, assistant, user, assistant) and DELETE empties it.
#[tokio::test]
async fn history_is_chronological_and_delete_empties_it() {
    let stack = Stack::start(StackOptions::default()).await;
    let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, "s-hist")).await;
    let mut answers = Vec::new();
    for question in ["hello", "what is the workflow?"] {
        let (status, accepted) = post_chat(&stack, "s-hist", question).await;
        assert_eq!(status, 202);
        let id = accepted["message_id"].as_str().unwrap().to_owned();
        answers.push(ws.answer("s-hist", &id).await);
    }
    let stored = history(&stack, "s-hist").await;
    let roles: Vec<&str> = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(stored["messages"][0]["content"], "hello");
    assert_eq!(stored["messages"][3]["content"], answers[1].last["content"]);
    let times: Vec<i64> = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["timestamp"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // A new socket gets the same history in its `history` frame.
    let (_ws2, _, replay) = WsClient::open(&stack.ws_url(0, "s-hist")).await;
    assert_eq!(replay["messages"], stored["messages"]);

    let deleted = api::delete_json(&format!("{}/api/history/s-hist", stack.gateway(0))).await;
    assert_eq!(deleted["deleted"], 4);
    assert_eq!(history(&stack, "s-hist").await["count"], 0);
}

/// Ten sessions streaming at once never see each other's frames, and each gets its whole reply.
#[tokio::test]
async fn ten_concurrent_sessions_never_see_each_others_frames() {
    let stack = Stack::start(StackOptions::default()).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let session = format!("s-par-{i}");
        let url = stack.ws_url(0, &session);
        let gateway = stack.gateway(0);
        tasks.push(tokio::spawn(async move {
            let (mut ws, _, _) = WsClient::open(&url).await;
            let accepted: Json = http()
                .post(format!("{gateway}/api/chat"))
                .json(&json!({"session_id": session, "message": "explain streaming"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = accepted["message_id"].as_str().unwrap().to_owned();
            // `answer` fails on any frame whose sessionId is not this session.
            let answer = ws.answer(&session, &id).await;
            assert!(answer.indexes_are_contiguous());
            assert_eq!(answer.text(), answer.last["content"].as_str().unwrap());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Malformed frames (not JSON, unknown type, missing fields, binary, too large) each get an
/// `error` frame, and the socket keeps working.
#[tokio::test]
async fn malformed_frames_get_errors_and_the_socket_keeps_working() {
    let stack = Stack::start(StackOptions::default()).await;
    let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, "s-bad")).await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("not json"), "INVALID_JSON"),
        (Message::text(r#"{"type":"dance"}"#), "UNKNOWN_TYPE"),
        (Message::text(r#"{"type":"chat"}"#), "BAD_REQUEST"),
        (Message::text(r#"[1,2,3]"#), "BAD_REQUEST"),
        (
            Message::text(r#"{"type":"chat","message":"   "}"#),
            "INVALID_MESSAGE",
        ),
        (
            Message::text(r#"{"type":"cancel","messageId":"a:b"}"#),
            "INVALID_ID",
        ),
        (
            Message::text(r#"{"type":"cancel","messageId":"unknown"}"#),
            "NOT_FOUND",
        ),
        (Message::binary(vec![1u8, 2, 3]), "BINARY_NOT_SUPPORTED"),
        (
            Message::text(format!(
                r#"{{"type":"chat","message":"{}"}}"#,
                "a".repeat(70_000)
            )),
            "TOO_LARGE",
        ),
    ];
    for (frame, code) in cases {
        ws.send(frame).await;
        let error = ws.frame().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["code"], code, "{error}");
    }
    ws.send_json(json!({"type": "cancel", "messageId": "gone-1"}))
        .await;
    assert_eq!(
        ws.frame().await["messageId"],
        "gone-1",
        "a failed cancel names its answer"
    );
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(ws.frame().await["type"], "pong");
    // And chatting over the socket still works: the socket is told the new ids, and the
    // messages arrive like everyone else's.
    ws.send_json(json!({"type": "chat", "message": "hello"}))
        .await;
    let accepted = ws.frame_of("accepted").await;
    assert_eq!(accepted["sessionId"], "s-bad");
    assert_eq!(accepted["nodeId"], "ai-test-0");
    let answer = ws
        .answer("s-bad", accepted["messageId"].as_str().unwrap())
        .await;
    assert_eq!(answer.last["status"], "completed");
    assert!(dbsize(&stack).await > 0);
}

/// A chat sent the instant `welcome` arrives is delivered whole: the node subscribes before it
/// says welcome (the proof of concept lost these).
#[tokio::test]
async fn a_chat_sent_the_instant_welcome_arrives_is_delivered() {
    let stack = Stack::start(StackOptions::default()).await;
    for round in 0..5 {
        let session = format!("s-instant-{round}");
        let mut ws = WsClient::connect(&stack.ws_url(0, &session)).await;
        assert_eq!(ws.frame().await["type"], "welcome");
        let (status, accepted) = post_chat(&stack, &session, "hi").await;
        assert_eq!(status, 202);
        let history = ws.frame().await;
        assert_eq!(history["type"], "history");
        let id = accepted["message_id"].as_str().unwrap();
        // Whatever the snapshot already held, history plus later chunks is the whole answer.
        let mut text = String::new();
        let mut next = 0;
        if history["streaming"]["messageId"] == id {
            let partial = history["messages"].as_array().unwrap().last().unwrap();
            // An answer with no chunk yet has no `content` (PROTOCOL: treat it as "").
            text.push_str(partial["content"].as_str().unwrap_or_default());
            next = history["streaming"]["lastIndex"].as_i64().unwrap() + 1;
        }
        let answer = ws.answer(&session, id).await;
        for (index, delta) in &answer.chunks {
            assert_eq!(*index as i64, next, "gap or duplicate");
            next += 1;
            text.push_str(delta);
        }
        assert_eq!(text, answer.last["content"].as_str().unwrap());
    }
}

/// A socket without a session id, or with a bad one, is refused with 400 before the upgrade.
#[tokio::test]
async fn sockets_without_a_valid_session_id_are_refused() {
    let stack = Stack::start(StackOptions::default()).await;
    let base = format!("ws://{}/ws/chat", stack.gateways[0].addr);
    for url in [
        base.clone(),
        format!("{base}?user_id=u"),
        format!("{base}?session_id=a:b"),
    ] {
        let err = tokio_tungstenite::connect_async(&url).await.unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status().as_u16(), 400, "{url}");
            }
            other => panic!("{url}: {other}"),
        }
    }
}

/// With a dead AI node first in `AI_SERVICE_URLS`, chats fail over to the live one.
#[tokio::test]
async fn chats_fail_over_past_a_dead_ai_node() {
    let dead = format!("http://127.0.0.1:{}", testkit::free_port());
    let stack = Stack::start(StackOptions {
        extra_ai_urls: vec![dead],
        stream_delay_ms: 1,
        ..StackOptions::default()
    })
    .await;
    for i in 0..6 {
        let session = format!("s-failover-{i}");
        let (status, body) = post_chat(&stack, &session, "hello").await;
        assert_eq!(status, 202, "{body}");
    }
}

/// Both binaries report health with their node id and Redis status; the gateway serves metrics.
#[tokio::test]
async fn health_and_metrics_report_the_node() {
    let stack = Stack::start(StackOptions::default()).await;
    let gateway = api::get_json(&format!("{}/health", stack.gateway(0))).await;
    assert_eq!(gateway["status"], "ok");
    assert_eq!(gateway["node_id"], "ws-test-0");
    assert_eq!(gateway["components"]["redis"], "up");
    assert_eq!(
        gateway["components"]["kafka"], "disabled",
        "without KAFKA_BOOTSTRAP_SERVERS"
    );
    let ai = api::get_json(&format!("{}/health", stack.ai[0].url())).await;
    assert_eq!(ai["components"]["redis"], "up");
    let info = api::get_json(&stack.ai[0].url()).await;
    assert_eq!(info["service"], "ai-service");
    let slow = api::metric(
        &stack.gateway(0),
        "gateway_slow_consumers_total{node_id=\"ws-test-0\"}",
    )
    .await;
    assert_eq!(slow, 0);
}

/// `/health` is 503 `degraded` when a critical component is down: a gateway whose AI nodes
/// are all unreachable; the database and Kafka never make it so.
#[tokio::test]
async fn health_is_503_when_a_critical_component_is_down() {
    let dead = format!("http://127.0.0.1:{}", testkit::free_port());
    let stack = Stack::start(StackOptions {
        ai_nodes: 0,
        extra_ai_urls: vec![dead],
        ..StackOptions::default()
    })
    .await;
    let (status, health) = api::get(&format!("{}/health", stack.gateway(0))).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["components"]["ai"], "down (0/1 nodes)");
    assert_eq!(health["components"]["redis"], "up");
}

/// A gateway keeps its claim on a session it serves (`session:owner:{sid}`) for as long as a
/// socket of it stays open, past the claim's lifetime (renewed every third of it), and gives
/// it up when the last socket leaves.
#[tokio::test]
async fn a_served_sessions_owner_claim_outlives_its_ttl() {
    let stack = Stack::start(StackOptions {
        env: vec![("SESSION_OWNER_TTL_SECONDS", "3".into())],
        ..StackOptions::default()
    })
    .await;
    let (ws, _, _) = WsClient::open(&stack.ws_url(0, "owned")).await;
    let mut redis = stack.redis().await;
    let owner = |mut redis: redis_state::Connection| async move {
        redis::cmd("GET")
            .arg("session:owner:{owned}")
            .query_async::<Option<String>>(&mut redis)
            .await
            .unwrap()
    };
    // The claim is written beside the welcome, not before it (it is observability only).
    let deadline = Instant::now() + Duration::from_secs(5);
    while owner(redis.clone()).await.is_none() {
        assert!(Instant::now() < deadline, "no claim on a served session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Sampled over more than two lifetimes: the claim never lapses.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(7) {
        assert_eq!(owner(redis.clone()).await.as_deref(), Some("ws-test-0"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ttl: i64 = redis::cmd("PTTL")
        .arg("session:owner:{owned}")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((1..=3000).contains(&ttl), "PTTL {ttl}");
    ws.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while owner(redis.clone()).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the claim outlived the last socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway serves the browser app from `STATIC_DIR` at `/`, with index.html for unknown
/// paths, while the API keeps its own routes.
#[tokio::test]
async fn the_gateway_serves_the_browser_app() {
    let dir = std::env::temp_dir().join(format!("app-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><p>chat app").unwrap();
    std::fs::write(dir.join("assets/app.js"), "console.log(1)").unwrap();
    let stack = Stack::start(StackOptions {
        static_dir: Some(dir.to_string_lossy().into_owned()),
        ..StackOptions::default()
    })
    .await;
    let get = |path: &str| http().get(format!("{}{path}", stack.gateway(0))).send();
    let index = get("/").await.unwrap();
    assert_eq!(index.status().as_u16(), 200);
    assert!(index.text().await.unwrap().contains("chat app"));
    let script = get("/assets/app.js").await.unwrap();
    assert_eq!(script.status().as_u16(), 200);
    assert!(
        script
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().contains("javascript"))
    );
    assert!(
        get("/some/client/route")
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("chat app")
    );
    assert_eq!(get("/api/history/x").await.unwrap().status().as_u16(), 200);
    std::fs::remove_dir_all(&dir).unwrap();
}
