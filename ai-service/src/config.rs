//! The AI node's configuration, read once from the environment.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use node::{NodeDefaults, ServiceConfig};
use runtime::env::{BadVar, parse_or, string_or};

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
    /// `AI_PROVIDER`, default `simulator`: where answers come from.
    pub provider: ProviderConfig,
}

/// Where the node's answers come from (`AI_PROVIDER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderConfig {
    /// `simulator`: canned answers, one word every `STREAM_DELAY_MS`; no network.
    Simulator,
    /// `openai`: an OpenAI-compatible Chat Completions server, streamed.
    OpenAi(OpenAiConfig),
}

/// The `openai` provider's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiConfig {
    /// `OPENAI_BASE_URL`, default `https://api.openai.com/v1`: the answer is asked of
    /// `{base}/chat/completions`.
    pub base_url: String,
    /// `OPENAI_MODEL`, required: the `model` of every request.
    pub model: String,
    /// `OPENAI_API_KEY`, optional: sent as `Authorization: Bearer ...` when set.
    pub api_key: Option<ApiKey>,
    /// `OPENAI_MAX_TOKENS`, optional: the `max_tokens` of every request (unset: the server's
    /// own limit).
    pub max_tokens: Option<u32>,
    /// `AI_SYSTEM_PROMPT`, optional: the first message of every request, as `system`.
    pub system_prompt: Option<String>,
    /// `AI_CONTEXT_MESSAGES`, default 20: at most how many of the session's latest messages
    /// (whole exchanges: a question and its completed answer) go with the new one.
    pub context_messages: usize,
    /// `AI_CONTEXT_CHARS`, default 32000: at most how many characters of them, so that a long
    /// conversation does not overflow the model's context window.
    pub context_chars: usize,
    /// `AI_FIRST_TOKEN_TIMEOUT_MS`, default 30000: the answer fails when no token has come
    /// this long after it was asked for (retries included).
    pub first_token_timeout: Duration,
    /// `AI_IDLE_TIMEOUT_MS`, default 30000: the answer fails when no token comes this long
    /// after the previous one.
    pub idle_timeout: Duration,
}

/// An API key. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ProviderConfig {
    fn from_vars(vars: &HashMap<String, String>) -> Result<Self, BadVar> {
        let name = string_or(vars, "AI_PROVIDER", "simulator");
        match name.as_str() {
            "simulator" => Ok(ProviderConfig::Simulator),
            "openai" => OpenAiConfig::from_vars(vars).map(ProviderConfig::OpenAi),
            _ => Err(BadVar {
                name: "AI_PROVIDER",
                value: name,
                reason: "must be simulator or openai".into(),
            }),
        }
    }
}

impl OpenAiConfig {
    fn from_vars(vars: &HashMap<String, String>) -> Result<Self, BadVar> {
        let base_url = string_or(vars, "OPENAI_BASE_URL", "https://api.openai.com/v1");
        let base_url = base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://"))
            || reqwest::Url::parse(&base_url).is_err()
        {
            return Err(BadVar {
                name: "OPENAI_BASE_URL",
                value: base_url,
                reason: "must be an http:// or https:// URL, e.g. http://127.0.0.1:11434/v1".into(),
            });
        }
        let model = string_or(vars, "OPENAI_MODEL", "");
        if model.is_empty() {
            return Err(BadVar {
                name: "OPENAI_MODEL",
                value: model,
                reason: "is required with AI_PROVIDER=openai (the model's name on its server)"
                    .into(),
            });
        }
        let optional = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let max_tokens = match optional("OPENAI_MAX_TOKENS") {
            None => None,
            Some(_) => Some(parse_or(vars, "OPENAI_MAX_TOKENS", 0u32)?).filter(|n| *n > 0),
        };
        // Below the lifetime of a streaming answer's keys, which a wait does not renew.
        let max_ms = protocol::keys::LIVE_STREAM_TTL_SECS * 1000 / 2;
        let timeout = |name: &'static str| -> Result<Duration, BadVar> {
            let ms = parse_or(vars, name, 30_000u64)?;
            if ms == 0 || ms > max_ms {
                return Err(BadVar {
                    name,
                    value: ms.to_string(),
                    reason: format!("must be 1..={max_ms}"),
                });
            }
            Ok(Duration::from_millis(ms))
        };
        Ok(Self {
            base_url,
            model,
            api_key: optional("OPENAI_API_KEY").map(ApiKey),
            max_tokens,
            // Kept as written (a prompt may end with a newline on purpose).
            system_prompt: vars
                .get("AI_SYSTEM_PROMPT")
                .filter(|v| !v.trim().is_empty())
                .cloned(),
            context_messages: parse_or(vars, "AI_CONTEXT_MESSAGES", 20usize)?,
            context_chars: parse_or(vars, "AI_CONTEXT_CHARS", 32_000usize)?,
            first_token_timeout: timeout("AI_FIRST_TOKEN_TIMEOUT_MS")?,
            idle_timeout: timeout("AI_IDLE_TIMEOUT_MS")?,
        })
    }
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
        // The lease is refreshed by the chunks (at least every tenth of it), so it must comfortably
        // outlast one interval.
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
            provider: ProviderConfig::from_vars(vars)?,
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
        assert_eq!(c.service.provider, ProviderConfig::Simulator);
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

    /// `AI_PROVIDER=openai` needs a model; its defaults are those documented; the key never
    /// shows in `Debug`.
    #[test]
    fn the_openai_provider_is_read_and_checked() {
        let missing_model = vars(&[("AI_PROVIDER", "openai")]);
        let err = Config::from_vars(&missing_model).unwrap_err();
        assert_eq!(err.name, "OPENAI_MODEL");
        let c = Config::from_vars(&vars(&[
            ("AI_PROVIDER", "openai"),
            ("OPENAI_MODEL", "gemma3"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1/"),
            ("OPENAI_API_KEY", "sk-very-secret"),
        ]))
        .unwrap();
        let ProviderConfig::OpenAi(openai) = &c.service.provider else {
            panic!("not openai: {:?}", c.service.provider);
        };
        assert_eq!(openai.base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(openai.model, "gemma3");
        assert_eq!(openai.context_messages, 20);
        assert_eq!(openai.context_chars, 32_000);
        assert_eq!(openai.first_token_timeout, Duration::from_secs(30));
        assert_eq!(openai.idle_timeout, Duration::from_secs(30));
        assert_eq!(openai.max_tokens, None);
        assert_eq!(
            openai.api_key.as_ref().map(ApiKey::expose),
            Some("sk-very-secret")
        );
        assert!(!format!("{c:?}").contains("very-secret"));
        for (name, value) in [
            ("AI_PROVIDER", "gpt"),
            ("OPENAI_BASE_URL", "127.0.0.1:11434"),
            ("AI_IDLE_TIMEOUT_MS", "0"),
            ("AI_FIRST_TOKEN_TIMEOUT_MS", "3600000"),
            ("AI_CONTEXT_MESSAGES", "-1"),
        ] {
            let mut bad = vars(&[("AI_PROVIDER", "openai"), ("OPENAI_MODEL", "m")]);
            bad.insert(name.into(), value.into());
            assert_eq!(
                Config::from_vars(&bad).unwrap_err().name,
                name,
                "{name}={value}"
            );
        }
    }
}
