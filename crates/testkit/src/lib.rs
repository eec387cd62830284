//! Test support shared by every package's integration tests.
//!
//! # Layout
//! - [`RedisServer`] (`redis.rs`): a real `redis-server` on a free loopback port with its own
//!   data dir, killed when dropped.
//! - [`Service`] (`process.rs`): one of the workspace's binaries run as a real process.
//! - [`Nginx`] (`nginx.rs`): a real `nginx` with a config rendered from `nginx-lb.conf`.
//! - [`free_port`]: a loopback port nothing listens on right now.

use std::net::{Ipv4Addr, TcpListener};
use std::process::Child;
use std::time::{Duration, Instant};

mod nginx;
mod process;
mod redis;

pub use nginx::Nginx;
pub use process::{Service, workspace_binary};
pub use redis::RedisServer;

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Sends SIGTERM and waits up to 10 s for the process to exit, then SIGKILL.
pub(crate) fn terminate(child: &mut Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
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
