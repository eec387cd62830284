//! The settings every node reads, whichever binary it is.

use std::collections::HashMap;
use std::time::Duration;

use auth::AuthConfig;
use events::KafkaConfig;
use redis_state::RedisTarget;
use runtime::env::{BadVar, parse_or, string_or};
use runtime::telemetry::LogFormat;

/// A binary's own settings, beside the ones every node reads.
pub trait ServiceConfig: Sized {
    /// This binary's `PORT` and `NODE_ID` defaults.
    const DEFAULTS: NodeDefaults;

    /// Reads this binary's own variables from `vars`, checking them.
    fn from_vars(vars: &HashMap<String, String>) -> Result<Self, BadVar>;
}

/// A node's whole configuration, read once at start-up: what every node reads, and what its
/// binary (`S`) reads.
#[derive(Debug, Clone)]
pub struct Config<S> {
    pub node: NodeConfig,
    pub service: S,
}

impl<S: ServiceConfig> Config<S> {
    /// Reads the configuration from `vars` (the process environment in `main`).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, BadVar> {
        Ok(Self {
            node: NodeConfig::from_vars(vars, S::DEFAULTS)?,
            service: S::from_vars(vars)?,
        })
    }

    /// Starts logging (and span export) as configured; keep the result until the node stops.
    pub fn start_telemetry(&self) -> runtime::telemetry::Telemetry {
        runtime::telemetry::init(&runtime::telemetry::TelemetryConfig {
            node_id: self.node.node_id.clone(),
            log_level: self.node.log_level.clone(),
            format: self.node.log_format,
            otlp_endpoint: self.node.otlp_endpoint.clone(),
            service_name: S::DEFAULTS.service,
        })
    }
}

/// What differs between the binaries' defaults.
#[derive(Debug, Clone, Copy)]
pub struct NodeDefaults {
    /// `PORT` when unset.
    pub port: u16,
    /// `NODE_ID` when unset is `{node_prefix}-{PORT}`.
    pub node_prefix: &'static str,
    /// The binary's name: exported spans' `service.name`.
    pub service: &'static str,
}

impl NodeDefaults {
    pub const fn new(port: u16, node_prefix: &'static str, service: &'static str) -> Self {
        Self {
            port,
            node_prefix,
            service,
        }
    }
}

/// Settings both binaries share. Each field names its variable and default.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `HOST`, default `0.0.0.0`.
    pub host: String,
    /// `PORT`; the default is the binary's.
    pub port: u16,
    /// `NODE_ID`, default `{prefix}-{PORT}` (`ai-node-8000`, `ws-node-8080`).
    pub node_id: String,
    /// `REDIS_CLUSTER_URLS` (seed nodes of a Redis Cluster, comma-separated) when set, else
    /// `REDIS_URL` (or `REDIS_HOST`/`REDIS_PORT`), default `redis://127.0.0.1:6379/`.
    pub redis: RedisTarget,
    /// `DATABASE_URL`, `CACHE_L1_MAX_SIZE`, `CACHE_L1_TTL_SECONDS`.
    pub persistence: Persistence,
    /// `KAFKA_BOOTSTRAP_SERVERS` and the other `KAFKA_*` settings; `None` (events disabled)
    /// when `KAFKA_BOOTSTRAP_SERVERS` is unset.
    pub kafka: Option<KafkaConfig>,
    /// `AUTH_MODE`, `JWT_SECRET`, `JWT_EXPIRATION_MS`, `CORS_ALLOWED_ORIGINS`.
    pub auth: AuthConfig,
    /// `LOG_LEVEL`, default `info` (an `EnvFilter` directive).
    pub log_level: String,
    /// `LOG_FORMAT`, `text` (default) or `json` (one JSON object a line).
    pub log_format: LogFormat,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, unset by default: where spans are exported over OTLP
    /// (HTTP/protobuf, e.g. `http://otel-collector:4318`); unset, nothing is exported.
    pub otlp_endpoint: Option<String>,
}

impl NodeConfig {
    /// Reads the shared settings from `vars` (the process environment in `main`).
    pub fn from_vars(
        vars: &HashMap<String, String>,
        defaults: NodeDefaults,
    ) -> Result<Self, BadVar> {
        let port = parse_or(vars, "PORT", defaults.port)?;
        Ok(Self {
            host: string_or(vars, "HOST", "0.0.0.0"),
            port,
            node_id: string_or(vars, "NODE_ID", &format!("{}-{port}", defaults.node_prefix)),
            redis: redis_target(vars)?,
            persistence: Persistence::from_vars(vars)?,
            kafka: KafkaConfig::from_vars(vars)?,
            auth: AuthConfig::from_vars(vars)?,
            log_level: string_or(vars, "LOG_LEVEL", "info"),
            log_format: log_format(vars)?,
            otlp_endpoint: vars
                .get("OTEL_EXPORTER_OTLP_ENDPOINT")
                .filter(|v| !v.trim().is_empty())
                .cloned(),
        })
    }
}

/// Where history is kept durably, and how much of it a node caches.
#[derive(Debug, Clone)]
pub struct Persistence {
    /// `DATABASE_URL`, default `sqlite://data/chat.db` (relative to the working directory; one
    /// file shared by the processes of a host). `postgres://...` for PostgreSQL.
    pub database_url: String,
    /// `CACHE_L1_MAX_SIZE`, default 500: sessions kept in a node's in-memory history cache.
    pub cache_l1_max_size: u64,
    /// `CACHE_L1_TTL_SECONDS`, default 120: how long a cached session lives after it was read
    /// from Redis (half of it after its last use).
    pub cache_l1_ttl: Duration,
}

