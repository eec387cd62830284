//! `loadgen chat`: end to end. M sockets, one session each, each sending a `chat` as soon as
//! its previous answer ended, so M answers stream at once from the AI nodes through Redis and
//! the gateway. Measures time to first chunk (chat sent → first chunk received), inter-chunk
//! jitter (|gap between two chunks − the AI's chunk interval|), publish→receive latency (from
//! the chunk's `timestamp`, milliseconds), and checks every answer: chunks 0, 1, 2, ... each
//! once, and a final message whose content is the chunks joined. Optionally reconnects fresh
//! sockets to streaming sessions meanwhile and times each to its `history` frame (history plus
//! the partial answer: what a reload costs under load).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::measure::{self, BATCH, Latencies, Sequence, Summary, now_us};
use crate::ws::{self, Socket};

/// The `chat` command's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// The gateway (or NGINX), `http://127.0.0.1:PORT`.
    #[arg(long)]
    pub gateway: String,
    /// Concurrent streams; a list runs one after the other (`1000,2000,3000`).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub streams: Vec<usize>,
    /// Seconds measured per stream count, after the warm-up.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// The AI nodes' `STREAM_DELAY_MS`: the interval jitter is measured against.
    #[arg(long, default_value_t = 50)]
    pub delay_ms: u64,
    /// Fresh sockets opened to streaming sessions during the window, timed to `history`.
    #[arg(long, default_value_t = 0)]
    pub reconnects: usize,
    /// Of those, how many at once.
    #[arg(long, default_value_t = 1)]
    pub reconnect_concurrency: usize,
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Seconds over which the sockets' first chats are spread evenly (socket i of N waits
    /// i/N of it). 0: every socket chats at once, and since every answer is as long, they
    /// stay in step: a burst of N chats each answer. About one answer's length spreads the
    /// starts out for good (N / answer length chats a second); give a warm-up at least as long.
    #[arg(long, default_value_t = 0.0)]
    pub spread: f64,
    /// The gateway's process id, for its CPU (default: the process on the URL's port).
    #[arg(long)]
    pub gateway_pid: Option<i32>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ChatReport {
    pub mode: String,
    pub runs: Vec<ChatRun>,
}

/// One stream count's figures.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ChatRun {
    pub streams: usize,
    pub connect_per_s: f64,
    pub answers: u64,
    pub chunks_per_s: f64,
    pub time_to_first_chunk: Summary,
    pub jitter: Summary,
    pub publish_to_receive: Summary,
    pub reconnect: Summary,
    /// Reconnects whose `history` carried an answer mid-stream.
    pub reconnects_mid_stream: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Final messages whose content was not the chunks joined.
    pub corrupt: u64,
    /// Chats refused (`error` frames), by code.
    pub refused: HashMap<String, u64>,
    /// Answers that ended other than `completed`.
    pub not_completed: u64,
    pub closed: u64,
    pub gateway_cpu_cores: Option<f64>,
}

#[derive(Default)]
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    ttfc: Latencies,
    jitter: Latencies,
    latency: Latencies,
    answers: AtomicU64,
    chunks: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    out_of_order: AtomicU64,
    corrupt: AtomicU64,
    not_completed: AtomicU64,
    closed: AtomicU64,
    refused: std::sync::Mutex<HashMap<String, u64>>,
}

pub async fn run(args: ChatArgs) -> anyhow::Result<ChatReport> {
    let pid = match args.gateway_pid {
        Some(pid) => Some(pid),
        None => measure::port_of(&args.gateway)
            .ok()
            .and_then(|port| measure::pid_listening_on(port).ok()),
    };
    let mut runs = Vec::new();
    for &streams in &args.streams {
        let run = one_run(&args, streams, pid).await?;
        eprintln!(
            "chat {streams} streams: ttfc p99 {:.1} ms, jitter p99 {:.1} ms, reconnect p99 {:.1} ms, lost {}, dup {}, corrupt {}",
            run.time_to_first_chunk.p99_ms,
            run.jitter.p99_ms,
            run.reconnect.p99_ms,
            run.lost,
            run.duplicated,
            run.corrupt
        );
        runs.push(run);
    }
    Ok(ChatReport {
        mode: "chat".into(),
        runs,
    })
}

