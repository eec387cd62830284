//! Exactly-once resume: reloads, reconnects, many tabs and slow sockets lose nothing and repeat
//! nothing. Real redis-server, real AI service and gateway.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::time::{Duration, Instant};

use e2e::{Event, Json, Stack, StackOptions, WsClient, api};
use rand::Rng;
use serde_json::json;

async fn post_chat(gateway: &str, session: &str, message: &str) -> String {
    let body = api::chat(gateway, session, message).await;
    body["message_id"].as_str().unwrap().to_owned()
}

/// What a fresh page knows about answer `id` after its `history` frame.
enum Seen {
    /// The answer is complete in history, with this content.
    Complete(String),
    /// The answer is streaming: text so far, next expected index.
    Partial(String, i64),
    /// The answer is not in history yet (not started when the snapshot was read).
    Absent,
}

fn seen_in_history(history: &Json, id: &str) -> Seen {
    let messages = history["messages"].as_array().unwrap();
    let copies: Vec<&Json> = messages.iter().filter(|m| m["messageId"] == id).collect();
    assert!(
        copies.len() <= 1,
        "answer {id} appears {} times in history",
        copies.len()
    );
    let Some(message) = copies.first() else {
        return Seen::Absent;
    };
    let content = message["content"].as_str().unwrap_or_default().to_owned();
    if message["isComplete"] == true {
        assert_ne!(
            history["streaming"]["messageId"], id,
            "complete yet streaming"
        );
        Seen::Complete(content)
    } else {
        assert_eq!(
            history["streaming"]["messageId"], id,
            "partial answer without stream state"
        );
        let last = history["streaming"]["lastIndex"].as_i64().unwrap();
        Seen::Partial(content, last + 1)
    }
}

/// Reads frames until answer `id` completes, rebuilding its text from `text`/`next`, and
/// failing on any duplicate or gap. Returns (rebuilt text, final content).
async fn follow(ws: &mut WsClient, id: &str, mut text: String, mut next: i64) -> (String, String) {
    loop {
        let frame = ws.frame().await;
        assert_ne!(frame["type"], "error", "{frame}");
        if frame["type"] == "history" {
            panic!("unexpected history frame mid-test: {frame}");
        }
        if frame["type"] != "message" || frame["data"]["messageId"] != id {
            continue;
        }
        let data = &frame["data"];
        if data["isComplete"] == true {
            return (text, data["content"].as_str().unwrap().to_owned());
        }
        let index = data["index"].as_i64().unwrap();
        assert_eq!(
            index, next,
            "expected chunk {next} of {id}, got {index} (duplicate or gap)"
        );
        assert!(
            data.get("content").is_none(),
            "chunk frames carry the delta only: {frame}"
        );
        text.push_str(data["chunk"].as_str().unwrap());
        next += 1;
    }
}

/// Opens a fresh page on `session` and returns the whole text of answer `id` as that page ends
/// up showing it, checking no duplicate and no gap.
async fn fresh_page_reads_answer(url: &str, id: &str) -> (WsClient, String, String) {
    let (mut ws, _, history) = WsClient::open(url).await;
    let (text, final_content) = match seen_in_history(&history, id) {
        Seen::Complete(content) => (content.clone(), content),
        Seen::Partial(text, next) => follow(&mut ws, id, text, next).await,
        Seen::Absent => follow(&mut ws, id, String::new(), 0).await,
    };
    (ws, text, final_content)
}

