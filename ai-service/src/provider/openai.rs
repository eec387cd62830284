//! [`OpenAi`]: answers streamed from an OpenAI-compatible Chat Completions server (OpenAI,
//! vLLM, Ollama, llama.cpp's `llama-server`, LM Studio, LiteLLM, ...).
//!
//! `POST {OPENAI_BASE_URL}/chat/completions` with `stream: true`; the response is server-sent
//! events, each `data:` a JSON chunk whose `choices[0].delta.content` is the next delta, ended
//! by `data: [DONE]` (or by a chunk with a `finish_reason`, for servers that send no `[DONE]`).
//! The events are parsed by `eventsource-stream` over the raw body, so an event, a line or a
//! UTF-8 character split across TCP reads is put back together before it is read.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use protocol::{MessageMetadata, Role, Usage};
use serde::Deserialize;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Answer, Piece, Prompt, Provider, ProviderError};
use crate::config::OpenAiConfig;

/// Requests tried per answer before its first token (the first and two retries), within the
/// first-token timeout. Nothing is retried once a token has arrived: the answer has started.
const MAX_ATTEMPTS: u32 = 3;
/// The pause before the first retry; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After a `finish_reason`, how long to wait for the usage chunk and `[DONE]` that may follow
/// before the (complete) answer is ended anyway.
const AFTER_FINISH: Duration = Duration::from_secs(2);
/// How much of an HTTP error's body is logged.
const ERROR_BODY_LOGGED: usize = 500;
/// How much of an HTTP error's body is read at most.
const ERROR_BODY_READ: usize = 4096;
/// After `[DONE]`, how long to wait for the body's end, so that the connection goes back to
/// the pool for the next answer (instead of a new TCP and TLS handshake).
const DRAIN_AFTER_DONE: Duration = Duration::from_millis(50);

/// An OpenAI-compatible streaming provider. Cheap to share: one HTTP client (with its
/// connection pool) for every answer.
pub struct OpenAi {
    client: reqwest::Client,
    url: String,
    config: OpenAiConfig,
}

impl OpenAi {
    pub fn new(config: OpenAiConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            url: format!("{}/chat/completions", config.base_url),
            client,
            config,
        })
    }

    /// The request body for `prompt`.
    fn body(&self, prompt: &Prompt) -> serde_json::Value {
        let role = |role: Role| match role {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        };
        let mut messages = Vec::with_capacity(prompt.context.len() + 2);
        if let Some(system) = &self.config.system_prompt {
            messages.push(serde_json::json!({"role": "system", "content": system}));
        }
        for (r, content) in &prompt.context {
            messages.push(serde_json::json!({"role": role(*r), "content": content}));
        }
        messages.push(serde_json::json!({"role": "user", "content": prompt.message}));
        let mut body = serde_json::json!({
            "model": self.config.model,
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": messages,
        });
        if let Some(max) = self.config.max_tokens {
            body["max_tokens"] = max.into();
        }
        body
    }
}

impl Provider for OpenAi {
    fn answer(&self, prompt: Prompt) -> Answer {
        let now = Instant::now();
        let upstream = Upstream {
            client: self.client.clone(),
            url: self.url.clone(),
            api_key: self.config.api_key.as_ref().map(|k| k.expose().to_owned()),
            body: serde_json::to_vec(&self.body(&prompt)).unwrap_or_default(),
            first_token_by: now + self.config.first_token_timeout,
            first_token_timeout: self.config.first_token_timeout,
            idle_timeout: self.config.idle_timeout,
            attempts: 0,
            events: None,
            pending: VecDeque::new(),
            got_token: false,
            last_token_at: now,
            finished: false,
            finished_by: now,
            done: false,
            metadata: MessageMetadata::default(),
        };
        futures_util::stream::unfold(upstream, |mut upstream| async move {
            let item = upstream.next().await?;
            Some((item, upstream))
        })
        .boxed()
    }

    fn context_limits(&self) -> (usize, usize) {
        (self.config.context_messages, self.config.context_chars)
    }

    fn may_stall(&self) -> bool {
        true
    }
}

type Events = Pin<
    Box<
        dyn Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// One answer's request to the model server, and what it has read so far.
