//! `chaos`: a randomized soak of the whole system, run by `scripts/chaos`.
//!
//! It starts the multi-node stack as real processes (redis-server with AOF, 3 AI nodes,
//! 3 gateways, NGINX in front, one SQLite file), runs clients that chat through NGINX, reload
//! their socket at random moments and cancel now and then, while a fault injector, one fault
//! at a time, kill -9s and restarts a gateway or an AI node, freezes an AI node (SIGSTOP, for
//! up to past its lease), kills every pub/sub connection, kill -9s and restarts Redis, or
//! reloads NGINX. Then it lets the system heal, and checks, for every session, what every
//! socket was sent (`e2e::sequence`), history over REST and the rows in SQL:
//!
//! - **lost**: an accepted answer missing from history, a message in history but not in SQL
//!   (or the other way round, or with another status or text), a final text on a socket that
//!   is not the stored one;
//! - **duplicated**: a message twice in history, a chunk or final message sent twice;
//! - **stuck**: a message still not complete once everything healed;
//! - **gaps**: a chunk sent after a skipped one.
//!
//! It prints a table and exits 1 when any of these is not zero.

#![allow(clippy::unwrap_used)] // a test tool: a panic is a failed run

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use e2e::sequence::{self, Kind};
use e2e::{Cluster, ClusterOptions, Json, Recording, WsClient};
use protocol::SessionId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Randomized chaos soak of the multi-node stack")]
struct Args {
    /// How long faults are injected, in minutes (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// The same in seconds; wins over --minutes.
    #[arg(long)]
    seconds: Option<u64>,
    /// Seed of every random choice (a random one when absent; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Clients chatting at once.
    #[arg(long, default_value_t = 8)]
    clients: usize,
}

/// The kinds of fault, in the table's order.
const FAULTS: [&str; 6] = [
    "kill-gateway",
    "kill-ai",
    "freeze-ai",
    "kill-pubsub",
    "restart-redis",
    "reload-nginx",
];

/// Answer lease of the stack's AI nodes (seconds).
const LEASE_SECS: u64 = 5;

/// What one client did and saw.
#[derive(Default)]
struct ClientLog {
    /// Every socket it opened: its session and every frame it received.
    sockets: Vec<(String, Vec<Json>)>,
    /// Answers accepted for it: (session, answer id).
    accepted: Vec<(String, String)>,
    /// Chats refused (503 while a node or Redis was away, 409 while an answer was running).
    refused: u32,
    reloads: u32,
    cancels: u32,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    let duration = args
        .seconds
        .map(Duration::from_secs)
        .unwrap_or_else(|| Duration::from_secs_f64(args.minutes * 60.0));
    println!(
        "chaos: seed {seed}, {:?} of faults, {} clients",
        duration, args.clients
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clean = runtime.block_on(run(seed, duration, args.clients));
    if clean {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

async fn run(seed: u64, duration: Duration, clients: usize) -> bool {
    let cluster = Cluster::start(ClusterOptions {
        ai_nodes: 3,
        gateways: 3,
        stream_delay_ms: 20,
        lease_secs: LEASE_SECS,
        env: vec![("AI_REQUEST_TIMEOUT_MS", "3000".into())],
        ..ClusterOptions::default()
    })
    .await;
    let base = cluster.nginx.url();
    let ws_base = format!("ws://127.0.0.1:{}", cluster.nginx.port);
    let database_url = cluster.database_url();
    let redis_url = cluster.redis.url();
    let cluster = Arc::new(Mutex::new(cluster));

    let stop_chatting = CancellationToken::new();
    let logs: Vec<Arc<Mutex<ClientLog>>> = (0..clients).map(|_| Arc::default()).collect();
    let client_tasks: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            let rng = StdRng::seed_from_u64(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9));
            tokio::spawn(client(
                i,
                base.clone(),
                ws_base.clone(),
                rng,
                stop_chatting.clone(),
                log.clone(),
            ))
        })
        .collect();

    let faults = inject_faults(
        cluster.clone(),
        redis_url.clone(),
        StdRng::seed_from_u64(seed),
        duration,
    )
    .await;
    println!("chaos: faults over; healing");
    stop_chatting.cancel();
    for task in client_tasks {
        task.await.unwrap();
    }
    let quiet = quiesce(&redis_url).await;

