//! The AI node's configuration, read once from the environment.

use std::collections::HashMap;
use std::time::Duration;

use node::{NodeDefaults, ServiceConfig};
use runtime::env::{BadVar, parse_or};

/// The AI node's configuration: what every node reads (`PORT` default 8000, `NODE_ID` default
/// `ai-node-{PORT}`) and [`AiConfig`].
pub type Config = node::Config<AiConfig>;

/// What only the AI node can be told. Each field names its variable and default.
#[derive(Debug, Clone)]
pub struct AiConfig {
    /// `STREAM_DELAY_MS`, default 50: pause before each word.
    pub stream_delay: Duration,
    /// `STREAM_LEASE_SECONDS`, default 10: a stream's lease lives this long past its last chunk.
    pub lease_secs: u64,
    /// `SHUTDOWN_GRACE_SECONDS`, default 20: on SIGTERM, streams get this long to finish before
    /// they are ended as `failed`.
    pub shutdown_grace: Duration,
    /// `CHAT_RATE_LIMIT_PER_MINUTE`, default 30: chats one user may start a minute, across all
    /// nodes (in bursts of up to that many); 0 turns the limit off.
    pub chat_rate_limit_per_minute: u32,
}

impl ServiceConfig for AiConfig {
    const DEFAULTS: NodeDefaults = NodeDefaults::new(8000, "ai-node", "ai-service");

    fn from_vars(vars: &HashMap<String, String>) -> Result<Self, BadVar> {
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
            stream_delay: Duration::from_millis(delay_ms),
            lease_secs,
            shutdown_grace: Duration::from_secs(parse_or(vars, "SHUTDOWN_GRACE_SECONDS", 20u64)?),
            chat_rate_limit_per_minute: parse_or(vars, "CHAT_RATE_LIMIT_PER_MINUTE", 30u32)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::env::from_pairs as vars;

    /// With nothing set, every default works on a developer machine, on the AI node's port.
    #[test]
    fn defaults_work() {
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.service.stream_delay, Duration::from_millis(50));
        assert_eq!(c.service.lease_secs, 10);
        assert_eq!(c.service.chat_rate_limit_per_minute, 30);
        assert_eq!(
            (c.node.port, c.node.node_id.as_str()),
            (8000, "ai-node-8000")
        );
    }

    /// A lease shorter than the chunk interval would expire mid-stream: refused at start-up.
    #[test]
    fn lease_must_outlast_the_chunk_interval() {
        let bad = vars(&[("STREAM_DELAY_MS", "5000"), ("STREAM_LEASE_SECONDS", "10")]);
        assert!(Config::from_vars(&bad).is_err());
        assert!(Config::from_vars(&vars(&[("PORT", "eighty")])).is_err());
    }
}