impl Persistence {
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, BadVar> {
        let database_url = string_or(vars, "DATABASE_URL", "sqlite://data/chat.db");
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| database_url.starts_with(p))
        {
            return Err(BadVar {
                name: "DATABASE_URL",
                value: database_url,
                reason: "must start with sqlite:, postgres:// or postgresql://".into(),
            });
        }
        Ok(Self {
            database_url,
            cache_l1_max_size: parse_or(vars, "CACHE_L1_MAX_SIZE", 500u64)?,
            cache_l1_ttl: Duration::from_secs(parse_or(vars, "CACHE_L1_TTL_SECONDS", 120u64)?),
        })
    }
}

/// `LOG_FORMAT`: `text` or `json`.
fn log_format(vars: &HashMap<String, String>) -> Result<LogFormat, BadVar> {
    match vars.get("LOG_FORMAT").filter(|v| !v.is_empty()) {
        None => Ok(LogFormat::Text),
        Some(raw) => LogFormat::parse(raw).ok_or_else(|| BadVar {
            name: "LOG_FORMAT",
            value: raw.clone(),
            reason: "must be text or json".into(),
        }),
    }
}

/// `REDIS_CLUSTER_URLS` (a cluster), else the single Redis of [`redis_url`].
fn redis_target(vars: &HashMap<String, String>) -> Result<RedisTarget, BadVar> {
    let Some(raw) = vars
        .get("REDIS_CLUSTER_URLS")
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(RedisTarget::Single(redis_url(vars)?));
    };
    let seeds: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = seeds.iter().find(|url| !is_redis_url(url)) {
        return Err(BadVar {
            name: "REDIS_CLUSTER_URLS",
            value: raw.clone(),
            reason: format!("{bad}: each seed must start with redis:// or rediss://"),
        });
    }
    Ok(RedisTarget::Cluster(seeds))
}

fn is_redis_url(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("rediss://")
}

/// `REDIS_URL`, else `redis://{REDIS_HOST}:{REDIS_PORT}/` (the seed's names), else
/// `redis://127.0.0.1:6379/`.
fn redis_url(vars: &HashMap<String, String>) -> Result<String, BadVar> {
    if let Some(url) = vars.get("REDIS_URL").filter(|v| !v.is_empty()) {
        if !is_redis_url(url) {
            return Err(BadVar {
                name: "REDIS_URL",
                value: url.clone(),
                reason: "must start with redis:// or rediss://".into(),
            });
        }
        return Ok(url.clone());
    }
    let host = string_or(vars, "REDIS_HOST", "127.0.0.1");
    let port = parse_or(vars, "REDIS_PORT", 6379u16)?;
    Ok(format!("redis://{host}:{port}/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::env::from_pairs as map;

    const AI: NodeDefaults = NodeDefaults::new(8000, "ai-node", "ai-service");

    /// With nothing set, every default works on a developer machine; the node id follows the
    /// port.
    #[test]
    fn defaults_work_and_the_node_id_follows_the_port() {
        let c = NodeConfig::from_vars(&map(&[]), AI).unwrap();
        assert_eq!((c.port, c.node_id.as_str()), (8000, "ai-node-8000"));
        assert_eq!(
            c.redis,
            RedisTarget::Single("redis://127.0.0.1:6379/".into())
        );
        assert_eq!(c.persistence.database_url, "sqlite://data/chat.db");
        let c = NodeConfig::from_vars(&map(&[("PORT", "9001")]), AI).unwrap();
        assert_eq!(c.node_id, "ai-node-9001");
        assert!(NodeConfig::from_vars(&map(&[("PORT", "eighty")]), AI).is_err());
        assert!(NodeConfig::from_vars(&map(&[("DATABASE_URL", "mysql://x")]), AI).is_err());
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.otlp_endpoint, None);
        let json = NodeConfig::from_vars(&map(&[("LOG_FORMAT", "JSON")]), AI).unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
        assert!(NodeConfig::from_vars(&map(&[("LOG_FORMAT", "yaml")]), AI).is_err());
    }

    /// REDIS_URL wins; REDIS_HOST/REDIS_PORT are the fallback; bad values are refused.
    #[test]
    fn redis_url_follows_the_seed_names() {
        assert_eq!(redis_url(&map(&[])).unwrap(), "redis://127.0.0.1:6379/");
        assert_eq!(
            redis_url(&map(&[("REDIS_HOST", "redis"), ("REDIS_PORT", "7000")])).unwrap(),
            "redis://redis:7000/"
        );
        assert_eq!(
            redis_url(&map(&[("REDIS_URL", "redis://x:1/2"), ("REDIS_HOST", "y")])).unwrap(),
            "redis://x:1/2"
        );
        assert!(redis_url(&map(&[("REDIS_PORT", "http")])).is_err());
        assert!(redis_url(&map(&[("REDIS_URL", "http://x")])).is_err());
    }

    /// REDIS_CLUSTER_URLS switches to a cluster, whatever REDIS_URL says; bad seeds are
    /// refused, and a blank value is unset.
    #[test]
    fn redis_cluster_urls_switch_to_a_cluster() {
        let both = map(&[
            ("REDIS_CLUSTER_URLS", "redis://a:7000, redis://b:7001,"),
            ("REDIS_URL", "redis://x:1/"),
        ]);
        assert_eq!(
            redis_target(&both).unwrap(),
            RedisTarget::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
        let blank = map(&[("REDIS_CLUSTER_URLS", " "), ("REDIS_URL", "redis://x:1/")]);
        assert_eq!(
            redis_target(&blank).unwrap(),
            RedisTarget::Single("redis://x:1/".into())
        );
        assert!(redis_target(&map(&[("REDIS_CLUSTER_URLS", "redis://a:1,a:2")])).is_err());
    }
}
