//! The authentication settings, read once at start-up.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use runtime::env::{BadVar, parse_or, string_or};

/// The secret dev mode signs with when `JWT_SECRET` is unset: known to everyone, so only fit
/// for a developer's machine. Required mode refuses to start without a secret of its own.
pub const DEV_SECRET: &str = "dev-secret-do-not-use-in-production";
/// Shortest `JWT_SECRET` accepted in required mode (HS256 wants at least 256 bits).
const MIN_SECRET_BYTES: usize = 32;

/// Whether calls must carry a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Tokens are optional; without one, the client's `user_id` is believed; sessions are not
    /// guarded by their owner.
    Dev,
    /// Every call carries a valid token; the user is its subject; a session is only its
    /// owner's.
    Required,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Dev => "dev",
            AuthMode::Required => "required",
        }
    }
}

/// The JWT secret. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Origins a browser page may call the node from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin (`*`).
    Any,
    /// These origins (`https://chat.example`), and the node's own.
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Whether a page of `origin` (the `Origin` header), calling host `host` (the `Host`
    /// header), may go on. A page of the node's own host always may.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin_host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        if host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host)) {
            return true;
        }
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// Everything a node knows about authentication. Each field names its variable and default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `AUTH_MODE`: `dev` (default) or `required`.
    pub mode: AuthMode,
    /// `JWT_SECRET`: required (32 bytes at least) in required mode; dev mode uses
    /// [`DEV_SECRET`] when unset.
    pub secret: Secret,
    /// `JWT_SECRET_PREVIOUS`: while rotating the secret, tokens signed with the old one are
    /// still accepted (tokens are only ever signed with `JWT_SECRET`).
    pub previous_secret: Option<Secret>,
    /// `JWT_EXPIRATION_MS`, default 86400000 (24 h): lifetime of the tokens this node mints.
    pub expiration: Duration,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins, or `*`. Default `*` in dev mode, none
    /// (the node's own origin only) in required mode.
    pub allowed_origins: AllowedOrigins,
}

