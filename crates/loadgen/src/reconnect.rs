//! `loadgen reconnect`: keeps an answer streaming in one session and opens fresh sockets to it,
//! timing each from the start of its TCP connect to its `history` frame.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::measure::Summary;
use crate::ws;

#[derive(Debug, Clone, clap::Args)]
pub struct ReconnectArgs {
    /// The gateway (or NGINX), `http://127.0.0.1:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ReconnectReport {
    pub mode: String,
    pub reconnects: usize,
    pub concurrency: usize,
    pub mid_stream: usize,
    pub latency: Summary,
}

/// Keeps one answer streaming in `session` until aborted.
async fn keep_streaming(http: reqwest::Client, api: String, session: String) {
    loop {
        let response = http
            .post(format!("{api}/api/chat"))
            .json(&json!({"session_id": session, "message": "give me a technical deep dive"}))
            .send()
            .await;
        // 409 means one is still streaming: fine, check again shortly.
        if response.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(args: ReconnectArgs) -> anyhow::Result<ReconnectReport> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let session = format!("bench-reconnect-{}", std::process::id());
    let streamer = tokio::spawn(keep_streaming(
        http.clone(),
        args.url.clone(),
        session.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ws_url = format!("{}/ws/chat?session_id={session}", ws::ws_url(&args.url));
    let per_task = args.count.div_ceil(args.concurrency.max(1));
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency.max(1) {
        // A user per worker: each holds one socket at a time, well inside the per-user limit.
        let url = format!("{ws_url}&user_id=bench-{worker}");
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_task);
            let mut streaming = 0usize;
            for _ in 0..per_task {
                let start = Instant::now();
                let (mut socket, history) = ws::connect_until_frame(&url, "history").await?;
                samples.push(start.elapsed());
                let frame: Value = serde_json::from_str(&history)?;
                streaming += usize::from(!frame["streaming"].is_null());
                let _ = socket.close(None).await;
            }
            anyhow::Ok((samples, streaming))
        }));
    }
    let mut samples = Vec::new();
    let mut mid_stream = 0;
    for task in tasks {
        let (s, m) = task.await??;
        samples.extend(s);
        mid_stream += m;
    }
    streamer.abort();
    Ok(ReconnectReport {
        mode: "reconnect".into(),
        reconnects: samples.len(),
        concurrency: args.concurrency,
        mid_stream,
        latency: Summary::of_durations(&samples),
    })
}
