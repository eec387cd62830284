//! Environment variables shared by both binaries.

use std::collections::HashMap;

/// A variable that is set but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}: {reason}")]
pub struct BadVar {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// The variables of the process, as a map, so that config loading can be tested with any map.
pub fn vars() -> HashMap<String, String> {
    std::env::vars().collect()
}

/// `REDIS_URL`, else `redis://{REDIS_HOST}:{REDIS_PORT}/` (the seed's names), else
/// `redis://127.0.0.1:6379/`.
pub fn redis_url(vars: &HashMap<String, String>) -> Result<String, BadVar> {
    if let Some(url) = vars.get("REDIS_URL").filter(|v| !v.is_empty()) {
        if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            return Err(BadVar {
                name: "REDIS_URL",
                value: url.clone(),
                reason: "must start with redis:// or rediss://".into(),
            });
        }
        return Ok(url.clone());
    }
    let host = vars
        .get("REDIS_HOST")
        .filter(|v| !v.is_empty())
        .map_or("127.0.0.1", String::as_str);
    let port = match vars.get("REDIS_PORT").filter(|v| !v.is_empty()) {
        None => 6379,
        Some(raw) => raw.parse::<u16>().map_err(|e| BadVar {
            name: "REDIS_PORT",
            value: raw.clone(),
            reason: e.to_string(),
        })?,
    };
    Ok(format!("redis://{host}:{port}/"))
}

/// Where history is kept durably, and how much of it a node caches; both binaries read these.
#[derive(Debug, Clone)]
pub struct Persistence {
    /// `DATABASE_URL`, default `sqlite://data/chat.db` (relative to the working directory; one
    /// file shared by the processes of a host). `postgres://...` for PostgreSQL.
    pub database_url: String,
    /// `CACHE_L1_MAX_SIZE`, default 500: sessions kept in a node's in-memory history cache.
    pub cache_l1_max_size: u64,
    /// `CACHE_L1_TTL_SECONDS`, default 120: how long a cached session lives after it was read
    /// from Redis (half of it after its last use).
    pub cache_l1_ttl: std::time::Duration,
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
            cache_l1_ttl: std::time::Duration::from_secs(parse_or(
                vars,
                "CACHE_L1_TTL_SECONDS",
                120u64,
            )?),
        })
    }
}

/// Reads an optional variable with a default, parsing it with `FromStr`.
pub fn parse_or<T>(
    vars: &HashMap<String, String>,
    name: &'static str,
    default: T,
) -> Result<T, BadVar>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match vars.get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|e: T::Err| BadVar {
            name,
            value: raw.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Reads an optional string variable with a default.
pub fn string_or(vars: &HashMap<String, String>, name: &str, default: &str) -> String {
    vars.get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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

    /// Numbers parse, blanks take the default, garbage is an error naming the variable.
    #[test]
    fn parse_or_reports_the_variable() {
        assert_eq!(parse_or(&map(&[("N", " 7 ")]), "N", 1u64).unwrap(), 7);
        assert_eq!(parse_or(&map(&[("N", "")]), "N", 1u64).unwrap(), 1);
        let err = parse_or(&map(&[("N", "x")]), "N", 1u64).unwrap_err();
        assert!(err.to_string().starts_with("N=\"x\""), "{err}");
    }
}
