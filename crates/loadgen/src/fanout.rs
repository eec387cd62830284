//! `loadgen fanout`: N sessions, one socket each, chunks published straight to Redis at a set
//! rate, measured against up to three receivers in one run:
//!
//! - `redis`: the floor of Redis alone, one pub/sub connection subscribed to every session (no
//!   WebSocket at all);
//! - `minimal`: the minimal fan-out server (`minimal.rs`), started by this tool as a child;
//! - `gateway`: a running `ws-gateway` (or NGINX in front of gateways), real protocol.
//!
//! Per receiver: connect rate, idle memory per socket, publish→receive latency, delivered/s,
//! lost/duplicated/out-of-order chunks, CPU per delivered chunk (the receiver's process, and
//! Redis's), read from `/proc`.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use protocol::{MessageId, SessionId, keys};
use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio::sync::Notify;

use crate::measure::{self, BATCH, Latencies, ProcSample, Sequence, Summary, Tally, now_us};
use crate::publisher::{self, Published, read_chunk};
use crate::ws::{self, Socket};

/// The `fanout` command's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Redis the receivers subscribe to and the publisher publishes to.
    #[arg(long)]
    pub redis: String,
    /// The gateway (or NGINX) to measure, `http://127.0.0.1:PORT`.
    #[arg(long)]
    pub gateway: Option<String>,
    /// The gateway's process id (default: the process listening on the gateway URL's port).
    #[arg(long)]
    pub gateway_pid: Option<i32>,
    /// Sessions, one socket each.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Chunks per session per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of publishing before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Bytes per chunk frame.
    #[arg(long, default_value_t = 200)]
    pub frame_bytes: usize,
    /// Receivers to measure, in this order: `redis`, `minimal`, `gateway`.
    #[arg(long, value_delimiter = ',', default_value = "redis,minimal,gateway")]
    pub targets: Vec<String>,
    /// Sockets being connected at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Connect the sockets, measure their memory, and stop (no publishing).
    #[arg(long)]
    pub idle_only: bool,
}

/// One receiver's figures.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TargetReport {
    pub target: String,
    pub sessions: usize,
    /// Sockets (or subscriptions) ready per second while connecting them all.
    pub connect_per_s: f64,
    /// Resident memory the receiver grew by per idle socket.
    pub idle_bytes_per_socket: Option<f64>,
    pub offered_per_s: f64,
    /// Chunks received per second during the measured window.
    pub delivered_per_s: f64,
    pub latency: Summary,
    pub tally: Tally,
    /// Sockets the receiver closed during the run.
    pub closed: u64,
    pub published: Published,
    /// Receiver CPU time per chunk delivered in the window.
    pub cpu_us_per_chunk: Option<f64>,
    /// Receiver CPU use during the window, in cores.
    pub cpu_cores: Option<f64>,
    pub redis_cpu_us_per_chunk: Option<f64>,
    pub loadgen_cpu_cores: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FanoutReport {
    pub mode: String,
    pub sessions: usize,
    pub rate: f64,
    pub seconds: f64,
    pub frame_bytes: usize,
    pub targets: Vec<TargetReport>,
}

/// The measured window, in µs since the epoch: chunks published in it give latencies, chunks
/// received in it count as delivered.
#[derive(Default)]
struct Window {
    start: AtomicU64,
    end: AtomicU64,
}

impl Window {
    fn contains(&self, t: u64) -> bool {
        let start = self.start.load(Ordering::Relaxed);
        start != 0 && t >= start && t < self.end.load(Ordering::Relaxed)
    }
}

/// What every receiver of a run shares.
#[derive(Default)]
struct Shared {
    window: Window,
    latencies: Latencies,
    /// Chunks received so far (all of them), for the drain.
    received: AtomicU64,
    /// Chunks received inside the window.
    in_window: AtomicU64,
    closed: AtomicU64,
    stop: Notify,
}

