//! `loadgen fanout`: N sessions, one socket each, chunks published straight to Redis at a set
//! rate, measured against up to three receivers in one run:
//!
//! - `redis`: the floor of Redis alone, one pub/sub connection subscribed to every session (no
//!   WebSocket at all);
//! - `minimal`: the minimal fan-out server (`minimal.rs`), started by this tool as a child;
//! - `gateway`: running `ws-gateway`s (or NGINX in front of gateways), real protocol; with
//!   several `--gateway`s the sockets are dealt round-robin and their CPU and memory summed.
//!
//! On a Redis Cluster (`--cluster-ports`), frames are SPUBLISHed to the master of each
//! session's slot (or, with `--broadcast`, PUBLISHed there and broadcast by the cluster to
//! every node), and the `redis` floor subscribes through a cluster connection (SSUBSCRIBE per
//! channel, or SUBSCRIBE with `--broadcast`); Redis's CPU is every node's, summed, with the
//! busiest node's beside it.
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
use crate::publisher::{self, Published, Route, read_chunk};
use crate::ws::{self, Socket};

/// The `fanout` command's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Redis the receivers subscribe to and the publisher publishes to.
    #[arg(long, required_unless_present = "cluster_ports")]
    pub redis: Option<String>,
    /// A Redis Cluster instead: the `127.0.0.1` ports of all its nodes.
    #[arg(long, value_delimiter = ',')]
    pub cluster_ports: Vec<u16>,
    /// On a cluster, classic PUBLISH (broadcast to every node) instead of SPUBLISH.
    #[arg(long)]
    pub broadcast: bool,
    /// The gateways (or NGINX) to measure, `http://127.0.0.1:PORT`, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub gateway: Vec<String>,
    /// The gateways' process ids (default: the processes listening on their ports).
    #[arg(long, value_delimiter = ',')]
    pub gateway_pid: Vec<i32>,
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
    /// Receiver CPU use during the window, in cores (all its processes).
    pub cpu_cores: Option<f64>,
    /// Receiver processes (gateways) measured.
    #[serde(default = "one")]
    pub receivers: usize,
    /// Redis CPU time (every node's) per chunk delivered.
    pub redis_cpu_us_per_chunk: Option<f64>,
    /// Redis processes measured (1, or every node of a cluster).
    #[serde(default = "one")]
    pub redis_nodes: usize,
    /// The busiest Redis process's CPU use during the window, in cores.
    #[serde(default)]
    pub redis_busiest_cores: Option<f64>,
    pub loadgen_cpu_cores: f64,
}

