//! The multi-node stack as it runs in production: redis-server, 3 AI nodes and 3 gateways as
//! real processes, behind a real nginx. Cross-node paths are tested by addressing gateways
//! directly (through NGINX, ip_hash sends every local client to one node).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::time::{Duration, Instant};

use e2e::api::{chat, post_json as post};
use e2e::{Cluster, ClusterOptions, Event, Json, WsClient, http, model};
use serde_json::json;
use testkit::FakeModel;

/// Where the AI nodes' answers come from: the tests marked `on_both!` run on each.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `AI_PROVIDER=simulator`.
    Simulator,
    /// `AI_PROVIDER=openai`, against a fake model server that streams 300 tokens an answer
    /// at the cluster's chunk interval.
    Model,
}

/// Starts the cluster with its AI nodes on `source`; keep the model (if any) until the end.
async fn start(source: Source, mut options: ClusterOptions) -> (Cluster, Option<FakeModel>) {
    let model = match source {
        Source::Simulator => None,
        Source::Model => {
            let delay = Duration::from_millis(options.stream_delay_ms);
            let fake = model::pacing_like_the_simulator(300, delay);
            options.env.extend(model::env(&fake));
            Some(fake)
        }
    };
    (Cluster::start(options).await, model)
}

/// Runs test `$name(source)` once per [`Source`], as `$name::simulator` and `$name::model`.
macro_rules! on_both {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn simulator() {
                super::$name(super::Source::Simulator).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn model() {
                super::$name(super::Source::Model).await;
            }
        }
    };
}

