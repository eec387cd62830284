//! A real `redis-server` on a free loopback port with its own data dir.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, terminate};

/// A `redis-server` process owned by a test.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Whether the server writes an append-only file (survives restarts).
    aof: bool,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    ///
    /// Panics with the install command when `redis-server` is not on the PATH.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`RedisServer::start`], with an append-only file fsynced on every write, so that
    /// [`RedisServer::stop`] + [`RedisServer::restart`] keeps the data.
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    fn start_with(aof: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn_ready(dir.path(), port, aof) {
                Ok(child) => {
                    return Self {
                        child: Some(child),
                        port,
                        dir,
                        aof,
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server the way an operator does (SIGTERM: it finishes its writes).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// Starts the server again on the same port and data dir (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The old process's port may take a moment to be released.
            match spawn_ready(self.dir.path(), self.port, self.aof) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "could not restart redis-server: {e}"
                ),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `redis-server` and waits until it answers; kills it if it does not.
fn spawn_ready(dir: &Path, port: u16, aof: bool) -> Result<Child, String> {
    let mut child = spawn(dir, port, aof)?;
    if wait_ready(&mut child, port, dir) {
        Ok(child)
    } else {
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("redis-server on port {port} did not answer PING"))
    }
}

fn spawn(dir: &Path, port: u16, aof: bool) -> Result<Child, String> {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            if aof { "yes" } else { "no" },
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "redis-server could not be started ({e}); install it with \
                 `apt-get install -y redis-server`"
            )
        })
}

/// Waits until the server on `port` answers and is ours (its dir is `dir`: another test's
/// server may hold the port); false if it exits or stays silent for 10 s.
fn wait_ready(child: &mut Child, port: u16, dir: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if serves_dir(port, dir) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Whether the Redis server on `port` answers `CONFIG GET dir` with `dir`.
fn serves_dir(port: u16, dir: &Path) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"CONFIG GET dir\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 4096];
    let mut got = 0;
    let want = dir.to_string_lossy();
    while got < reply.len() {
        match stream.read(&mut reply[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        let text = String::from_utf8_lossy(&reply[..got]);
        // *2 $3 dir $N <path>: complete once the path's line has arrived.
        if text.matches("\r\n").count() >= 5 {
            return text.contains(want.as_ref());
        }
    }
    false
}