impl Shared {
    /// Records one chunk; `samples` is the caller's batch of latencies.
    fn chunk(&self, seq: &mut Sequence, index: u32, sent_us: u64, samples: &mut Vec<u64>) {
        let now = now_us();
        self.received.fetch_add(1, Ordering::Relaxed);
        if self.window.contains(now) {
            self.in_window.fetch_add(1, Ordering::Relaxed);
        }
        if seq.see(index) && self.window.contains(sent_us) {
            samples.push(now.saturating_sub(sent_us));
            if samples.len() >= BATCH {
                self.latencies.add(samples);
            }
        }
    }
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<FanoutReport> {
    let redis_port = measure::port_of(&args.redis)?;
    let mut targets = Vec::new();
    for target in &args.targets {
        let report = match target.as_str() {
            "redis" => measure_redis(&args, redis_port).await?,
            "minimal" => {
                let mut child = MinimalServer::start(&args.redis).await?;
                let url = format!("http://127.0.0.1:{}", child.port);
                let report =
                    measure_sockets(&args, redis_port, "minimal", &url, child.pid, "welcome").await;
                child.stop().await;
                report?
            }
            "gateway" => {
                let url = args
                    .gateway
                    .clone()
                    .context("--gateway is needed to measure the gateway")?;
                let pid = match args.gateway_pid {
                    Some(pid) => pid,
                    None => measure::pid_listening_on(measure::port_of(&url)?)?,
                };
                measure_sockets(&args, redis_port, "gateway", &url, pid, "history").await?
            }
            other => bail!("unknown target {other} (redis, minimal, gateway)"),
        };
        eprintln!("{}", summary_line(&report));
        targets.push(report);
    }
    Ok(FanoutReport {
        mode: "fanout".into(),
        sessions: args.sessions,
        rate: args.rate,
        seconds: args.seconds,
        frame_bytes: args.frame_bytes,
        targets,
    })
}

fn summary_line(r: &TargetReport) -> String {
    format!(
        "{}: connect {:.0}/s, idle {} B/socket, delivered {:.0}/s of {:.0}/s, p99 {:.2} ms, lost {}, cpu {} µs/chunk",
        r.target,
        r.connect_per_s,
        r.idle_bytes_per_socket
            .map_or("-".into(), |b| format!("{b:.0}")),
        r.delivered_per_s,
        r.offered_per_s,
        r.latency.p99_ms,
        r.tally.lost,
        r.cpu_us_per_chunk.map_or("-".into(), |c| format!("{c:.1}")),
    )
}

/// Session ids unique to this run and receiver.
fn session_ids(target: &str, n: usize) -> Vec<SessionId> {
    let run = format!("{:x}", now_us() % 0xffff_ffff);
    (0..n)
        .map(|i| SessionId::parse(format!("b{run}-{target}-{i}")).expect("a valid id"))
        .collect()
}

fn message_id() -> MessageId {
    MessageId::parse(format!("bench-{:x}", now_us())).expect("a valid id")
}

/// Publishes for warm-up + window, then waits for the receivers to drain; fills the window.
async fn publish_and_measure(
    args: &FanoutArgs,
    redis_port: u16,
    sessions: &[SessionId],
    shared: &Shared,
    pids: (Option<i32>, i32),
) -> anyhow::Result<(Published, Usage)> {
    let message = message_id();
    let warm = Duration::from_secs_f64(args.warmup);
    let window = Duration::from_secs_f64(args.seconds);
    let publishing = publisher::run(
        redis_port,
        sessions,
        &message,
        args.rate,
        warm + window,
        args.frame_bytes,
    );
    let measuring = async {
        tokio::time::sleep(warm).await;
        let before = Usage::read(pids)?;
        let start = now_us();
        shared
            .window
            .end
            .store(start + window.as_micros() as u64, Ordering::Relaxed);
        shared.window.start.store(start, Ordering::Relaxed);
        tokio::time::sleep(window).await;
        let after = Usage::read(pids)?;
        anyhow::Ok(after.minus(&before))
    };
    let (published, usage) = tokio::join!(publishing, measuring);
    let published = published?;
    // Let what is on its way arrive (bounded: a receiver that fell behind is reported so).
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.received.load(Ordering::Relaxed) < published.frames && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((published, usage?))
}

/// CPU used by the receiver, Redis and this tool over the window.
#[derive(Debug, Clone, Copy)]
struct Usage {
    receiver: Option<ProcSample>,
    redis: ProcSample,
    me: ProcSample,
    wall_us: u64,
}

impl Usage {
    fn read((receiver, redis): (Option<i32>, i32)) -> anyhow::Result<Usage> {
        Ok(Usage {
            receiver: receiver.map(measure::sample).transpose()?,
            redis: measure::sample(redis)?,
            me: measure::sample(std::process::id() as i32)?,
            wall_us: now_us(),
        })
    }