/// Connects through `url`, retrying while the stack reroutes, until `welcome` and `history`.
async fn connect_retrying(url: &str) -> (WsClient, Json, Json) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await {
            let mut client = WsClient::from_stream(ws);
            if let Some((welcome, history)) = client.handshake().await {
                return (client, welcome, history);
            }
        }
        assert!(
            Instant::now() < deadline,
            "could not reconnect through {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Follows answer `id` from (`text`, `next`) to its final frame, failing on a duplicate or gap.
/// Stops early (returning `None`) if the socket closes.
async fn follow(ws: &mut WsClient, id: &str, text: &mut String, next: &mut i64) -> Option<Json> {
    loop {
        let frame = match ws.event().await {
            Event::Frame(frame) => frame,
            Event::Closed(_) => return None,
        };
        if frame["type"] != "message" || frame["data"]["messageId"] != id {
            continue;
        }
        let data = &frame["data"];
        if data["isComplete"] == true {
            return Some(data.clone());
        }
        assert_eq!(data["index"].as_i64().unwrap(), *next, "duplicate or gap");
        text.push_str(data["chunk"].as_str().unwrap());
        *next += 1;
    }
}

on_both!(
    /// Three sessions on three different gateways each receive only their own streams, and the
    /// answers are spread over the AI nodes (each gateway sends its next chat to the next node).
    three_sessions_on_three_gateways_receive_only_their_own_streams
);
async fn three_sessions_on_three_gateways_receive_only_their_own_streams(source: Source) {
    let (cluster, _model) = start(source, ClusterOptions::default()).await;
    let mut tasks = Vec::new();
    for i in 0..3 {
        let session = format!("mn-own-{i}");
        let url = cluster.ws_url(i, &session);
        let gateway = cluster.gateway(i);
        let expected_node = format!("ws-node-{}", i + 1);
        tasks.push(tokio::spawn(async move {
            let (mut ws, welcome, _) = WsClient::open(&url).await;
            assert_eq!(welcome["nodeId"], expected_node.as_str());
            let mut producers = Vec::new();
            for question in ["explain streaming", "and the workflow?"] {
                let accepted = chat(&gateway, &session, question).await;
                let id = accepted["message_id"].as_str().unwrap();
                // `answer` fails on a frame of any other session.
                let answer = ws.answer(&session, id).await;
                assert!(answer.indexes_are_contiguous());
                assert_eq!(answer.text(), answer.last["content"].as_str().unwrap());
                producers.push(accepted["node_id"].as_str().unwrap().to_owned());
            }
            producers
        }));
    }
    let mut producers = Vec::new();
    for task in tasks {
        producers.extend(task.await.unwrap());
    }
    producers.sort();
    producers.dedup();
    assert!(producers.len() > 1, "every answer came from {producers:?}");
}

on_both!(
    /// A stream produced by one AI node, watched on gateway 1 and cancelled through gateway 3,
    /// stops within two chunk intervals.
    a_cancel_through_another_gateway_stops_the_stream_within_two_intervals
);
async fn a_cancel_through_another_gateway_stops_the_stream_within_two_intervals(source: Source) {
    let interval = Duration::from_millis(250);
    let options = ClusterOptions {
        stream_delay_ms: interval.as_millis() as u64,
        ..ClusterOptions::default()
    };
    let (cluster, model) = start(source, options).await;
    let session = "mn-cancel";
    let (mut ws, _, _) = WsClient::open(&cluster.ws_url(0, session)).await;
    let accepted = chat(&cluster.gateway(1), session, "hello").await;
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    let mut seen = 0;
    while seen < 3 {
        let frame = ws.frame_of("message").await;
        if frame["data"]["messageId"] == id.as_str() {
            seen += 1;
        }
    }
    let (status, body) = post(
        &format!("{}/api/cancel", cluster.gateway(2)),
        json!({"session_id": session, "message_id": id}),
    )
    .await;
    let cancelled = Instant::now();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelling");
    let rest = ws.answer(session, &id).await;
    let elapsed = cancelled.elapsed();
    assert!(
        elapsed <= 2 * interval,
        "stopped {elapsed:?} after the cancel"
    );
    assert_eq!(rest.last["status"], "cancelled");
    assert!(
        rest.last["content"]
            .as_str()
            .unwrap()
            .ends_with("\n\n[Cancelled]")
    );
    if let Some(model) = model {
        // The model server was told to stop: its request's connection is closed.
        model.wait_client_closed(0, 2 * interval);
    }
}

on_both!(
    /// kill -9 the gateway a client reached through NGINX, mid-stream: the client reconnects
    /// through NGINX to another node and ends with the exact final text, no duplicate, no gap.
    killing_the_clients_gateway_mid_stream_loses_nothing
);
async fn killing_the_clients_gateway_mid_stream_loses_nothing(source: Source) {
    let (mut cluster, _model) = start(source, ClusterOptions::default()).await;
    let session = "mn-kill-gw";
    let url = cluster.ws_via_nginx(session);
    let (mut ws, welcome, _) = WsClient::open(&url).await;
    let first_node = welcome["nodeId"].as_str().unwrap().to_owned();
    let accepted = chat(
        &cluster.nginx.url(),
        session,
        "give me a technical deep dive",
    )
    .await;
    let id = accepted["message_id"].as_str().unwrap().to_owned();

    let mut text = String::new();
    let mut next = 0i64;
    while next < 10 {
        let frame = ws.frame_of("message").await;
        if frame["data"]["messageId"] == id.as_str() {
            assert_eq!(frame["data"]["index"], next);
            text.push_str(frame["data"]["chunk"].as_str().unwrap());
            next += 1;
        }
    }
    let victim = Cluster::index_of(&cluster.gateways, &first_node);
    cluster.gateways[victim].kill9();
    // The old socket may still deliver what was in flight; then it closes.
    let early = follow(&mut ws, &id, &mut text, &mut next).await;
    assert!(
        early.is_none(),
        "the answer ended before the node died; make it longer"
    );

    let (mut ws, welcome, history) = connect_retrying(&url).await;
    assert_ne!(
        welcome["nodeId"],
        first_node.as_str(),
        "NGINX sent us to the dead node"
    );
    let messages = history["messages"].as_array().unwrap();
    let answer = messages
        .iter()
        .find(|m| m["messageId"] == id.as_str())
        .unwrap();
    let partial = answer["content"].as_str().unwrap_or_default();
    assert!(partial.starts_with(&text), "history lost text we had");
    let final_message = if answer["isComplete"] == true {
        answer.clone()
    } else {
        text = partial.to_owned();
        next = history["streaming"]["lastIndex"].as_i64().unwrap() + 1;
        let done = follow(&mut ws, &id, &mut text, &mut next).await.unwrap();
        assert_eq!(
            text,
            done["content"].as_str().unwrap(),
            "history + chunks != final"
        );
        done
    };
    assert_eq!(final_message["status"], "completed");
}

on_both!(
    /// kill -9 the AI node producing a stream: the watcher sees `failed` within lease + 3 s, and a
    /// new chat in that session works.
    killing_the_producing_ai_node_fails_the_answer_within_the_lease
);
async fn killing_the_producing_ai_node_fails_the_answer_within_the_lease(source: Source) {
    let lease = Duration::from_secs(4);
    let options = ClusterOptions {
        stream_delay_ms: 50,
        lease_secs: lease.as_secs(),
        ..ClusterOptions::default()
    };
    let (mut cluster, model) = start(source, options).await;
    let session = "mn-kill-ai";
    let (mut ws, _, _) = WsClient::open(&cluster.ws_url(0, session)).await;
    let accepted = chat(&cluster.gateway(0), session, "hello").await;
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    let producer = accepted["node_id"].as_str().unwrap().to_owned();
    let mut text = String::new();
    let mut next = 0i64;
    while next < 5 {
        let frame = ws.frame_of("message").await;
        if frame["data"]["messageId"] == id.as_str() {
            text.push_str(frame["data"]["chunk"].as_str().unwrap());
            next += 1;
        }
    }
    let victim = Cluster::index_of(&cluster.ai, &producer);
    cluster.ai[victim].kill9();
    let killed = Instant::now();
    if let Some(model) = &model {
        // The dead node's request to the model server went with it.
        model.wait_client_closed(0, Duration::from_secs(2));
    }

    let mut error_seen = false;
    let final_message = loop {
        let frame = ws.frame().await;
        if frame["type"] == "error" {
            assert_eq!(frame["code"], "STREAM_FAILED", "{frame}");
            assert_eq!(frame["messageId"], id.as_str());
            error_seen = true;
            continue;
        }
        if frame["type"] != "message" || frame["data"]["messageId"] != id.as_str() {
            continue;
        }
        let data = &frame["data"];
        if data["isComplete"] == true {
            break data.clone();
        }
        assert_eq!(data["index"].as_i64().unwrap(), next);
        text.push_str(data["chunk"].as_str().unwrap());
        next += 1;
    };
    let elapsed = killed.elapsed();
    assert!(
        elapsed <= lease + Duration::from_secs(3),
        "failed after {elapsed:?}"
    );
    assert!(error_seen, "no STREAM_FAILED error frame");
    assert_eq!(final_message["status"], "failed");
    assert_eq!(final_message["content"].as_str().unwrap(), text);

    // The session is free again, and the chat goes to a live node.
    let again = chat(&cluster.gateway(0), session, "hello again").await;
    assert_ne!(again["node_id"], producer.as_str());
    let answer = ws
        .answer(session, again["message_id"].as_str().unwrap())
        .await;
    assert_eq!(answer.last["status"], "completed");
}

/// Restart redis-server between two answers of a session: history is still there, and an
/// already-open socket receives the next stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_between_answers_keeps_history_and_open_sockets_keep_streaming() {
    let mut cluster = Cluster::start(ClusterOptions {
        stream_delay_ms: 5,
        ..ClusterOptions::default()
    })
    .await;
    let session = "mn-redis";
    let (mut ws, _, _) = WsClient::open(&cluster.ws_url(0, session)).await;
    let first = chat(&cluster.gateway(0), session, "hello").await;
    let first_answer = ws
        .answer(session, first["message_id"].as_str().unwrap())
        .await;

    cluster.redis.stop();
    cluster.redis.restart();
    cluster.wait_healthy(Duration::from_secs(20)).await;

    let history =
        e2e::api::get_json(&format!("{}/api/history/{session}", cluster.gateway(1))).await;
    assert_eq!(history["count"], 2);
    assert_eq!(
        history["messages"][1]["content"],
        first_answer.last["content"]
    );

    // The first request on a connection Redis dropped may fail; a client retries a 503.
    let deadline = Instant::now() + Duration::from_secs(15);
    let second = loop {
        let (status, body) = post(
            &format!("{}/api/chat", cluster.gateway(0)),
            json!({"session_id": session, "message": "hello again"}),
        )
        .await;
        if status == 202 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "chats never worked again: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let answer = ws
        .answer(session, second["message_id"].as_str().unwrap())
        .await;
    assert_eq!(answer.last["status"], "completed");
    assert_eq!(answer.text(), answer.last["content"].as_str().unwrap());
}

/// With one dead URL in `AI_SERVICE_URLS`, 50 chats in a row all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_chats_in_a_row_succeed_past_a_dead_ai_url() {
    let dead = format!("http://127.0.0.1:{}", testkit::free_port());
    let cluster = Cluster::start(ClusterOptions {
        stream_delay_ms: 1,
        extra_ai_urls: vec![dead],
        ..ClusterOptions::default()
    })
    .await;
    for i in 0..50 {
        let base = cluster.gateway(i % 3);
        chat(&base, &format!("mn-dead-url-{i}"), "hello").await;
    }
    let failovers = e2e::api::metric(
        &cluster.gateway(0),
        "gateway_ai_failovers_total{node_id=\"ws-node-1\"}",
    )
    .await;
    assert!(failovers > 0, "gateway 1 never moved past the dead URL");
}

