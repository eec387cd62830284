//! What operators rely on, against real processes: `/metrics` of both binaries (valid
//! Prometheus text, the documented names, bounded labels, figures that move with traffic), JSON
//! log lines with the node id and one trace id per chat across nodes, health endpoints, and a
//! rolling restart of every gateway behind NGINX during live streams that loses nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::metrics::Scrape;
use e2e::sequence::{self, Ended};
use e2e::{Cluster, ClusterOptions, Json, Recording, WsClient, api, http};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Polls `condition` every 50 ms until it holds, or fails with `what` after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Families each binary exposes from the start (the labelled ones appear with their first
/// sample and are checked after traffic).
const GATEWAY_FAMILIES: &[&str] = &[
    "gateway_sockets_open",
    "gateway_sockets_total",
    "gateway_sessions_subscribed",
    "gateway_frames_received_total",
    "gateway_frames_sent_total",
    "gateway_chunks_delivered_total",
    "gateway_frames_deduplicated_total",
    "gateway_frames_dropped_total",
    "gateway_slow_consumers_total",
    "gateway_resyncs_total",
    "gateway_gaps_resynced_total",
    "gateway_chats_forwarded_total",
    "gateway_ai_failovers_total",
    "history_cache_total",
    "store_writer_queue_depth",
    "store_writes_failed_total",
    "store_writes_dropped_total",
    "store_write_retries_total",
    "reaper_answers_failed_total",
];
const AI_FAMILIES: &[&str] = &[
    "ai_streams_started_total",
    "ai_streams_ended_total",
    "ai_streams_fenced_total",
    "ai_chunks_published_total",
    "history_cache_total",
    "store_writer_queue_depth",
    "reaper_answers_failed_total",
];

/// Both binaries serve `/metrics` as Prometheus text with the documented names, every series
/// labelled with the node's id and no label naming a session or message; the counters and
/// histograms move when a chat streams, a socket reconnects and resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_binaries_export_metrics_that_move_with_traffic() {
    let cluster = Cluster::start(ClusterOptions {
        ai_nodes: 1,
        gateways: 1,
        ..ClusterOptions::default()
    })
    .await;
    let (gateway, ai) = (cluster.gateway(0), cluster.ai[0].url());
    let (g0, a0) = (Scrape::of(&gateway).await, Scrape::of(&ai).await);
    for family in GATEWAY_FAMILIES {
        assert!(g0.has(family), "gateway /metrics lacks {family}");
    }
    for family in AI_FAMILIES {
        assert!(a0.has(family), "AI /metrics lacks {family}");
    }

    // A chat over a socket, streamed to its end.
    let session = "metrics-s1";
    let (mut ws, _, _) = WsClient::open(&cluster.ws_url(0, session)).await;
    ws.send_json(json!({"type": "chat", "message": "hello"}))
        .await;
    let accepted = ws.frame_of("accepted").await;
    let answer_id = accepted["messageId"].as_str().unwrap().to_owned();
    let answer = ws.answer(session, &answer_id).await;
    let chunks = answer.chunks.len() as f64;
    assert!(chunks > 0.0);
    // A reload: a new socket, and a resume of the ended answer.
    ws.close().await;
    let (mut ws, _, _) = WsClient::open(&cluster.ws_url(0, session)).await;
    ws.send_json(json!({"type": "resume", "messageId": answer_id, "fromIndex": 0}))
        .await;
    assert_eq!(ws.frame_of("recovery").await["status"], "COMPLETED");
    // A chat over REST.
    let rest = api::chat(&gateway, "metrics-s2", "hello").await;
    let rest_id = rest["message_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(20), "the REST chat ends", || async {
        let history = api::get_json(&format!("{gateway}/api/history/metrics-s2")).await;
        history["messages"].as_array().is_some_and(|m| {
            m.iter()
                .any(|m| m["messageId"] == rest_id.as_str() && m["isComplete"] == true)
        })
    })
    .await;
    // The AI node's writes of record land in the background.
    eventually(
        Duration::from_secs(10),
        "both answers' ends written to SQL",
        || async {
            let a = Scrape::of(&ai).await;
            // One record each: both starts, every chunk, both ends.
            a.value("store_write_batch_records_sum", &[])
                >= a.value("ai_chunks_published_total", &[]) + 4.0
        },
    )
    .await;

    let (g1, a1) = (Scrape::of(&gateway).await, Scrape::of(&ai).await);
    let moved = |before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let g = |name: &str, labels: &[(&str, &str)]| moved(&g0, &g1, name, labels);
    let a = |name: &str, labels: &[(&str, &str)]| moved(&a0, &a1, name, labels);
    assert_eq!(g("gateway_sockets_total", &[]), 2.0);
    assert_eq!(g1.value("gateway_sockets_open", &[]), 1.0);
    assert_eq!(g1.value("gateway_sessions_subscribed", &[]), 1.0);
    assert!(g("gateway_frames_received_total", &[]) >= chunks + 2.0);
    assert!(g("gateway_frames_sent_total", &[]) >= chunks + 4.0);
    assert!(g("gateway_chunks_delivered_total", &[]) >= chunks);
    assert!(g("gateway_chunk_delivery_seconds_count", &[]) >= chunks);
    assert_eq!(g("gateway_client_frames_total", &[("type", "chat")]), 1.0);
    assert_eq!(g("gateway_client_frames_total", &[("type", "resume")]), 1.0);
    assert_eq!(
        g("gateway_recoveries_total", &[("status", "COMPLETED")]),
        1.0
    );
    assert_eq!(g("gateway_chats_total", &[("outcome", "accepted")]), 2.0);
    assert_eq!(g("gateway_chats_forwarded_total", &[]), 2.0);
    assert_eq!(g("gateway_ai_request_seconds_count", &[]), 2.0);
    assert!(g("history_cache_total", &[("level", "l1")]) >= 2.0);
    assert!(g("redis_call_duration_seconds_count", &[]) > 0.0);
    assert_eq!(
        g(
            "axum_http_requests_total",
            &[
                ("endpoint", "/api/chat"),
                ("method", "POST"),
                ("status", "202")
            ]
        ),
        1.0
    );
    assert!(g("axum_http_requests_total", &[("endpoint", "/ws/chat")]) >= 2.0);

    assert_eq!(a("ai_chats_total", &[("outcome", "accepted")]), 2.0);
    assert_eq!(a("ai_streams_started_total", &[]), 2.0);
    assert_eq!(a("ai_streams_ended_total", &[("status", "completed")]), 2.0);
    assert!(a("ai_chunks_published_total", &[]) >= chunks);
    assert_eq!(a("ai_time_to_first_chunk_seconds_count", &[]), 2.0);
    assert_eq!(a("ai_stream_duration_seconds_count", &[]), 2.0);
    assert!(a("redis_call_duration_seconds_count", &[]) > 0.0);
    assert!(a("sql_call_duration_seconds_count", &[("op", "write")]) >= 1.0);
    assert_eq!(
        a(
            "axum_http_requests_total",
            &[("endpoint", "/chat"), ("status", "202")]
        ),
        2.0
    );

    // Every series names its node; no label holds an id of a session or a message.
    for (scrape, node) in [(&g1, "ws-node-1"), (&a1, "ai-node-1")] {
        for sample in &scrape.samples {
            assert_eq!(
                sample.labels.get("node_id").map(String::as_str),
                Some(node),
                "{} {:?}",
                sample.name,
                sample.labels
            );
        }
        for (name, key, value) in scrape.label_values() {
            for id in [session, "metrics-s2", answer_id.as_str(), rest_id.as_str()] {
                assert!(!value.contains(id), "{name}{{{key}={value:?}}} holds an id");
            }
        }
    }
    // The Grafana dashboard asks only for series the nodes export (the Kafka ones exist with
    // Kafka configured: tests/tests/events.rs) and OPERATIONS.md lists every one.
    let families: HashSet<String> = g1.types.keys().chain(a1.types.keys()).cloned().collect();
    let operations = std::fs::read_to_string(repo_file("docs/OPERATIONS.md")).unwrap();
    for name in dashboard_metrics() {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            operations.contains(&format!("`{family}")),
            "{family} is not documented"
        );
        if !family.starts_with("events_") && !family.starts_with("kafka_") {
            assert!(
                families.contains(family),
                "the dashboard asks for {family}, never exported"
            );
        }
    }
    // A path nobody routes is counted under one label, whatever the path.
    let _ = api::get_text(&format!("{gateway}/no/such/page-{answer_id}")).await;
    let g2 = Scrape::of(&gateway).await;
    assert!(g2.value("axum_http_requests_total", &[("endpoint", "fallback")]) >= 1.0);
}

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The metric names the Grafana dashboard's queries use (each query filters on `node_id`, so
/// a metric name is what comes right before a `{`).
fn dashboard_metrics() -> HashSet<String> {
    let text = std::fs::read_to_string(repo_file("deploy/grafana/dashboards/chat.json"))
        .expect("deploy/grafana/dashboards/chat.json");
    let dashboard: Json = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    let mut stack = vec![&dashboard];
    while let Some(value) = stack.pop() {
        match value {
            Json::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v.as_str()) {
                        ("expr", Some(expr)) => exprs.push(expr.to_owned()),
                        _ => stack.push(v),
                    }
                }
            }
            Json::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    let mut names = HashSet::new();
    for expr in exprs {
        for (i, _) in expr.match_indices('{') {
            let start = expr[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(0, |p| p + 1);
            if start < i {
                names.insert(expr[start..i].to_owned());
            }
        }
    }
    assert!(names.len() > 30, "{names:?}");
    names
}

