//! One of the workspace's binaries, run as a real process that a test can kill -9.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use crate::{free_port, terminate};

/// The path of workspace binary `name` (`ai-service`, `ws-gateway`) next to the running test
/// (`target/{profile}/deps/test-hash`) or tool (`target/{profile}/chaos`).
///
/// Panics with the build command when it has not been built.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("executable in a directory");
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().expect("target/<profile>/deps")
    } else {
        dir
    };
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; build it first with `cargo build --workspace`",
        path.display()
    );
    path
}

/// A running service process, killed when dropped.
pub struct Service {
    pub name: String,
    pub port: u16,
    child: Option<Child>,
    /// How it was started, to start it again.
    binary: String,
    env: HashMap<String, String>,
    log: Option<PathBuf>,
}

impl Service {
    /// Starts workspace binary `binary` with `env` (plus `PORT`, `HOST` and `NODE_ID` = `name`)
    /// on a free port, and waits until its `/health` answers with that node id (so that a
    /// port taken by another test's server is never mistaken for it).
    pub fn start(name: &str, binary: &str, env: &HashMap<String, String>) -> Service {
        Self::start_with(name, binary, env, None)
    }

    /// Like [`Service::start`], with everything the process logs written to `log` (at the
    /// `LOG_LEVEL` given in `env`).
    pub fn start_logging(
        name: &str,
        binary: &str,
        env: &HashMap<String, String>,
        log: &std::path::Path,
    ) -> Service {
        Self::start_with(name, binary, env, Some(log))
    }

    fn start_with(
        name: &str,
        binary: &str,
        env: &HashMap<String, String>,
        log: Option<&std::path::Path>,
    ) -> Service {
        for _ in 0..5 {
            let port = free_port();
            let mut service = Service {
                name: name.to_owned(),
                port,
                child: Some(spawn(name, binary, port, env, log)),
                binary: binary.to_owned(),
                env: env.clone(),
                log: log.map(std::path::Path::to_path_buf),
            };
            if service.wait_healthy(Duration::from_secs(20)) {
                return service;
            }
            service.kill9();
        }
        panic!("{name} did not start");
    }

    /// Starts a stopped (or killed) service again, on the same port and with the same
    /// settings; waits up to 20 s for it to answer `/health`. False if it did not.
    pub fn start_again(&mut self) -> bool {
        if self.child.is_some() {
            return true;
        }
        self.child = Some(spawn(
            &self.name,
            &self.binary,
            self.port,
            &self.env,
            self.log.as_deref(),
        ));
        self.wait_healthy(Duration::from_secs(20))
    }

    /// Whether the process runs (it may be frozen).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Waits until `/health` names this node; false if the process exits first or time runs out.
    fn wait_healthy(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let expected = format!("\"node_id\":\"{}\"", self.name);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if http_get(self.port, "/health").is_some_and(|body| body.contains(&expected)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn spawn(
    name: &str,
    binary: &str,
    port: u16,
    env: &HashMap<String, String>,
    log: Option<&std::path::Path>,
) -> Child {
    let stderr = match log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("log file {}: {e}", path.display())),
        ),
        None if std::env::var_os("TEST_SHOW_LOGS").is_some() => Stdio::inherit(),
        None => Stdio::null(),
    };
    let log_level = env
        .get("LOG_LEVEL")
        .cloned()
        .or_else(|| std::env::var("TEST_LOG_LEVEL").ok())
        .unwrap_or_else(|| "warn".into());
    Command::new(workspace_binary(binary))
        .envs(env)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("NODE_ID", name)
        .env("LOG_LEVEL", log_level)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"))
}

/// The body of `GET path` on a loopback port, whatever the status; `None` if nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

impl Service {
    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Freezes the process (SIGSTOP): it keeps its connections and its state but does
    /// nothing, as a stalled VM or a long GC pause would.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            crate::signal(child, "-STOP");
        }
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        if let Some(child) = &self.child {
            crate::signal(child, "-CONT");
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as an operator's stop; waits (up to 30 s) for the exit and returns its status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        terminate(&mut child);
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}