async fn one_run(args: &ChatArgs, streams: usize, pid: Option<i32>) -> anyhow::Result<ChatRun> {
    let base = ws::ws_url(&args.gateway);
    let tag = format!("{:x}", now_us() % 0xffff_ffff);
    let sessions: Vec<String> = (0..streams).map(|i| format!("c{tag}-{i}")).collect();
    let started = Instant::now();
    let sockets: Vec<Socket> = futures_util::stream::iter(sessions.iter().enumerate())
        .map(|(i, session)| {
            let url = format!("{base}/ws/chat?session_id={session}&user_id=bench-{tag}-{i}");
            async move { ws::connect_until(&url, "history").await }
        })
        .buffered(args.connect_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let connect_per_s = streams as f64 / started.elapsed().as_secs_f64();

    let shared = Arc::new(Shared::default());
    let delay_us = args.delay_ms * 1000;
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let first = Duration::from_secs_f64(args.spread * i as f64 / streams as f64);
            tokio::spawn(chat_loop(socket, shared.clone(), delay_us, first))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let before = pid.and_then(|p| measure::sample(p).ok());
    let window_start = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    let window = Duration::from_secs_f64(args.seconds);
    let reconnects = reconnect_during(args, &base, &sessions, &tag, window);
    let (reconnect_samples, _) = tokio::join!(reconnects, tokio::time::sleep(window));
    let elapsed = window_start.elapsed();
    shared.measuring.store(false, Ordering::Relaxed);
    let after = pid.and_then(|p| measure::sample(p).ok());
    // Let the answers under way end, so each is checked whole.
    shared.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let (samples, mid_stream) = reconnect_samples;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(ChatRun {
        streams,
        connect_per_s,
        answers: load(&shared.answers),
        chunks_per_s: load(&shared.chunks) as f64 / elapsed.as_secs_f64(),
        time_to_first_chunk: shared.ttfc.summary(),
        jitter: shared.jitter.summary(),
        publish_to_receive: shared.latency.summary(),
        reconnect: Summary::of_durations(&samples),
        reconnects_mid_stream: mid_stream,
        lost: load(&shared.lost),
        duplicated: load(&shared.duplicated),
        out_of_order: load(&shared.out_of_order),
        corrupt: load(&shared.corrupt),
        refused: shared.refused.lock().map(|m| m.clone()).unwrap_or_default(),
        not_completed: load(&shared.not_completed),
        closed: load(&shared.closed),
        gateway_cpu_cores: before
            .zip(after)
            .map(|(b, a)| (a.cpu_us - b.cpu_us) as f64 / elapsed.as_micros() as f64),
    })
}

/// Opens `--reconnects` fresh sockets to the streaming sessions, spread over the window.
async fn reconnect_during(
    args: &ChatArgs,
    base: &str,
    sessions: &[String],
    tag: &str,
    window: Duration,
) -> (Vec<Duration>, u64) {
    if args.reconnects == 0 {
        return (Vec::new(), 0);
    }
    let per_worker = args.reconnects.div_ceil(args.reconnect_concurrency.max(1));
    let pause = window / (per_worker as u32 + 1);
    let workers = (0..args.reconnect_concurrency.max(1)).map(|w| async move {
        let mut samples = Vec::new();
        let mut mid = 0;
        for k in 0..per_worker {
            tokio::time::sleep(pause).await;
            let session = &sessions[(w * 7919 + k * 104_729) % sessions.len()];
            let url = format!("{base}/ws/chat?session_id={session}&user_id=bench-{tag}-r{w}");
            let start = Instant::now();
            if let Ok((mut socket, history)) = ws::connect_until_frame(&url, "history").await {
                samples.push(start.elapsed());
                let v: serde_json::Value = serde_json::from_str(&history).unwrap_or_default();
                mid += u64::from(!v["streaming"].is_null());
                let _ = socket.close(None).await;
            }
        }
        (samples, mid)
    });
    let results = futures_util::future::join_all(workers).await;
    results
        .into_iter()
        .fold((Vec::new(), 0), |(mut all, m), (s, k)| {
            all.extend(s);
            (all, m + k)
        })
}

/// The chat every socket sends.
const CHAT: &str = r#"{"type":"chat","message":"tell me about streaming"}"#;

/// What the tool reads of a frame: its type, an error's code and a message's fields, borrowed
/// from the frame's text where it has no escapes. A typed view: every chunk frame is read, and
/// a `serde_json::Value` would build a map of all its fields.
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<FrameData<'a>>,
}

/// The fields of a `message` frame's `data` the tool checks.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FrameData<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message_id: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    chunk: Option<Cow<'a, str>>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    is_complete: bool,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
}

/// One answer being received.
#[derive(Default)]
struct Answer {
    sequence: Sequence,
    joined: String,
    last_us: Option<u64>,
}

