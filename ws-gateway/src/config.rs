//! The gateway's configuration, read once from the environment.

use std::collections::HashMap;
use std::time::Duration;

use node::{NodeDefaults, ServiceConfig};
use runtime::env::{BadVar, parse_or, string_or};

/// Frames above this are refused by the WebSocket layer itself, which drops the connection;
/// frames between `WS_MAX_MESSAGE_BYTES` and this get an `error` frame and the socket stays open.
pub const WS_HARD_LIMIT: usize = 1024 * 1024;

/// The gateway's configuration: what every node reads (`PORT` default 8080, `NODE_ID` default
/// `ws-node-{PORT}`) and [`GatewayConfig`].
pub type Config = node::Config<GatewayConfig>;

/// What only the gateway can be told. Each field names its variable and default.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `AI_SERVICE_URLS`, comma-separated, default `http://127.0.0.1:8000`: the AI nodes chats
    /// are forwarded to, round robin.
    pub ai_service_urls: Vec<String>,
    /// `AI_REQUEST_TIMEOUT_MS`, default 5000: how long one forwarded chat may take.
    pub ai_request_timeout: Duration,
    /// `STREAM_MAX_PENDING_CHUNKS`, default 1000: frames queued for one socket before it is
    /// closed as a slow consumer (code 1013).
    pub max_pending_frames: usize,
    /// `WS_MAX_MESSAGE_BYTES`, default 65536: larger client frames get a `TOO_LARGE` error.
    pub ws_max_message_bytes: usize,
    /// `STATIC_DIR`, default `frontend/dist`: the built browser app, served at `/` (so a lone
    /// gateway gives a working page). Nothing is served there when the directory is missing.
    pub static_dir: String,
    /// `MAX_SOCKETS_PER_USER`, default 20: sockets one user may hold open across all nodes;
    /// 0 turns the limit off.
    pub max_sockets_per_user: u32,
    /// `SESSION_OWNER_TTL_SECONDS`, default 600: lifetime of this node's claim on a session it
    /// serves (`session:owner:{sid}`), renewed every third of it.
    pub session_owner_ttl: Duration,
    /// `SHUTDOWN_GRACE_SECONDS`, default 10: on SIGTERM the node turns not-ready, refuses new
    /// sockets, closes the open ones with 1012 and exits within this long.
    pub shutdown_grace: Duration,
}

impl ServiceConfig for GatewayConfig {
    const DEFAULTS: NodeDefaults = NodeDefaults::new(8080, "ws-node", "ws-gateway");

    fn from_vars(vars: &HashMap<String, String>) -> Result<Self, BadVar> {
        let raw_urls = string_or(vars, "AI_SERVICE_URLS", "http://127.0.0.1:8000");
        let ai_service_urls: Vec<String> = raw_urls
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if ai_service_urls.is_empty()
            || ai_service_urls
                .iter()
                .any(|u| !u.starts_with("http://") && !u.starts_with("https://"))
        {
            return Err(BadVar {
                name: "AI_SERVICE_URLS",
                value: raw_urls,
                reason: "must be a comma-separated list of http:// or https:// URLs".into(),
            });
        }
        let max_pending_frames = parse_or(vars, "STREAM_MAX_PENDING_CHUNKS", 1000usize)?;
        if max_pending_frames < 16 {
            return Err(BadVar {
                name: "STREAM_MAX_PENDING_CHUNKS",
                value: max_pending_frames.to_string(),
                reason: "must be at least 16".into(),
            });
        }
        let ws_max_message_bytes = parse_or(vars, "WS_MAX_MESSAGE_BYTES", 64 * 1024usize)?;
        if !(1024..=WS_HARD_LIMIT).contains(&ws_max_message_bytes) {
            return Err(BadVar {
                name: "WS_MAX_MESSAGE_BYTES",
                value: ws_max_message_bytes.to_string(),
                reason: format!("must be between 1024 and {WS_HARD_LIMIT}"),
            });
        }
        Ok(Self {
            ai_service_urls,
            ai_request_timeout: Duration::from_millis(parse_or(
                vars,
                "AI_REQUEST_TIMEOUT_MS",
                5000u64,
            )?),
            max_pending_frames,
            ws_max_message_bytes,
            static_dir: string_or(vars, "STATIC_DIR", "frontend/dist"),
            max_sockets_per_user: parse_or(vars, "MAX_SOCKETS_PER_USER", 20u32)?,
            session_owner_ttl: owner_ttl(vars)?,
            shutdown_grace: Duration::from_secs(parse_or(vars, "SHUTDOWN_GRACE_SECONDS", 10u64)?),
        })
    }
}

fn owner_ttl(vars: &HashMap<String, String>) -> Result<Duration, BadVar> {
    let secs = parse_or(
        vars,
        "SESSION_OWNER_TTL_SECONDS",
        protocol::keys::SESSION_OWNER_TTL_SECS,
    )?;
    if secs < 3 {
        return Err(BadVar {
            name: "SESSION_OWNER_TTL_SECONDS",
            value: secs.to_string(),
            reason: "must be at least 3".into(),
        });
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::env::from_pairs as vars;

    /// With nothing set, every default works on a developer machine, on the gateway's port.
    #[test]
    fn defaults_work() {
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.service.ai_service_urls, vec!["http://127.0.0.1:8000"]);
        assert_eq!(c.service.max_pending_frames, 1000);
        assert_eq!(
            (c.node.port, c.node.node_id.as_str()),
            (8080, "ws-node-8080")
        );
    }

    /// AI URLs are a trimmed comma-separated list; anything but http(s) is refused.
    #[test]
    fn ai_urls_are_parsed_and_checked() {
        let c =
            Config::from_vars(&vars(&[("AI_SERVICE_URLS", " http://a:1/ ,http://b:2,,")])).unwrap();
        assert_eq!(c.service.ai_service_urls, vec!["http://a:1", "http://b:2"]);
        assert!(Config::from_vars(&vars(&[("AI_SERVICE_URLS", "a:1")])).is_err());
        assert!(Config::from_vars(&vars(&[("AI_SERVICE_URLS", " , ")])).is_err());
    }
}
