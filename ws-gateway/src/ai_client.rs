//! Forwarding chats to AI nodes: client-side round robin over `AI_SERVICE_URLS`.
//!
//! A request is moved to the next node only when it certainly did not start an answer: the
//! connection was refused, or the node answered 5xx (an AI node answers 5xx only when it did
//! not take the session's lease). A timeout is not retried, since the first node may have
//! started streaming; the lease would turn a duplicate into a 409 anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{StatusCode, header};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http_api::AppError;
use node::{Probe, ProbeStatus};
use protocol::ErrorCode;
use protocol::rest::{ChatAccepted, ChatRequest, ErrorBody};
use tracing::{info, warn};

use crate::stats::Stats;
use runtime::trace::TraceParent;

/// Why a chat was not accepted.
#[derive(Debug)]
pub enum ForwardError {
    /// An AI node refused it (4xx): its status and body, to pass on to the client.
    Rejected { status: StatusCode, body: ErrorBody },
    /// No AI node took it.
    Unavailable(String),
    /// The user sent too many chats (the AI node said 429); the next one may go after this
    /// many seconds.
    RateLimited { retry_after_secs: u64 },
}

impl From<ForwardError> for AppError {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::Rejected { status, body } => AppError::Refused { status, body },
            ForwardError::Unavailable(why) => AppError::AiUnavailable(why),
            ForwardError::RateLimited { retry_after_secs } => AppError::RateLimited {
                retry_after_secs,
                message: rate_limited_text(retry_after_secs),
            },
        }
    }
}

impl ForwardError {
    /// The code the caller is given.
    pub fn code(&self) -> ErrorCode {
        match self {
            ForwardError::Rejected { body, .. } => body.code,
            ForwardError::Unavailable(_) => ErrorCode::AiUnavailable,
            ForwardError::RateLimited { .. } => ErrorCode::RateLimited,
        }
    }

    /// What a socket's client is told, in an `error` frame.
    pub fn into_body(self) -> ErrorBody {
        match self {
            ForwardError::Rejected { body, .. } => body,
            ForwardError::Unavailable(why) => ErrorBody {
                error: why,
                code: ErrorCode::AiUnavailable,
            },
            ForwardError::RateLimited { retry_after_secs } => ErrorBody {
                error: rate_limited_text(retry_after_secs),
                code: ErrorCode::RateLimited,
            },
        }
    }
}

fn rate_limited_text(retry_after_secs: u64) -> String {
    format!("too many chats; retry in {retry_after_secs} s")
}

/// Round-robin client of the AI nodes.
pub struct AiClient {
    urls: Vec<String>,
    /// The node the next request starts with.
    next: AtomicUsize,
    http: reqwest::Client,
    stats: Arc<Stats>,
}

impl AiClient {
    pub fn new(urls: Vec<String>, timeout: Duration, stats: Arc<Stats>) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            // AI nodes are internal: never route to them through a proxy from the environment.
            .no_proxy()
            .build()?;
        Ok(Self {
            urls,
            next: AtomicUsize::new(0),
            http,
            stats,
        })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Sends `request` to the next AI node, moving on to the following ones on connection
    /// errors and 5xx. `token`, when given, vouches for the user to the AI node.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        token: Option<&str>,
        trace: &TraceParent,
    ) -> Result<ChatAccepted, ForwardError> {
        let outcome = self.forward(request, token, trace).await;
        match &outcome {
            Ok(accepted) => {
                self.stats.chats_forwarded.increment(1);
                self.stats.chat("accepted");
                info!(session_id = %accepted.session_id, message_id = %accepted.message_id,
                    ai_node = %accepted.node_id, "chat accepted by an AI node");
            }
            Err(refused) => self.stats.chat(refused.code().as_str()),
        }
        outcome
    }

    async fn forward(
        &self,
        request: &ChatRequest,
        token: Option<&str>,
        trace: &TraceParent,
    ) -> Result<ChatAccepted, ForwardError> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut failures = Vec::new();
        let mut refusal = None;
        for k in 0..self.urls.len() {
            let base = &self.urls[(first + k) % self.urls.len()];
            let traceparent = runtime::trace::outgoing(&tracing::Span::current(), trace);
            let mut post = self
                .http
                .post(format!("{base}/chat"))
                .header(runtime::trace::TRACEPARENT, traceparent.to_string())
                .json(request);
            if let Some(token) = token {
                post = post.bearer_auth(token);
            }
            let started = std::time::Instant::now();
            let sent = post.send().await;
            self.stats.ai_request.record(started.elapsed());
            let response = match sent {
                Ok(response) => response,
                Err(e) if e.is_connect() => {
                    warn!(ai_node = %base, cause = %e, "AI node unreachable; trying the next");
                    self.stats.ai_failovers.increment(1);
                    failures.push(format!("{base}: unreachable"));
                    continue;
                }
                Err(e) => {
                    // It may have reached the node: do not start a second answer elsewhere.
                    return Err(ForwardError::Unavailable(format!(
                        "AI node {base} did not answer in time: {e}"
                    )));
                }
            };
            let status = response.status();
            if status.is_server_error() {
                warn!(ai_node = %base, %status, "AI node failed; trying the next");
                self.stats.ai_failovers.increment(1);
                failures.push(format!("{base}: {status}"));
                // A node that says why (its storage is unavailable) speaks for all of them
                // if none takes the chat.
                if let Ok(body) = response.json::<ErrorBody>().await {
                    refusal = Some((status, body));
                }
                continue;
            }
            if status.is_success() {
                return response.json::<ChatAccepted>().await.map_err(|e| {
                    ForwardError::Unavailable(format!("AI node {base} answered garbage: {e}"))
                });
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after_secs = response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(1);
                return Err(ForwardError::RateLimited { retry_after_secs });
            }
            let body = response.json::<ErrorBody>().await.unwrap_or(ErrorBody {
                error: format!("AI node refused the chat ({status})"),
                code: ErrorCode::BadRequest,
            });
            return Err(ForwardError::Rejected { status, body });
        }
        if let Some((status, body)) = refusal {
            return Err(ForwardError::Rejected { status, body });
        }
        Err(ForwardError::Unavailable(format!(
            "no AI node took the chat ({})",
            failures.join("; ")
        )))
    }

    /// How many AI nodes answer `GET /health` with 200 right now.
    pub async fn healthy_nodes(&self) -> usize {
        let checks = self.urls.iter().map(|base| async move {
            self.http
                .get(format!("{base}/health"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .filter(|up| *up)
            .count()
    }
}

/// The gateway's `ai` health component: up while at least one AI node answers.
pub struct AiProbe(pub Arc<AiClient>);

impl Probe for AiProbe {
    fn name(&self) -> &'static str {
        "ai"
    }

    fn check(&self) -> BoxFuture<'_, ProbeStatus> {
        async move {
            let up = self.0.healthy_nodes().await;
            ProbeStatus {
                detail: Some(format!("{up}/{} nodes", self.0.urls.len())),
                ..ProbeStatus::up_if(up > 0)
            }
        }
        .boxed()
    }
}