fn one() -> usize {
    1
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

/// The Redis side of a run: where frames are published and whose CPU counts as Redis's.
struct RedisSide {
    route: Route,
    /// Every Redis process (one, or each node of a cluster).
    pids: Vec<i32>,
    /// The cluster's seed URLs, when on a cluster.
    cluster: Option<Vec<String>>,
}

impl RedisSide {
    async fn find(args: &FanoutArgs) -> anyhow::Result<RedisSide> {
        if args.cluster_ports.is_empty() {
            let url = args
                .redis
                .as_deref()
                .context("--redis or --cluster-ports")?;
            let port = measure::port_of(url)?;
            return Ok(RedisSide {
                route: Route::single(port),
                pids: vec![measure::pid_listening_on(port)?],
                cluster: None,
            });
        }
        let seeds: Vec<String> = args
            .cluster_ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        let mut conn = redis::Client::open(seeds[0].as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let reply: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await?;
        let map = cluster_map::SlotMap::parse(reply)?;
        let masters = map.by_master();
        let mut slot_owner = vec![0; usize::from(keys::CLUSTER_SLOTS)];
        let mut ports = Vec::new();
        for (i, (addr, slots)) in masters.iter().enumerate() {
            ports.push(measure::port_of(addr)?);
            for &slot in slots {
                slot_owner[usize::from(slot)] = i;
            }
        }
        let pids = args
            .cluster_ports
            .iter()
            .map(|&p| measure::pid_listening_on(p))
            .collect::<anyhow::Result<_>>()?;
        Ok(RedisSide {
            route: Route {
                ports,
                command: if args.broadcast {
                    "PUBLISH"
                } else {
                    "SPUBLISH"
                },
                slot_owner,
            },
            pids,
            cluster: Some(seeds),
        })
    }
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<FanoutReport> {
    let redis = RedisSide::find(&args).await?;
    let mut targets = Vec::new();
    for target in &args.targets {
        let report = match target.as_str() {
            "redis" => measure_redis(&args, &redis).await?,
            "minimal" => {
                anyhow::ensure!(
                    redis.cluster.is_none(),
                    "the minimal fan-out runs on a single Redis only"
                );
                let url = args.redis.as_deref().context("--redis")?;
                let mut child = MinimalServer::start(url).await?;
                let url = format!("http://127.0.0.1:{}", child.port);
                let report =
                    measure_sockets(&args, &redis, "minimal", &[url], vec![child.pid], "welcome")
                        .await;
                child.stop().await;
                report?
            }
            "gateway" => {
                anyhow::ensure!(
                    !args.gateway.is_empty(),
                    "--gateway is needed to measure the gateway"
                );
                let pids = if args.gateway_pid.is_empty() {
                    args.gateway
                        .iter()
                        .map(|url| measure::pid_listening_on(measure::port_of(url)?))
                        .collect::<anyhow::Result<Vec<_>>>()?
                } else {
                    args.gateway_pid.clone()
                };
                measure_sockets(&args, &redis, "gateway", &args.gateway, pids, "history").await?
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
    redis: &RedisSide,
    sessions: &[SessionId],
    shared: &Shared,
    pids: &Pids,
) -> anyhow::Result<(Published, Usage)> {
    let message = message_id();
    let warm = Duration::from_secs_f64(args.warmup);
    let window = Duration::from_secs_f64(args.seconds);
    let publishing = publisher::run(
        &redis.route,
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

/// The processes a run measures: the receivers (none for the `redis` floor) and Redis's.
struct Pids {
    receivers: Vec<i32>,
    redis: Vec<i32>,
}

/// CPU used by the receivers, each Redis process and this tool over the window.
#[derive(Debug, Clone)]
struct Usage {
    receivers: Vec<ProcSample>,
    redis: Vec<ProcSample>,
    me: ProcSample,
    wall_us: u64,
}

impl Usage {
    fn read(pids: &Pids) -> anyhow::Result<Usage> {
        let sample = |pids: &[i32]| -> anyhow::Result<Vec<ProcSample>> {
            pids.iter().map(|&p| measure::sample(p)).collect()
        };
        Ok(Usage {
            receivers: sample(&pids.receivers)?,
            redis: sample(&pids.redis)?,
            me: measure::sample(std::process::id() as i32)?,
            wall_us: now_us(),
        })
    }

    fn minus(&self, before: &Usage) -> Usage {
        let d = |a: &ProcSample, b: &ProcSample| ProcSample {
            cpu_us: a.cpu_us.saturating_sub(b.cpu_us),
            rss_bytes: a.rss_bytes,
        };
        let each = |now: &[ProcSample], then: &[ProcSample]| {
            now.iter().zip(then).map(|(a, b)| d(a, b)).collect()
        };
        Usage {
            receivers: each(&self.receivers, &before.receivers),
            redis: each(&self.redis, &before.redis),
            me: d(&self.me, &before.me),
            wall_us: self.wall_us - before.wall_us,
        }
    }

    /// The receivers' CPU, summed; `None` when there is no receiver process.
    fn receiver_cpu_us(&self) -> Option<u64> {
        (!self.receivers.is_empty()).then(|| self.receivers.iter().map(|s| s.cpu_us).sum())
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
    fn nothing(pids: &Pids) -> anyhow::Result<Streamed> {
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
    let redis_cpu: u64 = usage.redis.iter().map(|s| s.cpu_us).sum();
    let busiest = usage.redis.iter().map(|s| s.cpu_us).max();
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
        cpu_us_per_chunk: usage.receiver_cpu_us().and_then(per_chunk),
        cpu_cores: usage.receiver_cpu_us().map(cores),
        receivers: usage.receivers.len(),
        redis_cpu_us_per_chunk: per_chunk(redis_cpu),
        redis_nodes: usage.redis.len(),
        redis_busiest_cores: busiest.map(cores),
        loadgen_cpu_cores: cores(usage.me.cpu_us),
    }
}

/// Frames a floor subscriber received: channel and payload.
type Received = tokio::sync::mpsc::UnboundedReceiver<(String, bytes::Bytes)>;

/// The floor of Redis alone: one pub/sub connection subscribed to every session (on a cluster,
/// a cluster connection: SSUBSCRIBE on each channel's master, or SUBSCRIBE with
/// `--broadcast`).
async fn measure_redis(args: &FanoutArgs, redis: &RedisSide) -> anyhow::Result<TargetReport> {
    let sessions = session_ids("redis", args.sessions);
    let channels: Vec<String> = sessions.iter().map(keys::stream_channel).collect();
    let started = Instant::now();
    let (frames, keep) = subscribe_floor(args, redis, &channels).await?;
    let connect_per_s = sessions.len() as f64 / started.elapsed().as_secs_f64();
    let connected = Connected {
        target: "redis",
        sessions: sessions.len(),
        connect_per_s,
        idle: None,
    };
    let pids = Pids {
        receivers: Vec::new(),
        redis: redis.pids.clone(),
    };
    if args.idle_only {
        let nothing = Streamed::nothing(&pids)?;
        return Ok(report(args, &connected, &Shared::default(), nothing));
    }
    let shared = Arc::new(Shared::default());
    let receiver = tokio::spawn({
        let shared = shared.clone();
        let mut frames = frames;
        async move {
            let mut sequences: HashMap<String, Sequence> = HashMap::new();
            let mut samples = Vec::with_capacity(BATCH);
            loop {
                tokio::select! {
                    () = shared.stop.notified() => break,
                    frame = frames.recv() => {
                        let Some((channel, payload)) = frame else { break };
                        if let Some((index, sent)) = read_chunk(&payload) {
                            let seq = sequences.entry(channel).or_default();
                            shared.chunk(seq, index, sent, &mut samples);
                        }
                    }
                }
            }
            shared.latencies.add(&mut samples);
            sequences
        }
    });
    let (published, usage) = publish_and_measure(args, redis, &sessions, &shared, &pids).await?;
    shared.stop.notify_one();
    let mut sequences = receiver.await?;
    let mut tally = Tally::default();
    for (i, channel) in channels.iter().enumerate() {
        let seq = sequences.remove(channel).unwrap_or_default();
        tally.add(&seq, published.per_session(i, sessions.len()));
    }
    keep.abort();
    let streamed = Streamed {
        tally,
        published,
        usage,
    };
    Ok(report(args, &connected, &shared, streamed))
}

/// Subscribes the floor to `channels`; what it receives comes out of the returned channel
/// until the returned task is aborted.
async fn subscribe_floor(
    args: &FanoutArgs,
    redis: &RedisSide,
    channels: &[String],
) -> anyhow::Result<(Received, tokio::task::JoinHandle<()>)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let Some(seeds) = &redis.cluster else {
        let client = redis::Client::open(args.redis.as_deref().context("--redis")?)?;
        let (mut sink, mut stream) = client.get_async_pubsub().await?.split();
        for batch in channels.chunks(512) {
            sink.subscribe(batch).await?;
        }
        let task = tokio::spawn(async move {
            let _sink = sink;
            while let Some(msg) = stream.next().await {
                let payload = bytes::Bytes::copy_from_slice(msg.get_payload_bytes());
                if tx
                    .send((msg.get_channel_name().to_owned(), payload))
                    .is_err()
                {
                    return;
                }
            }
        });
        return Ok((rx, task));
    };
    let (pushes, mut pushed) = tokio::sync::mpsc::unbounded_channel::<redis::PushInfo>();
    let mut conn = redis::cluster::ClusterClientBuilder::new(seeds.clone())
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()?
        .get_async_connection()
        .await?;
    if args.broadcast {
        for batch in channels.chunks(512) {
            conn.subscribe(batch).await?;
        }
    } else {
        futures_util::stream::iter(channels)
            .map(|channel| {
                let mut conn = conn.clone();
                async move { conn.ssubscribe(channel).await }
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<redis::RedisResult<Vec<()>>>()?;
    }
    let task = tokio::spawn(async move {
        let _conn = conn;
        while let Some(push) = pushed.recv().await {
            if !matches!(
                push.kind,
                redis::PushKind::Message | redis::PushKind::SMessage
            ) {
                continue;
            }
            let mut data = push.data.into_iter();
            let (Some(redis::Value::BulkString(channel)), Some(redis::Value::BulkString(payload))) =
                (data.next(), data.next())
            else {
                continue;
            };
            let channel = String::from_utf8_lossy(&channel).into_owned();
            if tx.send((channel, bytes::Bytes::from(payload))).is_err() {
                return;
            }
        }
    });
    Ok((rx, task))
}

/// A receiver serving WebSockets: the minimal fan-out or gateways (socket `i` on `urls[i % n]`).
async fn measure_sockets(
    args: &FanoutArgs,
    redis: &RedisSide,
    target: &str,
    urls: &[String],
    receivers: Vec<i32>,
    ready_on: &'static str,
) -> anyhow::Result<TargetReport> {
    let pids = Pids {
        receivers,
        redis: redis.pids.clone(),
    };
    let sessions = session_ids(target, args.sessions);
    let bases: Vec<String> = urls.iter().map(|u| ws::ws_url(u)).collect();
    let rss = |pids: &Pids| -> anyhow::Result<u64> {
        pids.receivers
            .iter()
            .map(|&p| measure::sample(p).map(|s| s.rss_bytes))
            .sum()
    };
    let before = rss(&pids)?;
    let started = Instant::now();
    let sockets: Vec<Socket> = futures_util::stream::iter(sessions.iter().enumerate())
        .map(|(i, session)| {
            let base = &bases[i % bases.len()];
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
    let idle = rss(&pids)?;
    let idle_per_socket = (idle as f64 - before as f64) / sockets.len().max(1) as f64;
    let shared = Arc::new(Shared::default());
    let connected = Connected {
        target,
        sessions: sockets.len(),
        connect_per_s,
        idle: Some(idle_per_socket),
    };
    if args.idle_only {
        let nothing = Streamed::nothing(&pids)?;
        let report = report(args, &connected, &shared, nothing);
        close_all(sockets).await;
        return Ok(report);
    }
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(read_socket(socket, shared.clone())))
        .collect();
    let (published, usage) = publish_and_measure(args, redis, &sessions, &shared, &pids).await?;
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