/// 200 randomized reloads: disconnect after a random number of chunks (0 and after completion
/// included), wait 0–1.5 s, reconnect as a fresh page; history plus later chunks always equals
/// the final content, with no duplicate and no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_reloads_rebuild_the_exact_answer() {
    let stack = Stack::start(StackOptions {
        stream_delay_ms: 4,
        ..StackOptions::default()
    })
    .await;
    const SESSIONS: usize = 20;
    const TRIALS_PER_SESSION: usize = 10;
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let session = format!("reload-{s}");
        let url = stack.ws_url(0, &session);
        let gateway = stack.gateway(0);
        tasks.push(tokio::spawn(async move {
            let mut outcomes = (0, 0, 0); // (disconnected at 0, mid-stream, after completion)
            for trial in 0..TRIALS_PER_SESSION {
                let (mut ws, _, _) = WsClient::open(&url).await;
                let id = post_chat(&gateway, &session, "tell me about persistence").await;
                // 0 chunks, some chunks, or past the end (the answer has ~150 chunks).
                let cut: usize = match trial % 3 {
                    0 => 0,
                    1 => rand::rng().random_range(1..150),
                    _ => 10_000,
                };
                let mut got = 0;
                while got < cut {
                    let frame = ws.frame().await;
                    if frame["type"] == "message" && frame["data"]["messageId"] == id.as_str() {
                        if frame["data"]["isComplete"] == true {
                            break;
                        }
                        got += 1;
                    }
                }
                match (cut, got) {
                    (0, _) => outcomes.0 += 1,
                    (c, g) if g < c => outcomes.2 += 1,
                    _ => outcomes.1 += 1,
                }
                ws.close().await;
                let pause = rand::rng().random_range(0..=1500);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let (ws, text, final_content) = fresh_page_reads_answer(&url, &id).await;
                assert_eq!(text, final_content, "session {session} trial {trial}");
                assert!(!final_content.is_empty());
                ws.close().await;
            }
            outcomes
        }));
    }
    let mut totals = (0, 0, 0);
    for task in tasks {
        let (a, b, c) = task.await.unwrap();
        totals = (totals.0 + a, totals.1 + b, totals.2 + c);
    }
    assert_eq!(
        totals.0 + totals.1 + totals.2,
        SESSIONS * TRIALS_PER_SESSION
    );
    assert!(totals.0 > 0 && totals.1 > 0 && totals.2 > 0, "{totals:?}");
}

/// 50 sockets of one session, each dropping and reconnecting at random times during a stream,
/// all end with the exact final text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tabs_reconnecting_at_random_all_end_with_the_exact_text() {
    let stack = Stack::start(StackOptions {
        stream_delay_ms: 15,
        ..StackOptions::default()
    })
    .await;
    let session = "tabs";
    let url = stack.ws_url(0, session);
    let mut tabs = Vec::new();
    for _ in 0..50 {
        tabs.push(WsClient::open(&url).await.0);
    }
    let id = post_chat(&stack.gateway(0), session, "give me a technical deep dive").await;
    let mut tasks = Vec::new();
    for mut ws in tabs {
        let url = url.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut text = String::new();
            let mut next = 0i64;
            let mut reconnects = 0;
            loop {
                // Read for a random while, then drop and come back as a fresh page.
                let until =
                    Instant::now() + Duration::from_millis(rand::rng().random_range(100..900));
                let finished = loop {
                    let remaining = until.saturating_duration_since(Instant::now());
                    let Ok(frame) = tokio::time::timeout(remaining, ws.frame()).await else {
                        break None;
                    };
                    if frame["type"] != "message" || frame["data"]["messageId"] != id.as_str() {
                        continue;
                    }
                    let data = &frame["data"];
                    if data["isComplete"] == true {
                        break Some(data["content"].as_str().unwrap().to_owned());
                    }
                    let index = data["index"].as_i64().unwrap();
                    assert_eq!(index, next, "duplicate or gap");
                    text.push_str(data["chunk"].as_str().unwrap());
                    next += 1;
                };
                if let Some(final_content) = finished {
                    assert_eq!(text, final_content);
                    return reconnects;
                }
                ws.close().await;
                reconnects += 1;
                let (fresh, _, history) = WsClient::open(&url).await;
                ws = fresh;
                match seen_in_history(&history, &id) {
                    Seen::Complete(content) => {
                        // The page shows the final answer; it must extend what we had.
                        assert!(content.starts_with(&text), "history lost text");
                        return reconnects;
                    }
                    Seen::Partial(partial, n) => {
                        assert!(partial.starts_with(&text), "history lost text");
                        text = partial;
                        next = n;
                    }
                    Seen::Absent => panic!("answer vanished from history"),
                }
            }
        }));
    }
    let mut reconnects = 0;
    for task in tasks {
        reconnects += task.await.unwrap();
    }
    assert!(reconnects >= 50, "only {reconnects} reconnects happened");
    let stored = api::get_json(&format!("{}/api/history/{session}", stack.gateway(0))).await;
    assert_eq!(stored["count"], 2);
}

