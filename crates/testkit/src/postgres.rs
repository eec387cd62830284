//! A real PostgreSQL server in a temp dir on a free loopback port, for tests of the SQL store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, stop_with, wait_for_port};

/// A `postgres` process owned by a test, stopped when dropped.
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// Debian's server binaries: `/usr/lib/postgresql/{version}/bin`, newest version first.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("postgres").exists());
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL server is missing; install it with `apt-get install -y postgresql`")
}

/// Runs `program` as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl PostgresServer {
    /// initdb into a temp dir (trust auth, no fsync: test data), start on a free port, wait.
    pub fn start() -> PostgresServer {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir for postgres");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        // The postgres user must own the data dir and reach it.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let status = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running initdb");
        assert!(status.success(), "initdb failed");
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn(&bin, dir.path(), port);
            if wait_for_port(port, Duration::from_secs(20)) && alive_after(&mut child) {
                return PostgresServer {
                    child: Some(child),
                    port,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("postgres did not start");
    }

    /// Stops the server (fast shutdown: clients are disconnected), keeping its data and port,
    /// as an operator's restart or a crash of the database host would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_with(&mut child, "-INT");
        }
    }

    /// Starts a stopped server again on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "postgres is running");
        let mut child = spawn(&bin_dir(), self.dir.path(), self.port);
        assert!(
            wait_for_port(self.port, Duration::from_secs(20)) && alive_after(&mut child),
            "postgres did not start again on port {}",
            self.port
        );
        self.child = Some(child);
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

/// Starts `postgres` on the data in `dir/data`, listening on `port`.
fn spawn(bin: &Path, dir: &Path, port: u16) -> Child {
    as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .args(["-c", "fsync=off", "-c", "max_connections=200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting postgres")
}

/// Whether the process is still running a moment after its port opened (it exits at once when
/// the port was taken by someone else).
fn alive_after(child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_millis(200);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: fast shutdown; the postmaster takes its backends down with it.
            stop_with(&mut child, "-INT");
        }
    }
}