/// `/health` lists each component with its state and check latency; `/health/live` and
/// `/health/ready` answer for orchestrators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_report_components_and_latency() {
    let cluster = Cluster::start(ClusterOptions {
        ai_nodes: 1,
        gateways: 1,
        ..ClusterOptions::default()
    })
    .await;
    for base in [cluster.gateway(0), cluster.ai[0].url()] {
        let (status, health) = api::get(&format!("{base}/health")).await;
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["status"], "ok");
        for component in ["redis", "db"] {
            assert_eq!(health["components"][component], "up", "{health}");
            assert!(
                health["latency_ms"][component].as_f64().is_some(),
                "{health}"
            );
        }
        let (status, ready) = api::get(&format!("{base}/health/ready")).await;
        assert_eq!((status, &ready["status"]), (200, &json!("ok")));
        let (status, live) = api::get(&format!("{base}/health/live")).await;
        assert_eq!((status, &live["status"]), (200, &json!("alive")));
    }
    let (_, gateway) = api::get(&format!("{}/health", cluster.gateway(0))).await;
    assert_eq!(gateway["components"]["ai"], "up (1/1 nodes)");
}

/// With `LOG_FORMAT=json` every line of both nodes is one JSON object carrying `node_id`; a
/// chat's lines carry one trace id on the gateway and the AI node: the caller's, from its
/// `traceparent` (REST), or a new one per chat (socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_node_id_and_one_trace_id_per_chat() {
    let cluster = Cluster::start(ClusterOptions {
        ai_nodes: 1,
        gateways: 1,
        env: vec![("LOG_FORMAT", "json".into()), ("LOG_LEVEL", "info".into())],
        ..ClusterOptions::default()
    })
    .await;
    let gateway = cluster.gateway(0);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = http()
        .post(format!("{gateway}/api/chat"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"session_id": "trace-rest", "message": "hello", "user_id": "tracer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (mut ws, _, _) = WsClient::open(&cluster.ws_url(0, "trace-ws")).await;
    ws.send_json(json!({"type": "chat", "message": "hello"}))
        .await;
    let id = ws.frame_of("accepted").await["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.answer("trace-ws", &id).await;

    let lines_of = |node: &str| -> Vec<Json> {
        cluster
            .log_of(node)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{node}: {e}: {l}")))
            .collect()
    };
    let traced = |lines: &[Json], trace: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["trace_id"] == trace)
            .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let mut found = (Vec::new(), Vec::new());
    eventually(
        Duration::from_secs(20),
        "both chats' lines in both logs",
        || {
            let (g, a) = (lines_of("ws-node-1"), lines_of("ai-node-1"));
            let socket_trace = g
                .iter()
                .find(|l| {
                    l["message"] == "chat accepted by an AI node" && l["message_id"] == id.as_str()
                })
                .and_then(|l| l["trace_id"].as_str())
                .map(str::to_owned);
            let done = traced(&a, trace).iter().any(|m| m == "answer ended")
                && socket_trace.as_deref().is_some_and(|t| {
                    traced(&a, t).iter().any(|m| m == "answer ended") && t != trace
                });
            found = (g, a);
            async move { done }
        },
    )
    .await;
    let (g, a) = found;
    for (node, lines) in [("ws-node-1", &g), ("ai-node-1", &a)] {
        assert!(!lines.is_empty());
        for line in lines {
            assert_eq!(line["node_id"], node, "{line}");
            assert!(
                line["level"].is_string() && line["timestamp"].is_string(),
                "{line}"
            );
        }
    }
    assert!(
        traced(&g, trace)
            .iter()
            .any(|m| m == "chat accepted by an AI node")
    );
    let ai_lines = traced(&a, trace);
    assert!(
        ai_lines.iter().any(|m| m == "answer started"),
        "{ai_lines:?}"
    );
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, both nodes export the chat's spans over OTLP
/// (HTTP/protobuf) to a collector, in the caller's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_in_the_callers_trace() {
    // A collector: keeps every body POSTed to /v1/traces.
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post({
            let bodies = bodies.clone();
            move |body: axum::body::Bytes| async move {
                bodies.lock().unwrap().push(body.to_vec());
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let cluster = Cluster::start(ClusterOptions {
        ai_nodes: 1,
        gateways: 1,
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
        ..ClusterOptions::default()
    })
    .await;
    let trace = [
        0x4b_u8, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
        0x47, 0x37,
    ];
    let response = http()
        .post(format!("{}/api/chat", cluster.gateway(0)))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01",
        )
        .json(&json!({"session_id": "otlp", "message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let exported_by = |service: &str| {
        bodies
            .lock()
            .unwrap()
            .iter()
            .any(|body| contains(body, service.as_bytes()) && contains(body, &trace))
    };
    eventually(
        Duration::from_secs(20),
        "both nodes' spans of the trace",
        || {
            let done = exported_by("ws-gateway") && exported_by("ai-service");
            async move { done }
        },
    )
    .await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What one client saw of its session.
#[derive(Default)]
struct Seen {
    /// Every socket's frames, in order.
    sockets: Vec<Vec<Json>>,
    /// Answers it asked for.
    answers: Vec<String>,
    /// Sockets closed with 1012.
    restarts: usize,
}

/// A rolling restart of all three gateways behind NGINX (SIGTERM, wait for the exit, start
/// again) while every client streams answers: each gateway exits within its grace period,
/// its sockets are closed with 1012 and reconnect at once elsewhere, and every socket's frames
/// pass the exactly-once checks, every answer ends completed exactly once in history with the
/// text its sockets showed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_gateway_loses_nothing() {
    const GRACE_SECS: u64 = 5;
    let mut cluster = Cluster::start(ClusterOptions {
        ai_nodes: 2,
        gateways: 3,
        stream_delay_ms: 25,
        env: vec![("SHUTDOWN_GRACE_SECONDS", GRACE_SECS.to_string())],
        // Sockets spread over the three gateways, so that every restart closes some.
        balance: testkit::Balance::BySession,
        ..ClusterOptions::default()
    })
    .await;
    let nginx = format!("http://127.0.0.1:{}", cluster.nginx.port);
    let stop = CancellationToken::new();
    let streaming: Streaming = Arc::default();
    let mut clients = Vec::new();
    for i in 0..8 {
        let session = format!("rolling-{i}");
        let url = cluster.ws_via_nginx(&session);
        let (nginx, stop, streaming) = (nginx.clone(), stop.clone(), streaming.clone());
        clients.push((
            session.clone(),
            tokio::spawn(async move { client(&nginx, &url, &session, stop, streaming).await }),
        ));
    }
    for i in 0..3 {
        // Every client streams (a chunk arrived since the last restart) before the next one.
        streaming.lock().unwrap().clear();
        eventually(Duration::from_secs(20), "every client streaming", || {
            let all = streaming.lock().unwrap().len() == 8;
            async move { all }
        })
        .await;
        let stopped = Instant::now();
        let status = tokio::task::block_in_place(|| cluster.gateways[i].stop());
        let took = stopped.elapsed();
        eprintln!("gateway {i} drained and exited in {took:?}");
        assert!(
            status.is_some_and(|s| s.success()),
            "gateway {i} exited with {status:?}"
        );
        assert!(
            took < Duration::from_secs(GRACE_SECS + 1),
            "gateway {i} took {took:?} to drain"
        );
        assert!(tokio::task::block_in_place(
            || cluster.gateways[i].start_again()
        ));
    }
    stop.cancel();
    let mut restarts = 0;
    let mut answers = 0;
    for (session, client) in clients {
        let seen = client.await.expect("client task");
        restarts += seen.restarts;
        answers += seen.answers.len();
        verify(&nginx, &session, &seen).await;
    }
    eprintln!("{answers} answers, {restarts} sockets closed with 1012");
    assert!(restarts >= 3, "only {restarts} sockets saw a 1012");
    assert!(answers >= 16, "only {answers} answers streamed");
}

/// Chats in `session` one answer after the other until `stop`, following each to its end
/// through as many sockets as it takes; a socket closed by the server is replaced at once.
/// The sessions whose client received a chunk since the set was last cleared.
type Streaming = Arc<Mutex<HashSet<String>>>;

async fn client(
    nginx: &str,
    url: &str,
    session: &str,
    stop: CancellationToken,
    streaming: Streaming,
) -> Seen {
    let mut seen = Seen::default();
    let mut socket = open(url).await;
    let mut chunks_here = 0;
    while !stop.is_cancelled() || seen.answers.len() < 2 {
        let response = http()
            .post(format!("{nginx}/ai/chat"))
            .json(&json!({"session_id": session, "message": "give me a technical deep dive"}))
            .send()
            .await
            .expect("chat through NGINX");
        assert_eq!(response.status(), 202, "chat refused");
        let body: Json = response.json().await.expect("a ChatAccepted body");
        let answer = body["message_id"].as_str().expect("message_id").to_owned();
        seen.answers.push(answer.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        while !socket.has(|f| sequence::shows_ended(f, &answer)) {
            assert!(
                Instant::now() < deadline,
                "{answer} never ended on a socket"
            );
            if let Some(code) = socket.closed() {
                seen.sockets.push(socket.stop().await);
                seen.restarts += usize::from(code == 1012);
                socket = open(url).await;
                chunks_here = 0;
                continue;
            }
            let chunks = socket
                .frames()
                .iter()
                .filter(|f| f["data"]["index"].is_u64())
                .count();
            if chunks > chunks_here {
                chunks_here = chunks;
                streaming.lock().expect("lock").insert(session.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    seen.sockets.push(socket.stop().await);
    seen
}

/// A recorded socket through NGINX, retried while no gateway takes it (up to 20 s).
async fn open(url: &str) -> Recording {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connect = tokio_tungstenite::connect_async(url);
        if let Ok(Ok((ws, _))) = tokio::time::timeout(Duration::from_secs(5), connect).await {
            return WsClient::from_stream(ws).record();
        }
        assert!(Instant::now() < deadline, "no gateway took a socket");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every socket of `session` kept the delivery guarantee, and every answer ended completed,
/// once in history, with the text each socket that saw it end showed.
async fn verify(nginx: &str, session: &str, seen: &Seen) {
    let mut shown: HashMap<String, Vec<Ended>> = HashMap::new();
    for frames in &seen.sockets {
        let checked = sequence::check(frames);
        assert!(
            checked.violations.is_empty(),
            "{session}: {:?}",
            checked.violations
        );
        for (id, end) in checked.ended {
            shown.entry(id).or_default().push(end);
        }
    }
    let history = api::get_json(&format!("{nginx}/api/history/{session}")).await;
    let stored: Vec<&Json> = history["messages"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|m| m["role"] == "assistant")
        .collect();
    let ids: HashSet<&str> = stored
        .iter()
        .filter_map(|m| m["messageId"].as_str())
        .collect();
    assert_eq!(ids.len(), stored.len(), "{session}: an answer stored twice");
    assert_eq!(
        stored.len(),
        seen.answers.len(),
        "{session}: answers stored"
    );
    for answer in &seen.answers {
        let record = stored
            .iter()
            .find(|m| m["messageId"] == answer.as_str())
            .unwrap_or_else(|| panic!("{session}: {answer} not in history"));
        assert_eq!(record["status"], "completed", "{session}: {record}");
        let text = record["content"].as_str().unwrap_or_default();
        let ends = shown
            .get(answer)
            .unwrap_or_else(|| panic!("{session}: no socket saw {answer} end"));
        for end in ends {
            assert_eq!(
                (end.status.as_str(), end.content.as_str()),
                ("completed", text)
            );
        }
    }
}