    let logs: Vec<ClientLog> = logs
        .into_iter()
        .map(|l| std::mem::take(&mut *l.lock().unwrap()))
        .collect();
    let report = verify(&base, &database_url, &logs, quiet).await;
    report.print(&faults, &logs);
    drop(cluster);
    report.clean()
}

/// One client: chats in its sessions, following each answer on a socket it reloads (closes
/// and reopens) at random moments, and sometimes cancels, until told to stop.
async fn client(
    id: usize,
    base: String,
    ws_base: String,
    mut rng: StdRng,
    stop: CancellationToken,
    log: Arc<Mutex<ClientLog>>,
) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut conversation = 0;
    'chats: while !stop.is_cancelled() {
        if rng.random_bool(0.3) {
            conversation += 1;
        }
        let session = format!("chaos-{id}-{conversation}");
        let url = format!("{ws_base}/ws/chat?session_id={session}&user_id=chaos-{id}");
        let Some(mut socket) = open(&url, &stop).await else {
            break;
        };
        let prompt = if rng.random_bool(0.5) {
            "hello"
        } else {
            "give me a technical deep dive"
        };
        let answer = match chat(&http, &base, &session, prompt).await {
            Ok(id) => id,
            Err(()) => {
                log.lock().unwrap().refused += 1;
                keep(&log, &session, socket.stop().await);
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..1000))).await;
                continue;
            }
        };
        log.lock()
            .unwrap()
            .accepted
            .push((session.clone(), answer.clone()));
        // Follow the answer to its end, through reloads, closes and a possible cancel.
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut cancelled = false;
        loop {
            if socket.has(|f| sequence::shows_ended(f, &answer)) || Instant::now() > deadline {
                break;
            }
            let closed = socket.closed().is_some();
            if closed || rng.random_bool(0.004) {
                keep(&log, &session, socket.stop().await);
                if !closed {
                    log.lock().unwrap().reloads += 1;
                }
                // A reopened socket's history shows the answer ended if it did meanwhile.
                match open(&url, &CancellationToken::new()).await {
                    Some(s) => socket = s,
                    None => continue 'chats,
                }
                continue;
            }
            if !cancelled && rng.random_bool(0.001) {
                cancelled = true;
                log.lock().unwrap().cancels += 1;
                let _ = http
                    .post(format!("{base}/api/cancel"))
                    .json(&json!({"session_id": session, "message_id": answer}))
                    .send()
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        keep(&log, &session, socket.stop().await);
    }
}

fn keep(log: &Mutex<ClientLog>, session: &str, frames: Vec<Json>) {
    log.lock()
        .unwrap()
        .sockets
        .push((session.to_owned(), frames));
}