    fn minus(&self, before: &Usage) -> Usage {
        let d = |a: ProcSample, b: ProcSample| ProcSample {
            cpu_us: a.cpu_us.saturating_sub(b.cpu_us),
            rss_bytes: a.rss_bytes,
        };
        Usage {
            receiver: self.receiver.zip(before.receiver).map(|(a, b)| d(a, b)),
            redis: d(self.redis, before.redis),
            me: d(self.me, before.me),
            wall_us: self.wall_us - before.wall_us,
        }
    }
}

/// A receiver with its sockets (or subscriptions) ready.
struct Connected<'a> {
    target: &'a str,
    sessions: usize,
    connect_per_s: f64,
    idle: Option<f64>,
}

/// What publishing to a receiver gave.
struct Streamed {
    tally: Tally,
    published: Published,
    usage: Usage,
}

impl Streamed {
    /// Nothing published (`--idle-only`).
    fn nothing(pids: (Option<i32>, i32)) -> anyhow::Result<Streamed> {
        let usage = Usage::read(pids)?;
        Ok(Streamed {
            tally: Tally::default(),
            published: Published::default(),
            usage: usage.minus(&usage),
        })
    }
}

/// Fills the report's figures common to every receiver.
fn report(args: &FanoutArgs, c: &Connected<'_>, shared: &Shared, s: Streamed) -> TargetReport {
    let Streamed {
        tally,
        published,
        usage,
    } = s;
    let (sessions, connect_per_s, idle) = (c.sessions, c.connect_per_s, c.idle);
    let target = c.target;
    let delivered = shared.in_window.load(Ordering::Relaxed);
    let per_chunk = |cpu: u64| (delivered > 0).then(|| cpu as f64 / delivered as f64);
    let cores = |cpu: u64| cpu as f64 / usage.wall_us.max(1) as f64;
    TargetReport {
        target: target.into(),
        sessions,
        connect_per_s,
        idle_bytes_per_socket: idle,
        offered_per_s: args.rate * sessions as f64,
        delivered_per_s: delivered as f64 / args.seconds,
        latency: shared.latencies.summary(),
        tally,
        closed: shared.closed.load(Ordering::Relaxed),
        published,
        cpu_us_per_chunk: usage.receiver.and_then(|r| per_chunk(r.cpu_us)),
        cpu_cores: usage.receiver.map(|r| cores(r.cpu_us)),
        redis_cpu_us_per_chunk: per_chunk(usage.redis.cpu_us),
        loadgen_cpu_cores: cores(usage.me.cpu_us),
    }
}

/// The floor of Redis alone: one pub/sub connection subscribed to every session.
async fn measure_redis(args: &FanoutArgs, redis_port: u16) -> anyhow::Result<TargetReport> {
    let redis_pid = measure::pid_listening_on(redis_port)?;
    let sessions = session_ids("redis", args.sessions);
    let client = redis::Client::open(args.redis.as_str())?;
    let (mut sink, mut stream) = client.get_async_pubsub().await?.split();
    let started = Instant::now();
    let channels: Vec<String> = sessions.iter().map(keys::stream_channel).collect();
    for batch in channels.chunks(512) {
        sink.subscribe(batch).await?;
    }
    let connect_per_s = sessions.len() as f64 / started.elapsed().as_secs_f64();
    let connected = Connected {
        target: "redis",
        sessions: sessions.len(),
        connect_per_s,
        idle: None,
    };
    if args.idle_only {
        let nothing = Streamed::nothing((None, redis_pid))?;
        return Ok(report(args, &connected, &Shared::default(), nothing));
    }
    let shared = Arc::new(Shared::default());
    let receiver = tokio::spawn({
        let shared = shared.clone();
        async move {
            let mut sequences: HashMap<String, Sequence> = HashMap::new();
            let mut samples = Vec::with_capacity(BATCH);
            loop {
                tokio::select! {
                    () = shared.stop.notified() => break,
                    msg = stream.next() => {
                        let Some(msg) = msg else { break };
                        if let Some((index, sent)) = read_chunk(msg.get_payload_bytes()) {
                            let seq = sequences.entry(msg.get_channel_name().to_owned()).or_default();
                            shared.chunk(seq, index, sent, &mut samples);
                        }
                    }
                }
            }
            shared.latencies.add(&mut samples);
            sequences
        }
    });
    let (published, usage) =
        publish_and_measure(args, redis_port, &sessions, &shared, (None, redis_pid)).await?;
    shared.stop.notify_one();
    let mut sequences = receiver.await?;
    let mut tally = Tally::default();
    for (i, channel) in channels.iter().enumerate() {
        let seq = sequences.remove(channel).unwrap_or_default();
        tally.add(&seq, published.per_session(i, sessions.len()));
    }
    drop(sink);
    let streamed = Streamed {
        tally,
        published,
        usage,
    };
    Ok(report(args, &connected, &shared, streamed))
}