/// SIGTERM stops nodes cleanly: a gateway closes its sockets with 1001 and exits 0; an AI node
/// lets its running answer finish, then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_nodes_cleanly() {
    let mut cluster = Cluster::start(ClusterOptions {
        ai_nodes: 1,
        gateways: 2,
        stream_delay_ms: 20,
        ..ClusterOptions::default()
    })
    .await;
    let session = "mn-sigterm";
    let (mut watcher, _, _) = WsClient::open(&cluster.ws_url(1, session)).await;
    let (mut doomed, _, _) = WsClient::open(&cluster.ws_url(0, session)).await;
    let accepted = chat(&cluster.gateway(1), session, "hello").await;
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    let frame = doomed.frame_of("message").await;
    assert_eq!(frame["data"]["sessionId"], session);

    // The AI node is stopped mid-answer, the gateway right after.
    let ai = tokio::task::spawn_blocking({
        let mut node = std::mem::take(&mut cluster.ai);
        move || node[0].stop()
    });
    let gateway_status = tokio::task::block_in_place(|| cluster.gateways[0].stop());
    assert!(
        gateway_status.is_some_and(|s| s.success()),
        "{gateway_status:?}"
    );
    let close = loop {
        match doomed.event().await {
            Event::Frame(_) => continue,
            Event::Closed(frame) => break frame,
        }
    };
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1012));

    let answer = watcher.answer(session, &id).await;
    assert_eq!(
        answer.last["status"], "completed",
        "the answer was not allowed to finish"
    );
    assert_eq!(answer.text(), answer.last["content"].as_str().unwrap());
    let ai_status = ai.await.unwrap();
    assert!(ai_status.is_some_and(|s| s.success()), "{ai_status:?}");
}