/// Opens a recorded socket, retrying while the stack is in trouble (up to 60 s).
async fn open(url: &str, stop: &CancellationToken) -> Option<Recording> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !stop.is_cancelled() {
        let connect = tokio_tungstenite::connect_async(url);
        if let Ok(Ok((ws, _))) = tokio::time::timeout(Duration::from_secs(5), connect).await {
            return Some(WsClient::from_stream(ws).record());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// `POST /api/chat`: the answer's id, or `Err` when it was refused.
async fn chat(
    http: &reqwest::Client,
    base: &str,
    session: &str,
    prompt: &str,
) -> Result<String, ()> {
    let response = http
        .post(format!("{base}/api/chat"))
        .json(&json!({"session_id": session, "message": prompt}))
        .send()
        .await
        .map_err(|_| ())?;
    if response.status().as_u16() != 202 {
        return Err(());
    }
    let body: Json = response.json().await.map_err(|_| ())?;
    body["message_id"].as_str().map(str::to_owned).ok_or(())
}

/// Applies one random fault at a time, every 2–5 s, for `duration`; returns the count of
/// each kind. Everything is running again when it returns.
async fn inject_faults(
    cluster: Arc<Mutex<Cluster>>,
    redis_url: String,
    mut rng: StdRng,
    duration: Duration,
) -> BTreeMap<&'static str, u32> {
    let mut counts: BTreeMap<&'static str, u32> = FAULTS.iter().map(|f| (*f, 0)).collect();
    let started = Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2000..5000))).await;
        let kind = FAULTS[rng.random_range(0..FAULTS.len())];
        let node = rng.random_range(0..3);
        let pause = Duration::from_millis(rng.random_range(500..3000));
        println!(
            "chaos: {:>5.1}s {kind} {node}",
            started.elapsed().as_secs_f64()
        );
        match kind {
            "kill-gateway" => {
                blocking(&cluster, move |c| c.gateways[node].kill9()).await;
                tokio::time::sleep(pause).await;
                restart(&cluster, move |c| c.gateways[node].start_again()).await;
            }
            "kill-ai" => {
                blocking(&cluster, move |c| c.ai[node].kill9()).await;
                tokio::time::sleep(pause).await;
                restart(&cluster, move |c| c.ai[node].start_again()).await;
            }
            "freeze-ai" => {
                // Sometimes past the lease, so that its answer is failed and it is fenced.
                let frozen = Duration::from_millis(rng.random_range(1000..(LEASE_SECS + 3) * 1000));
                blocking(&cluster, move |c| c.ai[node].freeze()).await;
                tokio::time::sleep(frozen).await;
                blocking(&cluster, move |c| c.ai[node].thaw()).await;
            }
            "kill-pubsub" => {
                let client = redis::Client::open(redis_url.as_str()).unwrap();
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("TYPE")
                        .arg("pubsub")
                        .query_async(&mut conn)
                        .await;
                }
            }
            "restart-redis" => {
                blocking(&cluster, |c| c.redis.kill()).await;
                tokio::time::sleep(pause).await;
                blocking(&cluster, |c| c.redis.restart()).await;
            }
            _ => blocking(&cluster, |c| c.nginx.reload()).await,
        }
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

async fn blocking(cluster: &Arc<Mutex<Cluster>>, act: impl FnOnce(&mut Cluster) + Send + 'static) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || act(&mut cluster.lock().unwrap()))
        .await
        .unwrap();
}

async fn restart(
    cluster: &Arc<Mutex<Cluster>>,
    act: impl Fn(&mut Cluster) -> bool + Send + Sync + 'static,
) {
    let act = Arc::new(act);
    for _ in 0..3 {
        let act = act.clone();
        let cluster = cluster.clone();
        let started = tokio::task::spawn_blocking(move || act(&mut cluster.lock().unwrap()))
            .await
            .unwrap();
        if started {
            return;
        }
    }
    panic!("a node did not start again");
}

