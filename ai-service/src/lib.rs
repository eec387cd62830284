//! The AI node: accepts chats over HTTP and streams answers (simulated, or from a model server)
//! through Redis.
//!
//! # Layout
//! - `config.rs`: [`Config`], read once from the environment.
//! - `state.rs`: [`AppState`], the handles every request shares.
//! - `routes.rs`: the HTTP API (`GET /`, `GET /health`, `POST /chat`, plus the shared history
//!   and cancel endpoints from `http-api`).
//! - `streamer.rs`: [`Streamer`], one task per answer, chunk after chunk through Redis.
//! - `provider/`: where the text comes from ([`provider::Provider`]): the simulator, or an
//!   OpenAI-compatible model server (`AI_PROVIDER`).
//! - `stats.rs`: the node's metrics.
//! - `simulator.rs`: the canned answers and how they are cut into deltas.
//! - `replay.rs`: [`replay`], `ai-service replay --from-beginning`: the SQL store rebuilt from
//!   the `chat-events` topic.

use anyhow::Context;
use node::Core;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::limit::ChatLimit;

mod config;
mod limit;
pub mod provider;
mod replay;
mod routes;
pub mod simulator;
mod state;
mod stats;
mod streamer;

pub use config::{AiConfig, ApiKey, Config, OpenAiConfig, ProviderConfig};
pub use replay::replay;
pub use routes::router;
pub use state::AppState;
pub use streamer::{CANCELLED_SUFFIX, Streamer, UPSTREAM_ERROR_TEXT};

/// Serves the AI node on `listener` until `shutdown` is cancelled, then lets running answers
/// finish (up to the configured grace period).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let core = Core::connect(&config.node, &shutdown).await?;
    core.start_relay(
        config.node.kafka.as_ref(),
        &config.node.redis,
        shutdown.clone(),
    )?;
    let settings = config.service;
    let provider = provider::from_config(&settings.provider, settings.stream_delay)?;
    let streamer = Streamer::new(core.clone(), provider, settings.lease_secs);
    let app = AppState {
        health: core.health(),
        chat_limit: ChatLimit::new(core.state.clone(), settings.chat_rate_limit_per_minute),
        core,
        streamer: streamer.clone(),
    };
    info!(addr = %listener.local_addr()?, "AI service listening");
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("serving HTTP")?;
    streamer.drain(settings.shutdown_grace).await;
    info!("AI service stopped");
    Ok(())
}