/// A receiver serving WebSockets: the minimal fan-out or a gateway.
async fn measure_sockets(
    args: &FanoutArgs,
    redis_port: u16,
    target: &str,
    url: &str,
    pid: i32,
    ready_on: &'static str,
) -> anyhow::Result<TargetReport> {
    let redis_pid = measure::pid_listening_on(redis_port)?;
    let sessions = session_ids(target, args.sessions);
    let base = ws::ws_url(url);
    let before = measure::sample(pid)?;
    let started = Instant::now();
    let sockets: Vec<Socket> = futures_util::stream::iter(sessions.iter().enumerate())
        .map(|(i, session)| {
            let url = format!("{base}/ws/chat?session_id={session}&user_id=bench-{i}");
            async move { ws::connect_until(&url, ready_on).await }
        })
        .buffered(args.connect_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let connect_per_s = sockets.len() as f64 / started.elapsed().as_secs_f64();
    // Let the receiver settle (tasks parked, buffers released) before reading its memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = measure::sample(pid)?;
    let idle_per_socket =
        (idle.rss_bytes as f64 - before.rss_bytes as f64) / sockets.len().max(1) as f64;
    let shared = Arc::new(Shared::default());
    let connected = Connected {
        target,
        sessions: sockets.len(),
        connect_per_s,
        idle: Some(idle_per_socket),
    };
    if args.idle_only {
        let nothing = Streamed::nothing((Some(pid), redis_pid))?;
        let report = report(args, &connected, &shared, nothing);
        close_all(sockets).await;
        return Ok(report);
    }
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(read_socket(socket, shared.clone())))
        .collect();
    let (published, usage) =
        publish_and_measure(args, redis_port, &sessions, &shared, (Some(pid), redis_pid)).await?;
    shared.stop.notify_waiters();
    let mut tally = Tally::default();
    for (i, reader) in readers.into_iter().enumerate() {
        let seq = reader.await?;
        tally.add(&seq, published.per_session(i, sessions.len()));
    }
    let streamed = Streamed {
        tally,
        published,
        usage,
    };
    Ok(report(args, &connected, &shared, streamed))
}

/// Reads one socket's chunks until the run stops, then closes it.
async fn read_socket(mut socket: Socket, shared: Arc<Shared>) -> Sequence {
    let mut seq = Sequence::default();
    let mut samples = Vec::with_capacity(BATCH);
    let stopped = shared.stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => break,
            frame = socket.next() => match frame {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    if let Some((index, sent)) = read_chunk(text.as_bytes()) {
                        shared.chunk(&mut seq, index, sent, &mut samples);
                    }
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | None | Some(Err(_)) => {
                    shared.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    shared.latencies.add(&mut samples);
    let _ = socket.close(None).await;
    seq
}

async fn close_all(sockets: Vec<Socket>) {
    futures_util::stream::iter(sockets)
        .for_each_concurrent(256, |mut s| async move {
            let _ = s.close(None).await;
        })
        .await;
}

/// The minimal fan-out server, run as a child process of this tool.
struct MinimalServer {
    child: tokio::process::Child,
    port: u16,
    pid: i32,
}

impl MinimalServer {
    async fn start(redis: &str) -> anyhow::Result<MinimalServer> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["minimal-server", "--redis", redis])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the minimal fan-out")?;
        let stdout = child.stdout.take().context("its stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the minimal fan-out did not start")??
            .context("the minimal fan-out exited")?;
        let port = line.trim().parse().context("its port")?;
        let pid = child.id().context("its pid")? as i32;
        Ok(MinimalServer { child, port, pid })
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}