/// Chats on one socket until told to stop, one answer at a time, the first after `first`.
async fn chat_loop(mut socket: Socket, shared: Arc<Shared>, delay_us: u64, first: Duration) {
    tokio::time::sleep(first).await;
    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    let flush = |samples: &mut [Vec<u64>; 3]| {
        shared.ttfc.add(&mut samples[0]);
        shared.jitter.add(&mut samples[1]);
        shared.latency.add(&mut samples[2]);
    };
    'chats: while !shared.stop.load(Ordering::Relaxed) {
        let sent_us = now_us();
        // Time to first chunk counts for chats sent inside the window.
        let sent_measuring = shared.measuring.load(Ordering::Relaxed);
        if socket.send(Message::text(CHAT)).await.is_err() {
            shared.closed.fetch_add(1, Ordering::Relaxed);
            break;
        }
        let mut answers: HashMap<String, Answer> = HashMap::new();
        let mut first = true;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), socket.next()).await;
            let text = match frame {
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => {
                    shared.closed.fetch_add(1, Ordering::Relaxed);
                    break 'chats;
                }
                Ok(Some(Ok(_))) => continue,
            };
            let now = now_us();
            let measuring = shared.measuring.load(Ordering::Relaxed);
            // Frames of other shapes (`history`, say) are of no interest here.
            let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else {
                continue;
            };
            let data = match (&*frame.kind, frame.data) {
                ("error", _) => {
                    let code = frame.code.as_deref().unwrap_or("?").to_owned();
                    if let Ok(mut m) = shared.refused.lock() {
                        *m.entry(code).or_default() += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'chats;
                }
                ("message", Some(data)) if data.role.as_deref() == Some("assistant") => data,
                _ => continue,
            };
            let id = data.message_id.as_deref().unwrap_or_default();
            if let Some(index) = data.index {
                if !answers.contains_key(id) {
                    answers.insert(id.to_owned(), Answer::default());
                }
                let answer = answers.get_mut(id).expect("just inserted");
                if first {
                    first = false;
                    if sent_measuring {
                        samples[0].push(now.saturating_sub(sent_us));
                    }
                }
                if answer.sequence.see(index) {
                    answer
                        .joined
                        .push_str(data.chunk.as_deref().unwrap_or_default());
                }
                if measuring {
                    shared.chunks.fetch_add(1, Ordering::Relaxed);
                    if let Some(last) = answer.last_us {
                        samples[1].push(now.saturating_sub(last).abs_diff(delay_us).max(1));
                    }
                    let published_ms = data.timestamp.unwrap_or(0);
                    samples[2].push(now.saturating_sub(published_ms * 1000));
                }
                answer.last_us = Some(now);
                if samples.iter().any(|s| s.len() >= BATCH) {
                    flush(&mut samples);
                }
            } else if data.is_complete {
                let answer = answers.remove(id).unwrap_or_default();
                let content = data.content.as_deref().unwrap_or_default();
                shared.answers.fetch_add(1, Ordering::Relaxed);
                // Chunks skipped over; one missing at the end shows as a content mismatch.
                shared
                    .lost
                    .fetch_add(answer.sequence.lost(0), Ordering::Relaxed);
                shared
                    .duplicated
                    .fetch_add(answer.sequence.duplicated, Ordering::Relaxed);
                shared
                    .out_of_order
                    .fetch_add(answer.sequence.out_of_order, Ordering::Relaxed);
                if data.status.as_deref() != Some("completed") {
                    shared.not_completed.fetch_add(1, Ordering::Relaxed);
                } else if content != answer.joined {
                    shared.corrupt.fetch_add(1, Ordering::Relaxed);
                }
                continue 'chats;
            }
        }
    }
    flush(&mut samples);
    let _ = socket.close(None).await;
}

#[cfg(test)]
mod tests {
    use protocol::{ChatMessage, MessageId, MessageStatus, ServerFrame, SessionId, UserId};

    use super::{CHAT, Frame};

    /// The tool's view reads the frames the servers really send, from the protocol's own types
    /// (a renamed field would otherwise make every frame look like one of no interest).
    #[test]
    fn the_typed_view_reads_real_frames() {
        assert!(protocol::ClientFrame::parse(CHAT).is_ok());
        let answer = ChatMessage::started_answer(
            MessageId::random(),
            SessionId::parse("s1").unwrap(),
            UserId::parse("u1").unwrap(),
            1,
        );
        let chunk = ServerFrame::Message {
            data: answer.chunk_of(7, "say \"hi\"\n"),
        }
        .to_json();
        let frame: Frame<'_> = serde_json::from_str(&chunk).unwrap();
        assert_eq!(frame.kind, "message");
        let data = frame.data.unwrap();
        assert_eq!(data.role.as_deref(), Some("assistant"));
        assert_eq!(data.message_id.as_deref(), Some(answer.message_id.as_str()));
        assert_eq!(data.index, Some(7));
        assert_eq!(data.chunk.as_deref(), Some("say \"hi\"\n"));
        assert!(!data.is_complete);

        let last = ServerFrame::Message {
            data: answer.finished("all of it".into(), MessageStatus::Completed),
        }
        .to_json();
        let data = serde_json::from_str::<Frame<'_>>(&last)
            .unwrap()
            .data
            .unwrap();
        assert!(data.is_complete);
        assert_eq!(data.index, None);
        assert_eq!(data.content.as_deref(), Some("all of it"));
        assert_eq!(data.status.as_deref(), Some("completed"));

        let refused = ServerFrame::error(protocol::ErrorCode::RateLimited, "slow down").to_json();
        let frame: Frame<'_> = serde_json::from_str(&refused).unwrap();
        assert_eq!(
            (&*frame.kind, frame.code.as_deref()),
            ("error", Some("RATE_LIMITED"))
        );
    }
}