impl AuthConfig {
    /// Reads the settings from `vars`; refuses required mode without a proper secret.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, BadVar> {
        let raw_mode = string_or(vars, "AUTH_MODE", "dev");
        let mode = match raw_mode.as_str() {
            "dev" => AuthMode::Dev,
            "required" => AuthMode::Required,
            _ => {
                return Err(BadVar {
                    name: "AUTH_MODE",
                    value: raw_mode,
                    reason: "must be dev or required".into(),
                });
            }
        };
        let raw_secret = vars.get("JWT_SECRET").map(|s| s.trim()).unwrap_or_default();
        let secret = match (mode, raw_secret.is_empty()) {
            (AuthMode::Required, true) => {
                return Err(BadVar {
                    name: "JWT_SECRET",
                    value: String::new(),
                    reason: "is required when AUTH_MODE=required".into(),
                });
            }
            (AuthMode::Required, false) if raw_secret.len() < MIN_SECRET_BYTES => {
                return Err(BadVar {
                    name: "JWT_SECRET",
                    value: "<redacted>".into(),
                    reason: format!("must be at least {MIN_SECRET_BYTES} bytes long"),
                });
            }
            (AuthMode::Dev, true) => Secret::new(DEV_SECRET),
            (_, false) => Secret::new(raw_secret),
        };
        let raw_previous = vars
            .get("JWT_SECRET_PREVIOUS")
            .map(|s| s.trim())
            .unwrap_or_default();
        if mode == AuthMode::Required
            && !raw_previous.is_empty()
            && raw_previous.len() < MIN_SECRET_BYTES
        {
            return Err(BadVar {
                name: "JWT_SECRET_PREVIOUS",
                value: "<redacted>".into(),
                reason: format!("must be at least {MIN_SECRET_BYTES} bytes long"),
            });
        }
        let previous_secret = (!raw_previous.is_empty()).then(|| Secret::new(raw_previous));
        let expiration_ms = parse_or(vars, "JWT_EXPIRATION_MS", 86_400_000u64)?;
        if expiration_ms < 1000 {
            return Err(BadVar {
                name: "JWT_EXPIRATION_MS",
                value: expiration_ms.to_string(),
                reason: "must be at least 1000".into(),
            });
        }
        let default_origins = match mode {
            AuthMode::Dev => "*",
            AuthMode::Required => "",
        };
        let raw_origins = string_or(vars, "CORS_ALLOWED_ORIGINS", default_origins);
        let allowed_origins = if raw_origins == "*" {
            AllowedOrigins::Any
        } else {
            let list: Vec<String> = raw_origins
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect();
            if let Some(bad) = list
                .iter()
                .find(|o| !o.starts_with("http://") && !o.starts_with("https://"))
            {
                return Err(BadVar {
                    name: "CORS_ALLOWED_ORIGINS",
                    value: raw_origins.clone(),
                    reason: format!("{bad:?} is not an origin like https://chat.example"),
                });
            }
            AllowedOrigins::List(list)
        };
        Ok(Self {
            mode,
            secret,
            previous_secret,
            expiration: Duration::from_millis(expiration_ms),
            allowed_origins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::env::from_pairs;

    /// Dev mode needs nothing; required mode refuses to start without a long secret, and the
    /// secret never shows in `Debug`.
    #[test]
    fn required_mode_needs_a_secret_that_debug_never_shows() {
        let dev = AuthConfig::from_vars(&from_pairs(&[])).unwrap();
        assert_eq!(dev.mode, AuthMode::Dev);
        assert_eq!(dev.allowed_origins, AllowedOrigins::Any);
        let missing = AuthConfig::from_vars(&from_pairs(&[("AUTH_MODE", "required")]));
        assert!(missing.unwrap_err().to_string().contains("JWT_SECRET"));
        let short = AuthConfig::from_vars(&from_pairs(&[
            ("AUTH_MODE", "required"),
            ("JWT_SECRET", "short-secret"),
        ]));
        let error = short.unwrap_err().to_string();
        assert!(!error.contains("short-secret"), "{error}");
        let secret = "a-very-long-secret-that-nobody-guesses-1234";
        let required = AuthConfig::from_vars(&from_pairs(&[
            ("AUTH_MODE", "required"),
            ("JWT_SECRET", secret),
        ]))
        .unwrap();
        assert_eq!(required.allowed_origins, AllowedOrigins::List(vec![]));
        assert!(!format!("{required:?}").contains(secret));
        let short_previous = AuthConfig::from_vars(&from_pairs(&[
            ("AUTH_MODE", "required"),
            ("JWT_SECRET", secret),
            ("JWT_SECRET_PREVIOUS", "old-short"),
        ]));
        let error = short_previous.unwrap_err().to_string();
        assert!(
            error.contains("JWT_SECRET_PREVIOUS") && !error.contains("old-short"),
            "{error}"
        );
        assert!(AuthConfig::from_vars(&from_pairs(&[("AUTH_MODE", "open")])).is_err());
    }

    /// The node's own origin is always allowed; others only when listed (or `*`).
    #[test]
    fn origins_are_checked_against_the_list_and_the_host() {
        let list = AllowedOrigins::List(vec!["https://chat.example".into()]);
        assert!(list.allows("https://chat.example", Some("api.example")));
        assert!(list.allows("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(!list.allows("https://evil.example", Some("api.example")));
        assert!(!list.allows("null", None));
        assert!(AllowedOrigins::Any.allows("https://evil.example", None));
        let vars = from_pairs(&[("CORS_ALLOWED_ORIGINS", "https://a.example/, http://b:1")]);
        let config = AuthConfig::from_vars(&vars).unwrap();
        assert_eq!(
            config.allowed_origins,
            AllowedOrigins::List(vec!["https://a.example".into(), "http://b:1".into()])
        );
        let bad = from_pairs(&[("CORS_ALLOWED_ORIGINS", "chat.example")]);
        assert!(AuthConfig::from_vars(&bad).is_err());
    }
}