/// Redis unreachable past the AI node's retry window mid-answer: the answer is not left
/// `streaming`. Once Redis is back, it is ended as `failed` (lease + a few seconds), the
/// session takes a new chat, and the open socket sees the new answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_off_from_redis_ends_failed_not_streaming() {
    let lease = Duration::from_secs(4);
    let mut cluster = Cluster::start(ClusterOptions {
        ai_nodes: 1,
        gateways: 1,
        stream_delay_ms: 50,
        lease_secs: lease.as_secs(),
        ..ClusterOptions::default()
    })
    .await;
    let session = "mn-redis-gone";
    let (mut ws, _, _) = WsClient::open(&cluster.ws_url(0, session)).await;
    let accepted = chat(
        &cluster.gateway(0),
        session,
        "give me a technical deep dive",
    )
    .await;
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    let mut seen = 0;
    while seen < 3 {
        let frame = ws.frame_of("message").await;
        if frame["data"]["messageId"] == id.as_str() {
            seen += 1;
        }
    }
    // Longer than the AI node's append retries plus its finish retries (a lease each).
    tokio::task::block_in_place(|| cluster.redis.stop());
    tokio::time::sleep(Duration::from_secs(11)).await;
    tokio::task::block_in_place(|| cluster.redis.restart());
    let back = Instant::now();

    // The answer must reach history with a final status (it may first vanish from snapshots
    // for a moment, between its lease running out and a reaper failing it).
    let answer = loop {
        let response = http()
            .get(format!("{}/api/history/{session}", cluster.gateway(0)))
            .send()
            .await;
        if let Ok(response) = response
            && response.status().is_success()
        {
            let history: Json = response.json().await.unwrap();
            let stored = history["messages"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["messageId"] == id.as_str()).cloned());
            if let Some(answer) = stored.filter(|a| a["isComplete"] == true) {
                break answer;
            }
        }
        assert!(
            back.elapsed() < lease + Duration::from_secs(6),
            "the answer had not ended {:?} after Redis came back",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer["status"], "failed", "{answer}");
    assert_eq!(answer["isComplete"], true);

    let deadline = Instant::now() + Duration::from_secs(10);
    let next = loop {
        let (status, body) = post(
            &format!("{}/api/chat", cluster.gateway(0)),
            json!({"session_id": session, "message": "hello again"}),
        )
        .await;
        if status == 202 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no chat after Redis came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The socket may still get the failed answer's error frame (or a fresh history) first.
    let next_id = next["message_id"].as_str().unwrap();
    loop {
        let frame = ws.frame().await;
        if frame["type"] == "error" {
            assert_eq!(frame["messageId"], id.as_str(), "{frame}");
            continue;
        }
        if frame["type"] == "message"
            && frame["data"]["messageId"] == next_id
            && frame["data"]["isComplete"] == true
        {
            assert_eq!(frame["data"]["status"], "completed");
            break;
        }
    }
}

