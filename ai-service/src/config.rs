//! The AI node's configuration, read once from the environment.

use std::collections::HashMap;
use std::time::Duration;

use node::{NodeConfig, NodeDefaults};
use runtime::env::{BadVar, parse_or};

/// Everything the AI node can be told. Each field names its variable and default.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every node reads: `HOST`, `PORT` (default 8000), `NODE_ID` (default
    /// `ai-node-{PORT}`), `REDIS_URL`, `DATABASE_URL`, the L1 cache, `LOG_LEVEL`.
    pub node: NodeConfig,
    /// `STREAM_DELAY_MS`, default 50: pause before each word.
    pub stream_delay: Duration,
    /// `STREAM_LEASE_SECONDS`, default 10: a stream's lease lives this long past its last chunk.
    pub lease_secs: u64,
    /// `SHUTDOWN_GRACE_SECONDS`, default 20: on SIGTERM, streams get this long to finish before
    /// they are ended as `failed`.
    pub shutdown_grace: Duration,
}

impl AsRef<NodeConfig> for Config {
    fn as_ref(&self) -> &NodeConfig {
        &self.node
    }
}

impl Config {
    /// Reads the configuration from `vars` (the process environment in `main`).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, BadVar> {
        let node = NodeConfig::from_vars(
            vars,
            NodeDefaults {
                port: 8000,
                node_prefix: "ai-node",
            },
        )?;
        let delay_ms = parse_or(vars, "STREAM_DELAY_MS", 50u64)?;
        if delay_ms > 60_000 {
            return Err(BadVar {
                name: "STREAM_DELAY_MS",
                value: delay_ms.to_string(),
                reason: "must be at most 60000".into(),
            });
        }
        let lease_secs = parse_or(vars, "STREAM_LEASE_SECONDS", 10u64)?;
        // The lease is refreshed by each chunk, so it must comfortably outlast one interval.
        if lease_secs == 0 || lease_secs * 1000 < 2 * delay_ms + 1000 {
            return Err(BadVar {
                name: "STREAM_LEASE_SECONDS",
                value: lease_secs.to_string(),
                reason: format!(
                    "must be at least 1 s plus two chunk intervals (STREAM_DELAY_MS={delay_ms})"
                ),
            });
        }
        Ok(Self {
            node,
            stream_delay: Duration::from_millis(delay_ms),
            lease_secs,
            shutdown_grace: Duration::from_secs(parse_or(vars, "SHUTDOWN_GRACE_SECONDS", 20u64)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// With nothing set, every default works on a developer machine.
    #[test]
    fn defaults_work() {
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.node.port, 8000);
        assert_eq!(c.node.node_id, "ai-node-8000");
        assert_eq!(c.stream_delay, Duration::from_millis(50));
        assert_eq!(c.lease_secs, 10);
        assert_eq!(c.node.redis_url, "redis://127.0.0.1:6379/");
    }

    /// A lease shorter than the chunk interval would expire mid-stream: refused at start-up.
    #[test]
    fn lease_must_outlast_the_chunk_interval() {
        let bad = vars(&[("STREAM_DELAY_MS", "5000"), ("STREAM_LEASE_SECONDS", "10")]);
        assert!(Config::from_vars(&bad).is_err());
        assert!(Config::from_vars(&vars(&[("PORT", "eighty")])).is_err());
    }
}
