//! A real Kafka-compatible broker (Tansu, in-memory storage) on a free loopback port.
//!
//! The binary comes from `scripts/fetch-tansu` (cached at `$TANSU_BIN`, default
//! `~/.cache/chat-tools/tansu/tansu`). Tansu reads a `.env` file and `RUST_LOG` from its
//! environment, so it runs in an empty directory with an empty environment; it is killed when
//! the test process dies, even by a crash (`setpriv --pdeathsig`).
//!
//! Drop every Kafka client before restarting a broker: librdkafka consumers have been seen to
//! crash on a restarted Tansu.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, stop_with};

/// A broker process owned by a test.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    /// Its working directory: empty, so no stray `.env` is read.
    _dir: tempfile::TempDir,
}

/// The Tansu binary; panics with the command that fetches it when it is missing.
pub fn tansu_binary() -> PathBuf {
    let path = std::env::var_os("TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(".cache/chat-tools/tansu/tansu")
        });
    assert!(
        path.exists(),
        "{} is missing: fetch the Kafka-compatible broker with `scripts/fetch-tansu`",
        path.display()
    );
    path
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> Broker {
        let binary = tansu_binary();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir for the broker");
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let child = crate::dying_with_tests(&binary)
                .args(["broker", "--storage-engine", "memory://tansu/"])
                .args(["--listener-url", &url, "--advertised-listener-url", &url])
                .current_dir(dir.path())
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            let mut broker = Broker {
                child: Some(child),
                port,
                _dir: dir,
            };
            if broker.wait_ready(Duration::from_secs(10)) {
                return broker;
            }
            broker.kill();
        }
        panic!("the broker did not start");
    }

    /// `127.0.0.1:{port}`, for `KAFKA_BOOTSTRAP_SERVERS`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Freezes the broker (SIGSTOP): it keeps its connections but answers nothing.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen broker run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            crate::signal(child, signal);
        }
    }

    /// Waits until the port accepts connections; false if the process exits first (the port
    /// was taken) or time runs out.
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen broker must run to exit; SIGINT stops it at once even with clients
            // connected (SIGTERM waits for them), and SIGKILL follows if it does not.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            stop_with(&mut child, "-INT");
        }
    }
}