struct Upstream {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    body: Vec<u8>,
    /// When the first token must have come by.
    first_token_by: Instant,
    first_token_timeout: Duration,
    idle_timeout: Duration,
    /// Requests sent so far.
    attempts: u32,
    /// The response's events, once a request was answered 200.
    events: Option<Events>,
    /// Pieces read but not handed out yet.
    pending: VecDeque<Piece>,
    /// Whether a content token has come (from then on nothing is retried).
    got_token: bool,
    /// When the last content token came (events without one do not count).
    last_token_at: Instant,
    /// Whether a `finish_reason` has come: the text is complete.
    finished: bool,
    /// Once finished: when to stop waiting for the usage chunk and `[DONE]`.
    finished_by: Instant,
    /// Whether the stream has ended (completed or failed).
    done: bool,
    metadata: MessageMetadata,
}

/// One `data:` chunk of the stream (only the fields read; the rest is ignored).
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<UsageJson>,
    /// Some servers report a failure mid-stream as an event with an `error` object.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    total_tokens: Option<u32>,
}

impl Upstream {
    /// The next piece, `None` once the answer is complete, or the error that ended it.
    async fn next(&mut self) -> Option<Result<Piece, ProviderError>> {
        loop {
            if let Some(piece) = self.pending.pop_front() {
                return Some(Ok(piece));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.step().await {
                // Before the first token nothing has been shown: ask again if the failure
                // may pass and there is time. After it, the answer ends here.
                if !self.got_token && retryable(&e) && self.attempts < MAX_ATTEMPTS {
                    let pause = FIRST_BACKOFF * 2u32.pow(self.attempts - 1);
                    if Instant::now() + pause < self.first_token_by {
                        warn!(cause = %e, attempt = self.attempts, "the model server failed before the first token; retrying");
                        self.events = None;
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                }
                self.done = true;
                self.events = None;
                return Some(Err(e));
            }
        }
    }

    /// Sends the request when none is open, then reads one event (or the end).
    async fn step(&mut self) -> Result<(), ProviderError> {
        if self.events.is_none() {
            self.events = Some(self.connect().await?);
        }
        // Measured from the last token, not the last event: a server sending events without
        // text (keep-alives, empty deltas) still times out.
        let deadline = if self.finished {
            self.finished_by
        } else if self.got_token {
            self.last_token_at + self.idle_timeout
        } else {
            self.first_token_by
        };
        let Some(events) = self.events.as_mut() else {
            return Ok(());
        };
        let read = tokio::time::timeout_at(deadline, events.next()).await;
        match read {
            Err(_) if self.finished => self.end(),
            Err(_) if self.got_token => Err(ProviderError::IdleTimeout(self.idle_timeout)),
            Err(_) => Err(ProviderError::FirstTokenTimeout(self.first_token_timeout)),
            Ok(None) if self.finished => self.end(),
            Ok(None) => Err(ProviderError::Dropped(
                "the body ended without [DONE] or a finish_reason".into(),
            )),
            // Once the text is complete, a connection that breaks (or garbage) before
            // `[DONE]` loses nothing.
            Ok(Some(Err(_))) if self.finished => self.end(),
            Ok(Some(Err(eventsource_stream::EventStreamError::Transport(e)))) => {
                Err(ProviderError::Dropped(error_chain(&e)))
            }
            Ok(Some(Err(e))) => Err(ProviderError::Malformed(e.to_string())),
            Ok(Some(Ok(event))) if event.data.trim() == "[DONE]" => {
                if let Some(events) = self.events.as_mut() {
                    let _ = tokio::time::timeout(DRAIN_AFTER_DONE, async {
                        while events.next().await.is_some() {}
                    })
                    .await;
                }
                self.end()
            }
            Ok(Some(Ok(event))) => match self.read(&event.data) {
                Err(e) if self.finished => {
                    debug!(cause = %e, "ignoring what came after the finish_reason");
                    self.end()
                }
                read => read,
            },
        }
    }

    /// Sends the request; the response's events once it is answered 200 with an event stream.
    async fn connect(&mut self) -> Result<Events, ProviderError> {
        self.attempts += 1;
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(self.body.clone());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = match tokio::time::timeout_at(self.first_token_by, request.send()).await {
            Err(_) => return Err(ProviderError::FirstTokenTimeout(self.first_token_timeout)),
            Ok(Err(e)) => return Err(ProviderError::Connect(error_chain(&e))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            // For the log: the first few KB, read for at most 2 s.
            let mut body = Vec::new();
            let mut response = response;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while body.len() < ERROR_BODY_READ
                    && let Ok(Some(chunk)) = response.chunk().await
                {
                    body.extend_from_slice(&chunk);
                }
            })
            .await;
            let body = String::from_utf8_lossy(&body);
            return Err(ProviderError::Status {
                status: status.as_u16(),
                body: truncate(body.trim(), ERROR_BODY_LOGGED),
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.starts_with("text/event-stream") {
            return Err(ProviderError::Malformed(format!(
                "expected text/event-stream, got content-type {content_type:?}"
            )));
        }
        debug!(attempt = self.attempts, "the model server is streaming");
        Ok(response.bytes_stream().eventsource().boxed())
    }

    /// Reads one event's data (not `[DONE]`).
    fn read(&mut self, data: &str) -> Result<(), ProviderError> {
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| ProviderError::Malformed(format!("{e} in {:?}", truncate(data, 200))))?;
        if let Some(error) = chunk.error {
            return Err(ProviderError::Status {
                status: 200,
                body: truncate(&error.to_string(), ERROR_BODY_LOGGED),
            });
        }
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            self.metadata.model = Some(model);
        }
        if let Some(usage) = chunk.usage {
            self.metadata.usage = Some(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage
                    .total_tokens
                    .unwrap_or(usage.prompt_tokens + usage.completion_tokens),
            });
        }
        // Only the first choice is read (one is asked for); after a `finish_reason` the text
        // is complete and anything more is ignored.
        if let Some(choice) = chunk.choices.into_iter().next()
            && !self.finished
        {
            if let Some(text) = choice.delta.and_then(|d| d.content)
                && !text.is_empty()
            {
                self.got_token = true;
                self.last_token_at = Instant::now();
                self.pending.push_back(Piece::Text(Cow::Owned(text)));
            }
            if choice.finish_reason.is_some() {
                self.finished = true;
                self.finished_by = Instant::now() + AFTER_FINISH.min(self.idle_timeout);
            }
        }
        Ok(())
    }

    /// The answer is complete: hands out the metadata and stops reading (dropping the
    /// connection).
    fn end(&mut self) -> Result<(), ProviderError> {
        self.done = true;
        self.events = None;
        let metadata = std::mem::take(&mut self.metadata);
        if metadata != MessageMetadata::default() {
            self.pending.push_back(Piece::Metadata(metadata));
        }
        Ok(())
    }
}

/// Whether asking again may help: the server could not be reached, was overloaded or failed
/// (429, 408, 5xx), or cut the stream off before any token.
fn retryable(e: &ProviderError) -> bool {
    match e {
        ProviderError::Connect(_) | ProviderError::Dropped(_) => true,
        ProviderError::Status { status, .. } => {
            *status == 408 || *status == 429 || (500..600).contains(status)
        }
        ProviderError::FirstTokenTimeout(_)
        | ProviderError::IdleTimeout(_)
        | ProviderError::Malformed(_) => false,
    }
}

/// An error with its causes ("error sending request: connection refused"), for the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body names the model, asks for a stream with usage, and puts the system prompt, the
    /// context and the new message in order.
    #[test]
    fn the_request_body_has_the_prompt_in_order() {
        let provider = OpenAi::new(OpenAiConfig {
            base_url: "http://127.0.0.1:1/v1".into(),
            model: "m".into(),
            api_key: None,
            max_tokens: Some(64),
            system_prompt: Some("Be brief.".into()),
            context_messages: 20,
            context_chars: 32_000,
            first_token_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        })
        .unwrap();
        let body = provider.body(&Prompt {
            context: vec![(Role::User, "hi".into()), (Role::Assistant, "hello".into())],
            message: "and now?".into(),
        });
        assert_eq!(
            body,
            serde_json::json!({
                "model": "m", "stream": true, "stream_options": {"include_usage": true},
                "max_tokens": 64,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "and now?"},
                ],
            })
        );
        assert_eq!(provider.url, "http://127.0.0.1:1/v1/chat/completions");
    }

    /// Truncation never cuts a character in two.
    #[test]
    fn truncate_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 2), "h...");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
