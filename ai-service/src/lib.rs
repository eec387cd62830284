//! The AI node: accepts chats over HTTP and streams simulated answers through Redis.
//!
//! # Layout
//! - `config.rs`: [`Config`], read once from the environment.
//! - `routes.rs`: the HTTP API (`GET /`, `GET /health`, `POST /chat`, plus the shared history
//!   and cancel endpoints from `http-api`).
//! - `streamer.rs`: [`Streamer`], one task per answer, chunk after chunk through Redis.
//! - `simulator.rs`: the canned answers and how they are cut into deltas.

use anyhow::Context;
use history::HistoryReader;
use redis_state::ChatState;
use store::{Store, StoreWriter};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

mod config;
mod routes;
pub mod simulator;
mod streamer;

pub use config::Config;
pub use routes::{AppState, router};
pub use streamer::{CANCELLED_SUFFIX, Streamer};

/// Serves the AI node on `listener` until `shutdown` is cancelled, then lets running answers
/// finish (up to the configured grace period).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = ChatState::connect(&config.redis_url)
        .await
        .with_context(|| format!("connecting to Redis at {}", config.redis_url))?;
    let store = Store::connect(&config.persistence.database_url)
        .await
        .with_context(|| format!("opening DATABASE_URL {}", config.persistence.database_url))?;
    let writer = StoreWriter::start(store.clone());
    let history = HistoryReader::new(
        state.clone(),
        store,
        config.persistence.cache_l1_max_size,
        config.persistence.cache_l1_ttl,
    );
    let streamer = Streamer::new(
        state.clone(),
        history.clone(),
        writer.clone(),
        config.node_id.clone(),
        config.stream_delay,
        config.lease_secs,
    );
    let app = AppState {
        state,
        history,
        streamer: streamer.clone(),
        node_id: config.node_id.clone(),
    };
    tokio::spawn(redis_state::run_reaper(
        app.state.clone(),
        redis_state::REAPER_INTERVAL,
        shutdown.clone(),
        move |failed| writer.answer(failed, "STREAM_ERROR"),
    ));
    info!(addr = %listener.local_addr()?, "AI service listening");
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("serving HTTP")?;
    streamer.drain(config.shutdown_grace).await;
    info!("AI service stopped");
    Ok(())
}