/// How a Redis Cluster master is lost.
#[derive(Clone, Copy, Debug)]
enum MasterFault {
    /// kill -9: its sockets close.
    Kill,
    /// SIGSTOP, as a frozen host: its sockets stay open and nothing answers on them.
    Freeze,
}

/// On a Redis Cluster (3 masters, 3 replicas), kill -9 the master that holds a streaming
/// session's slot: its replica takes over, and every socket, on every gateway, still sees each
/// answer exactly once and in order, ending (completed, or failed if the shard was away longer
/// than the producer retries); sessions on the other shards complete untouched, and the
/// failed-over session takes new chats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_redis_cluster_master_mid_stream_loses_and_repeats_nothing() {
    a_master_lost_mid_stream(MasterFault::Kill).await;
}

/// The same with the master frozen (SIGSTOP) instead: no connection closes, so nodes learn of
/// the failover only from the cluster's slot map. The frozen master stays frozen while the
/// failed-over session takes a new chat (AI node and gateways route to its replica), and when
/// it comes back, as a replica, nothing is delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freezing_a_redis_cluster_master_mid_stream_loses_and_repeats_nothing() {
    a_master_lost_mid_stream(MasterFault::Freeze).await;
}

async fn a_master_lost_mid_stream(fault: MasterFault) {
    let mut cluster = Cluster::start(ClusterOptions {
        stream_delay_ms: 50,
        redis_cluster: true,
        ..ClusterOptions::default()
    })
    .await;
    let sessions: Vec<String> = (0..6).map(|i| format!("mn-failover-{i}")).collect();
    let mut sockets = Vec::new();
    for (i, session) in sessions.iter().enumerate() {
        let (ws, _, _) = WsClient::open(&cluster.ws_url(i % 3, session)).await;
        sockets.push(ws.record());
    }
    let mut ids = Vec::new();
    for (i, session) in sessions.iter().enumerate() {
        let accepted = chat(
            &cluster.gateway(i % 3),
            session,
            "give me a technical deep dive",
        )
        .await;
        ids.push(accepted["message_id"].as_str().unwrap().to_owned());
    }
    // Mid-stream: the first session has a few chunks.
    let chunked = |frames: &[Json], id: &str, n: i64| {
        frames.iter().any(|f| {
            f["type"] == "message"
                && f["data"]["messageId"] == id
                && f["data"]["index"].as_i64().is_some_and(|i| i >= n)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !chunked(&sockets[0].frames(), &ids[0], 5) {
        assert!(Instant::now() < deadline, "the first answer never streamed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let redis = cluster.redis.cluster();
    let channel = |s: &str| format!("chat:stream:{{{s}}}");
    let victim = redis.master_of(&channel(&sessions[0]));
    let on_victim: Vec<bool> = sessions
        .iter()
        .map(|s| redis.master_of(&channel(s)) == victim)
        .collect();
    match fault {
        MasterFault::Kill => redis.kill(victim),
        MasterFault::Freeze => redis.freeze(victim),
    }
    tokio::task::block_in_place(|| redis.wait_failover(victim));

    // Every answer ends on its socket, within the lease and the producer's retries.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (socket, id) in sockets.iter().zip(&ids) {
        while !socket.has(|f| e2e::sequence::shows_ended(f, id)) {
            if Instant::now() >= deadline {
                for node in [
                    "ai-node-1",
                    "ai-node-2",
                    "ws-node-1",
                    "ws-node-2",
                    "ws-node-3",
                ] {
                    eprintln!("==== {node}\n{}", cluster.log_of(node));
                }
            }
            assert!(
                Instant::now() < deadline,
                "answer {id} never ended on its socket"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for ((socket, id), victim_shard) in sockets.into_iter().zip(&ids).zip(&on_victim) {
        let frames = socket.stop().await;
        let checked = e2e::sequence::check(&frames);
        assert!(
            checked.violations.is_empty(),
            "{id}: {:?}",
            checked.violations
        );
        let ended = &checked.ended[id];
        if *victim_shard {
            assert!(
                ended.status == "completed" || ended.status == "failed",
                "{id}: {ended:?}"
            );
        } else {
            assert_eq!(ended.status, "completed", "{id} was on a live shard");
        }
    }

    // The failed-over session takes a new chat, answered in full.
    let session = &sessions[0];
    let (mut ws, _, _) = WsClient::open(&cluster.ws_url(1, session)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let again = loop {
        let (status, body) = post(
            &format!("{}/api/chat", cluster.gateway(1)),
            json!({"session_id": session, "message": "hello again"}),
        )
        .await;
        if status == 202 {
            break body;
        }
        assert!(status == 503 || status == 409, "{status}: {body}");
        assert!(
            Instant::now() < deadline,
            "chats never worked again: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let answer = ws
        .answer(session, again["message_id"].as_str().unwrap())
        .await;
    assert_eq!(answer.last["status"], "completed");
    assert_eq!(answer.text(), answer.last["content"].as_str().unwrap());

    if let MasterFault::Freeze = fault {
        // Back as a replica: the next answer is still seen once, in order.
        let redis = cluster.redis.cluster();
        tokio::task::block_in_place(|| redis.thaw(victim));
        let recorded = ws.record();
        let accepted = chat(&cluster.gateway(1), session, "and once more").await;
        let id = accepted["message_id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !recorded.has(|f| e2e::sequence::shows_ended(f, &id)) {
            assert!(
                Instant::now() < deadline,
                "the answer after the thaw never ended"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let frames = recorded.stop().await;
        let checked = e2e::sequence::check(&frames);
        assert!(checked.violations.is_empty(), "{:?}", checked.violations);
        assert_eq!(checked.ended[&id].status, "completed");
    }
}
