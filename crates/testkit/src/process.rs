//! One of the workspace's binaries, run as a real process that a test can kill -9.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{terminate, wait_for_port};

/// The path of workspace binary `name` (`ai-service`, `ws-gateway`) next to the running test.
///
/// Panics with the build command when it has not been built.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/{profile}/deps/test-hash → target/{profile}/name
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable in target/<profile>/deps");
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
}

impl Service {
    /// Starts workspace binary `binary` with `env` (plus `PORT` and `HOST`) on `port`, and waits
    /// until it accepts connections.
    pub fn start(name: &str, binary: &str, port: u16, env: &HashMap<String, String>) -> Service {
        let child = Command::new(workspace_binary(binary))
            .envs(env)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env(
                "LOG_LEVEL",
                std::env::var("TEST_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_SHOW_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let service = Service {
            name: name.to_owned(),
            port,
            child: Some(child),
        };
        assert!(
            wait_for_port(port, Duration::from_secs(20)),
            "{name} did not listen on {port}"
        );
        service
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as an operator's stop; waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}
