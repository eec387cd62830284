//! The bench tool, once at a tiny size against a real stack (real processes: Redis, an AI node,
//! a gateway). Nothing here is timed: the figures are checked for what must hold at any speed
//! (every chunk delivered once, every answer whole, every figure present); docs/BENCHMARKS.md
//! has the measurements.

use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;
use testkit::{RedisServer, Service, workspace_binary};

struct BenchStack {
    redis: RedisServer,
    _ai: Service,
    gateway: Service,
    _data: tempfile::TempDir,
}

fn start() -> BenchStack {
    let redis = RedisServer::start();
    let data = tempfile::tempdir().expect("data dir");
    let mut env = HashMap::from([
        ("REDIS_URL".to_owned(), redis.url()),
        (
            "DATABASE_URL".to_owned(),
            format!("sqlite://{}/chat.db", data.path().display()),
        ),
        ("AUTH_MODE".to_owned(), "dev".to_owned()),
        ("CHAT_RATE_LIMIT_PER_MINUTE".to_owned(), "100000".to_owned()),
        ("STREAM_DELAY_MS".to_owned(), "5".to_owned()),
    ]);
    let ai = Service::start("bench-ai", "ai-service", &env);
    env.insert("AI_SERVICE_URLS".to_owned(), ai.url());
    let gateway = Service::start("bench-gw", "ws-gateway", &env);
    BenchStack {
        redis,
        _ai: ai,
        gateway,
        _data: data,
    }
}

/// Runs `loadgen args... --json FILE` and returns the report.
fn loadgen(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let output = Command::new(workspace_binary("loadgen"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "loadgen {args:?} failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}{stderr}");
    serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON")
}

/// Redis alone, the minimal fan-out and the gateway each receive every published chunk exactly
/// once and in order; the report carries every figure the table shows.
#[test]
fn fanout_delivers_every_chunk_once_to_every_receiver() {
    let stack = start();
    let report = loadgen(&[
        "fanout",
        "--redis",
        &stack.redis.url(),
        "--gateway",
        &stack.gateway.url(),
        "--sessions",
        "30",
        "--rate",
        "10",
        "--seconds",
        "2",
        "--warmup",
        "0.5",
    ]);
    assert_eq!(report["mode"], "fanout");
    let targets = report["targets"].as_array().expect("targets");
    let names: Vec<&str> = targets
        .iter()
        .filter_map(|t| t["target"].as_str())
        .collect();
    assert_eq!(names, ["redis", "minimal", "gateway"]);
    for t in targets {
        let name = &t["target"];
        let published = t["published"]["frames"].as_u64().expect("frames");
        assert!(published >= 30 * 10 * 2, "{name}: published {published}");
        assert_eq!(t["published"]["acknowledged"], published, "{name}");
        assert_eq!(
            t["published"]["unreceived"], 0,
            "{name}: a subscriber was missing"
        );
        assert_eq!(t["tally"]["received"], published, "{name}: {t}");
        assert_eq!(t["tally"]["lost"], 0, "{name}");
        assert_eq!(t["tally"]["duplicated"], 0, "{name}");
        assert_eq!(t["tally"]["out_of_order"], 0, "{name}");
        assert_eq!(t["closed"], 0, "{name}");
        assert!(
            t["latency"]["count"].as_u64().unwrap_or(0) > 0,
            "{name}: {t}"
        );
        assert!(t["delivered_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{name}");
        assert!(t["connect_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{name}");
        assert!(t["redis_cpu_us_per_chunk"].is_number(), "{name}: {t}");
        if name != "redis" {
            assert!(t["cpu_us_per_chunk"].is_number(), "{name}: {t}");
            assert!(t["idle_bytes_per_socket"].is_number(), "{name}: {t}");
        }
    }
}

/// End to end: concurrent chats through the AI node, every answer whole, and fresh sockets to
/// streaming sessions timed to their history.
#[test]
fn chat_streams_whole_answers_and_times_reconnects() {
    let stack = start();
    let report = loadgen(&[
        "chat",
        "--gateway",
        &stack.gateway.url(),
        "--streams",
        "8",
        "--seconds",
        "4",
        "--warmup",
        "0.2",
        "--delay-ms",
        "5",
        "--reconnects",
        "6",
    ]);
    let run = &report["runs"][0];
    assert_eq!(run["streams"], 8);
    assert!(run["answers"].as_u64().unwrap_or(0) >= 16, "{run}");
    for zero in [
        "lost",
        "duplicated",
        "out_of_order",
        "corrupt",
        "not_completed",
        "closed",
    ] {
        assert_eq!(run[zero], 0, "{zero}: {run}");
    }
    assert!(
        run["time_to_first_chunk"]["count"].as_u64().unwrap_or(0) > 0,
        "{run}"
    );
    assert!(run["jitter"]["count"].as_u64().unwrap_or(0) > 0, "{run}");
    assert_eq!(run["reconnect"]["count"], 6, "{run}");
    assert!(run["gateway_cpu_cores"].is_number(), "{run}");
}

/// `loadgen median` takes, figure by figure, the middle of several runs.
#[test]
fn the_median_of_runs_is_taken_per_figure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for (i, p99) in [3.0, 1.0, 2.0].iter().enumerate() {
        let report = serde_json::json!({
            "mode": "reconnect", "reconnects": 10, "concurrency": 1, "mid_stream": i,
            "latency": {"count": 10, "p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": p99, "max_ms": 4.0}
        });
        let path = dir.path().join(format!("{i}.json"));
        std::fs::write(&path, report.to_string()).expect("write");
        files.push(path);
    }
    let out = dir.path().join("median.json");
    let status = Command::new(workspace_binary("loadgen"))
        .arg("median")
        .args(&files)
        .arg("--json")
        .arg(&out)
        .status()
        .expect("loadgen runs");
    assert!(status.success());
    let median: Value =
        serde_json::from_slice(&std::fs::read(&out).expect("median")).expect("JSON");
    assert_eq!(median["latency"]["p99_ms"], 2.0);
    assert_eq!(median["mid_stream"], 1);
}