/// Waits (up to lease + 60 s) until no answer is streaming anywhere; returns whether that
/// happened.
async fn quiesce(redis_url: &str) -> bool {
    let client = redis::Client::open(redis_url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(LEASE_SECS + 60);
    while Instant::now() < deadline {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let active: Vec<String> = redis::cmd("KEYS")
                .arg("streaming:active:*")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if active.is_empty() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// What the run found.
#[derive(Default)]
struct Report {
    sessions: usize,
    answers: usize,
    statuses: BTreeMap<String, usize>,
    lost: Vec<String>,
    duplicated: Vec<String>,
    stuck: Vec<String>,
    gaps: Vec<String>,
}

impl Report {
    fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.stuck.is_empty()
            && self.gaps.is_empty()
    }

    fn print(&self, faults: &BTreeMap<&'static str, u32>, logs: &[ClientLog]) {
        let sum = |f: fn(&ClientLog) -> u32| logs.iter().map(f).sum::<u32>();
        let sockets: usize = logs.iter().map(|l| l.sockets.len()).sum();
        println!();
        println!("| sessions | answers | sockets | reloads | cancels | chats refused |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| {} | {} | {sockets} | {} | {} | {} |",
            self.sessions,
            self.answers,
            sum(|l| l.reloads),
            sum(|l| l.cancels),
            sum(|l| l.refused)
        );
        println!();
        println!("answers by status: {:?}", self.statuses);
        println!();
        let header: Vec<&str> = faults.keys().copied().collect();
        println!("| {} |", header.join(" | "));
        println!("|{}", "---|".repeat(header.len()));
        let values: Vec<String> = faults.values().map(u32::to_string).collect();
        println!("| {} |", values.join(" | "));
        println!();
        println!("| lost | duplicated | stuck | gaps |");
        println!("|---|---|---|---|");
        println!(
            "| {} | {} | {} | {} |",
            self.lost.len(),
            self.duplicated.len(),
            self.stuck.len(),
            self.gaps.len()
        );
        for (what, list) in [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("stuck", &self.stuck),
            ("gap", &self.gaps),
        ] {
            for line in list.iter().take(20) {
                println!("{what}: {line}");
            }
        }
        println!(
            "chaos: {}",
            if self.clean() {
                "nothing lost"
            } else {
                "FAILED"
            }
        );
    }
}

/// Checks every session against every socket's frames, REST history and SQL.
async fn verify(base: &str, database_url: &str, logs: &[ClientLog], quiet: bool) -> Report {
    let mut report = Report::default();
    if !quiet {
        report
            .stuck
            .push("answers still streaming after the heal period".into());
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let store = store::Store::connect(database_url).await.unwrap();
    let sessions: HashSet<&str> = logs
        .iter()
        .flat_map(|l| l.sockets.iter().map(|(s, _)| s.as_str()))
        .chain(
            logs.iter()
                .flat_map(|l| l.accepted.iter().map(|(s, _)| s.as_str())),
        )
        .collect();
    report.sessions = sessions.len();
    let mut stored: HashMap<String, Json> = HashMap::new();
    for session in &sessions {
        let history: Json = http
            .get(format!("{base}/api/history/{session}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages = history["messages"].as_array().cloned().unwrap_or_default();
        let mut seen = HashSet::new();
        for m in &messages {
            let id = m["messageId"].as_str().unwrap_or_default().to_owned();
            if !seen.insert(id.clone()) {
                report
                    .duplicated
                    .push(format!("{id} twice in the history of {session}"));
            }
            if m["isComplete"] != true {
                report
                    .stuck
                    .push(format!("{id} of {session} is still {}", m["status"]));
            }
            if m["role"] == "assistant" {
                report.answers += 1;
                *report
                    .statuses
                    .entry(m["status"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            stored.insert(id, m.clone());
        }
        compare_with_sql(&store, session, &messages, &mut report).await;
    }
    for log in logs {
        for (session, id) in &log.accepted {
            if !stored.contains_key(id) {
                report.lost.push(format!(
                    "accepted answer {id} of {session} is not in history"
                ));
            }
        }
        for (session, frames) in &log.sockets {
            let checked = sequence::check(frames);
            for v in checked.violations {
                let line = format!("{session}: {}", v.what);
                match v.kind {
                    Kind::Gap => report.gaps.push(line),
                    Kind::Duplicate => report.duplicated.push(line),
                    Kind::Mismatch => report.lost.push(line),
                }
            }
            for (id, ended) in checked.ended {
                match stored.get(&id) {
                    // An empty `content` is omitted from the JSON.
                    Some(m) if m["content"].as_str().unwrap_or_default() == ended.content => {}
                    Some(m) => report.lost.push(format!(
                        "{session}: a socket showed {id} ended {} with {} chars; stored: {} with {} chars",
                        ended.status,
                        ended.content.len(),
                        m["status"],
                        m["content"].as_str().map_or(0, str::len)
                    )),
                    None => report.lost.push(format!(
                        "{session}: a socket showed {id} ended; history does not have it"
                    )),
                }
            }
        }
    }
    report
}

/// SQL must hold what history holds: same messages, order, statuses and texts (the writes of
/// record may lag a little: waits up to 30 s).
async fn compare_with_sql(
    store: &store::Store,
    session: &str,
    history: &[Json],
    report: &mut Report,
) {
    let expected: Vec<(String, String, String)> = history
        .iter()
        .map(|m| {
            (
                m["messageId"].as_str().unwrap_or_default().to_owned(),
                m["status"].as_str().unwrap_or_default().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let sid = SessionId::parse(session).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<(String, String, String)> = store
            .history(&sid)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let status = serde_json::to_value(m.status).unwrap();
                (
                    m.message_id.to_string(),
                    status.as_str().unwrap_or_default().to_owned(),
                    m.content,
                )
            })
            .collect();
        if rows == expected {
            return;
        }
        if Instant::now() > deadline {
            report.lost.push(format!(
                "{session}: SQL holds {} messages, history {} (or they differ)",
                rows.len(),
                expected.len()
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