/// The snapshot is consistent at the instant of completion: 500 reconnects racing the final
/// chunk never show the answer twice or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_racing_the_final_chunk_see_the_answer_exactly_once() {
    let stack = Stack::start(StackOptions {
        stream_delay_ms: 1,
        ..StackOptions::default()
    })
    .await;
    // How long an answer takes, so that reconnects land around its completion.
    let gateway = stack.gateway(0);
    let url = stack.ws_url(0, "race-probe");
    let (mut probe, _, _) = WsClient::open(&url).await;
    let started = Instant::now();
    let id = post_chat(&gateway, "race-probe", "hello").await;
    probe.answer("race-probe", &id).await;
    let duration = started.elapsed();

    const SESSIONS: usize = 25;
    const ROUNDS: usize = 20;
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let session = format!("race-{s}");
        let url = stack.ws_url(0, &session);
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(async move {
            let mut straddled = 0;
            let mut id = post_chat(&gateway, &session, "hello").await;
            let mut posted = Instant::now();
            for round in 0..ROUNDS {
                let jitter = rand::rng().random_range(0.7..1.3);
                let at = posted + duration.mul_f64(jitter);
                tokio::time::sleep_until(at.into()).await;
                let (mut ws, _, history) = WsClient::open(&url).await;
                let (text, final_content) = match seen_in_history(&history, &id) {
                    Seen::Complete(content) => (content.clone(), content),
                    Seen::Partial(text, next) => {
                        straddled += 1;
                        follow(&mut ws, &id, text, next).await
                    }
                    Seen::Absent => follow(&mut ws, &id, String::new(), 0).await,
                };
                assert_eq!(text, final_content, "{session} round {round}");
                if round + 1 == ROUNDS {
                    break;
                }
                // Any late copy of this answer was published before the next chat's user
                // message, so it would arrive before that message does.
                let next_id = post_chat(&gateway, &session, "hello").await;
                posted = Instant::now();
                loop {
                    let frame = ws.frame().await;
                    if frame["type"] != "message" {
                        continue;
                    }
                    assert_ne!(
                        frame["data"]["messageId"],
                        id.as_str(),
                        "answer sent twice: {frame}"
                    );
                    if frame["data"]["role"] == "user" {
                        break;
                    }
                }
                ws.close().await;
                id = next_id;
            }
            straddled
        }));
    }
    let mut straddled = 0;
    for task in tasks {
        straddled += task.await.unwrap();
    }
    // Some reconnects must have caught the answer mid-stream, or the test raced nothing.
    assert!(straddled > 0);
}

