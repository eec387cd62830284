//! `loadgen`: measures a running stack from the outside, the way browsers use it.
//!
//! ```text
//! loadgen reconnect [--url http://127.0.0.1:8080] [--count 1000] [--concurrency 1]
//! ```
//!
//! `reconnect`: keeps an answer streaming in one session and opens `count` fresh sockets to it
//! (`concurrency` at a time), timing each from the start of the TCP connect to the `history`
//! frame, and prints p50/p90/p99/max.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

struct Args {
    url: String,
    count: usize,
    concurrency: usize,
}

fn parse_args() -> anyhow::Result<(String, Args)> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let mut parsed = Args {
        url: "http://127.0.0.1:8080".into(),
        count: 1000,
        concurrency: 1,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => parsed.url = value.trim_end_matches('/').to_owned(),
            "--count" => parsed.count = value.parse().context("--count")?,
            "--concurrency" => parsed.concurrency = value.parse().context("--concurrency")?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok((command, parsed))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (command, args) = parse_args()?;
    match command.as_str() {
        "reconnect" => reconnect(args).await,
        _ => bail!("usage: loadgen reconnect [--url URL] [--count N] [--concurrency N]"),
    }
}

/// Keeps one answer streaming in `session` for as long as `until` is running.
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

async fn reconnect(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let session = format!("bench-reconnect-{}", std::process::id());
    let streamer = tokio::spawn(keep_streaming(
        http.clone(),
        args.url.clone(),
        session.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ws_url = format!(
        "{}/ws/chat?session_id={session}",
        args.url.replacen("http", "ws", 1)
    );
    let per_task = args.count.div_ceil(args.concurrency);
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        // A user per worker: each holds one socket at a time, well inside the per-user limit.
        let url = format!("{ws_url}&user_id=bench-{worker}");
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_task);
            let mut streaming = 0usize;
            for _ in 0..per_task {
                let (elapsed, mid_stream) = time_to_history(&url).await?;
                samples.push(elapsed);
                streaming += usize::from(mid_stream);
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
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "reconnects={} concurrency={} mid_stream={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        args.concurrency,
        mid_stream,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        samples[samples.len() - 1]
    );
    Ok(())
}

/// Time from connect to the `history` frame, and whether an answer was mid-stream.
async fn time_to_history(url: &str) -> anyhow::Result<(Duration, bool)> {
    let start = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no frame in 10 s")?
            .context("socket closed")??;
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text)?;
            if frame["type"] == "history" {
                let elapsed = start.elapsed();
                let _ = ws.close(None).await;
                return Ok((elapsed, !frame["streaming"].is_null()));
            }
        }
    }
}
