//! Test support shared by every package's integration tests.
//!
//! # Layout
//! - [`RedisServer`] (`redis.rs`): a real `redis-server` on a free loopback port with its own
//!   data dir, killed when dropped.
//! - [`RedisCluster`] (`redis_cluster.rs`): a real Redis Cluster of three masters and three
//!   replicas on free loopback ports, with a node killed on demand and its failover awaited.
//! - [`Service`] (`process.rs`): one of the workspace's binaries run as a real process.
//! - [`Nginx`] (`nginx.rs`): a real `nginx` with a config rendered from `nginx-lb.conf`.
//! - [`PostgresServer`] (`postgres.rs`): a real PostgreSQL in a temp dir.
//! - [`Broker`] (`broker.rs`): a real Kafka-compatible broker (Tansu) on a free port.
//! - [`FakeModel`] (`openai.rs`): an in-process OpenAI-compatible streaming server on a loopback
//!   port (std threads, blocking I/O), scripted per request and recording every request.
//! - [`free_port`]: a loopback port nothing listens on right now.

use std::net::{Ipv4Addr, TcpListener};
use std::process::Child;
use std::time::{Duration, Instant};

mod broker;
mod nginx;
mod openai;
mod postgres;
mod process;
mod redis;
mod redis_cluster;

pub use broker::{Broker, tansu_binary};
pub use nginx::{Balance, Nginx};
pub use openai::{End, FakeModel, Recorded, Reply, Script};
pub use postgres::PostgresServer;
pub use process::{Service, workspace_binary};
pub use redis::RedisServer;
pub use redis_cluster::{CLUSTER_NODE_TIMEOUT_MS, RedisCluster};

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768-60999), so that a
/// port chosen here is not taken meanwhile by a listener bound to port 0 (the in-process test
/// servers) or by an outgoing connection, both of which draw from the ephemeral range.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// A loopback TCP port that was free a moment ago, outside the ephemeral range. Concurrent
/// tests may still pick the same one, rarely; starters check that what answers is theirs.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32)
        ^ SEQUENCE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
    let mut x = seed | 1;
    for _ in 0..1000 {
        // xorshift: a cheap spread of candidates without a dependency.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = PORT_RANGE.start + (x % span) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PORT_RANGE:?}");
}

/// A command for `binary` that dies with the test process, even when that is killed or
/// crashes (`setpriv --pdeathsig KILL`, where util-linux has it), so no server outlives a test.
pub fn dying_with_tests(binary: &std::path::Path) -> std::process::Command {
    if std::path::Path::new("/usr/bin/setpriv").exists() {
        let mut command = std::process::Command::new("/usr/bin/setpriv");
        command.args(["--pdeathsig", "KILL", "--"]).arg(binary);
        command
    } else {
        std::process::Command::new(binary)
    }
}

/// Sends SIGTERM and waits up to 10 s for the process to exit, then SIGKILL.
pub(crate) fn terminate(child: &mut Child) {
    stop_with(child, "-TERM");
}

/// Sends `signal` (`-STOP`, `-CONT`, ...) to `child`; panics if `kill` fails.
pub(crate) fn signal(child: &Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {signal} failed");
}

/// Sends `signal` (`-TERM`, `-INT`) and waits up to 10 s for the process to exit, then SIGKILL.
pub(crate) fn stop_with(child: &mut Child, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until something accepts TCP connections on `port`, up to `limit`.
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let addr = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
