//! A real `nginx`, with its config rendered from the repository's `nginx-lb.conf` by
//! `scripts/nginx-conf` (the same renderer `scripts/up` uses).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, terminate, wait_for_port};

/// A running nginx, stopped when dropped.
pub struct Nginx {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// The repository root (this crate lives in `crates/testkit`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// How NGINX picks a gateway for a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// By client address (`ip_hash`, as `nginx-lb.conf` ships): every test client lands on one
    /// gateway, since they all come from 127.0.0.1.
    #[default]
    ByAddress,
    /// By session (`hash $arg_session_id consistent`): sockets spread over the gateways.
    BySession,
}

impl Nginx {
    /// Starts nginx on a free port in front of `gateway_ports` and `ai_ports`.
    ///
    /// Panics with the install command when nginx is missing.
    pub fn start(gateway_ports: &[u16], ai_ports: &[u16]) -> Nginx {
        Self::start_balanced(gateway_ports, ai_ports, Balance::ByAddress)
    }

    /// [`Nginx::start`], picking gateways for sockets by `balance`.
    pub fn start_balanced(gateway_ports: &[u16], ai_ports: &[u16], balance: Balance) -> Nginx {
        for _ in 0..5 {
            if let Some(nginx) = Self::try_start(free_port(), gateway_ports, ai_ports, balance) {
                return nginx;
            }
        }
        panic!("nginx did not start");
    }

    fn try_start(
        port: u16,
        gateway_ports: &[u16],
        ai_ports: &[u16],
        balance: Balance,
    ) -> Option<Nginx> {
        let binary = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is missing; install it with `apt-get install -y nginx`");
        let dir = tempfile::tempdir().expect("temp dir for nginx");
        let www = dir.path().join("www");
        std::fs::create_dir_all(&www).expect("www dir");
        std::fs::write(www.join("index.html"), "<!doctype html><title>chat</title>")
            .expect("index");
        let join = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let rendered = Command::new("bash")
            .arg(repo_root().join("scripts/nginx-conf"))
            .env(
                "NGINX_BALANCE",
                match balance {
                    Balance::ByAddress => "address",
                    Balance::BySession => "session",
                },
            )
            .arg(dir.path())
            .arg(port.to_string())
            .arg(join(gateway_ports))
            .arg(join(ai_ports))
            .arg(&www)
            .output()
            .expect("running scripts/nginx-conf");
        assert!(
            rendered.status.success(),
            "scripts/nginx-conf failed: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, &rendered.stdout).expect("write nginx.conf");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting nginx");
        let mut nginx = Nginx {
            port,
            child: Some(child),
            _dir: dir,
        };
        // nginx exits at once when its port is taken; what answers must be our process.
        let listening = wait_for_port(port, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
        let alive = nginx
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        (listening && alive).then_some(nginx)
    }

    /// Reloads the configuration (SIGHUP), as an operator's `nginx -s reload`: new workers
    /// take over, old ones finish their connections.
    pub fn reload(&self) {
        if let Some(child) = &self.child {
            crate::signal(child, "-HUP");
        }
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master must take its workers down with it.
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}