/// Resume answers RECOVERED with the missing chunks while streaming, COMPLETED after the end,
/// NOT_FOUND for an unknown answer, EXPIRED when the chunk log is gone, ERROR when Redis is down.
#[tokio::test]
async fn resume_answers_every_recovery_status() {
    let mut stack = Stack::start(StackOptions {
        stream_delay_ms: 30,
        ..StackOptions::default()
    })
    .await;
    let url = stack.ws_url(0, "resume");
    let (mut ws, _, _) = WsClient::open(&url).await;
    let id = post_chat(&stack.gateway(0), "resume", "workflow please").await;
    // Let a few chunks be produced, then ask for them again from index 1.
    let mut seen = 0;
    while seen < 4 {
        let f = ws.frame_of("message").await;
        if f["data"]["messageId"] == id.as_str() {
            seen += 1;
        }
    }
    ws.send_json(json!({"type": "resume", "messageId": id, "fromIndex": 1}))
        .await;
    let recovery = ws.frame_of("recovery").await;
    assert_eq!(recovery["status"], "RECOVERED", "{recovery}");
    let chunks = recovery["chunks"].as_array().unwrap();
    assert!(chunks.len() >= 3);
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["index"], i as u64 + 1);
    }
    // Live chunks already covered by the recovery are not sent again.
    let covered = chunks.last().unwrap()["index"].as_i64().unwrap();
    let next_live = loop {
        let f = ws.frame_of("message").await;
        if f["data"]["messageId"] == id.as_str() {
            break f;
        }
    };
    if next_live["data"]["isComplete"] != true {
        assert!(
            next_live["data"]["index"].as_i64().unwrap() > covered,
            "{next_live}"
        );
    }

    // After the end: COMPLETED with the final message.
    let answer = ws.answer("resume", &id).await;
    ws.send_json(json!({"type": "resume", "messageId": id, "fromIndex": 0}))
        .await;
    let recovery = ws.frame_of("recovery").await;
    assert_eq!(recovery["status"], "COMPLETED");
    assert_eq!(recovery["message"]["content"], answer.last["content"]);

    ws.send_json(json!({"type": "resume", "messageId": "no-such-answer", "fromIndex": 0}))
        .await;
    assert_eq!(ws.frame_of("recovery").await["status"], "NOT_FOUND");

    // A streaming answer whose chunk log is gone is EXPIRED.
    let id2 = post_chat(&stack.gateway(0), "resume", "hello").await;
    loop {
        let f = ws.frame_of("message").await;
        if f["data"]["messageId"] == id2.as_str() {
            break;
        }
    }
    let mut redis = stack.redis().await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("chat:chunks:{{resume}}:{id2}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    ws.send_json(json!({"type": "resume", "messageId": id2, "fromIndex": 5}))
        .await;
    assert_eq!(ws.frame_of("recovery").await["status"], "EXPIRED");

    // Redis unreachable: ERROR, and the socket stays usable.
    stack.redis.kill();
    ws.send_json(json!({"type": "resume", "messageId": id2, "fromIndex": 0}))
        .await;
    assert_eq!(ws.frame_of("recovery").await["status"], "ERROR");
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(ws.frame_of("pong").await["type"], "pong");
}

/// A socket that never reads is closed with 1013 while a reading socket of the same session
/// receives every chunk, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_reads_is_closed_without_delaying_the_others() {
    let stack = Stack::start(StackOptions {
        max_pending_frames: 64,
        ..StackOptions::default()
    })
    .await;
    let session = "slow";
    let url = stack.ws_url(0, session);
    let (mut stalled, _, _) = WsClient::open(&url).await;
    let (mut reader, _, _) = WsClient::open(&url).await;

    // Synthetic chunk frames of 4 KiB, published straight on the session's channel, enough to
    // fill the stalled socket's kernel buffers and then its queue.
    const FRAMES: u64 = 6000;
    let delta = "x".repeat(4096);
    let mut redis = stack.redis().await;
    let publish = stack.redis.publish_command();
    let publisher = tokio::spawn(async move {
        for batch in 0..FRAMES / 20 {
            let mut pipe = redis::pipe();
            for i in batch * 20..(batch + 1) * 20 {
                let frame = json!({"type": "message", "data": {
                    "messageId": "synthetic", "sessionId": "slow", "userId": "u",
                    "role": "assistant", "timestamp": 0, "isComplete": false,
                    "status": "streaming", "index": i, "chunk": delta}});
                pipe.cmd(publish)
                    .arg("chat:stream:{slow}")
                    .arg(frame.to_string())
                    .ignore();
            }
            let () = pipe.query_async(&mut redis).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // The stalled socket starts reading only once the gateway has given up on it.
    let gateway = stack.gateway(0);
    let stalled = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let slow = api::metric(
                &gateway,
                "gateway_slow_consumers_total{node_id=\"ws-test-0\"}",
            )
            .await;
            if slow == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the stalled socket was never closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut frames = 0u64;
        let close = loop {
            match stalled.event().await {
                Event::Frame(_) => frames += 1,
                Event::Closed(frame) => break frame,
            }
        };
        (frames, close)
    });
    let mut next = 0u64;
    while next < FRAMES {
        let frame = reader.frame().await;
        if frame["data"]["messageId"] != "synthetic" {
            continue;
        }
        assert_eq!(
            frame["data"]["index"], next,
            "the reading socket missed a chunk"
        );
        next += 1;
    }
    publisher.await.unwrap();
    let (frames, close) = stalled.await.unwrap();
    assert!(frames < FRAMES, "the stalled socket got everything");
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1013, "{close:?}");
    assert_eq!(close.reason, "slow consumer");
}
