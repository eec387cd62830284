//! The gateway node: browsers' WebSockets and REST API.
//!
//! # Layout
//! - `config.rs`: [`Config`], read once from the environment.
//! - `routes.rs`: the HTTP surface: `/ws/chat`, `/api/*`, `/health`, `/metrics`.
//! - `socket/`: one WebSocket's life: handshake, reader (`client.rs`), single writer
//!   (`writer.rs`) and its delivery filter (`filter.rs`).
//! - `hub.rs`: local sockets per session, and the fan-out of bus frames to them.
//! - `ai_client.rs`: forwarding chats to AI nodes, round robin with failover.
//! - `stats.rs`: the node's counters.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bus::{Bus, RedisBus};
use history::HistoryReader;
use protocol::rest::{ChatAccepted, ChatRequest};
use protocol::{SessionId, UserId};
use redis_state::ChatState;
use store::{Store, StoreWriter};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

mod ai_client;
mod config;
mod hub;
mod routes;
mod socket;
mod stats;

pub use ai_client::{AiClient, ForwardError};
pub use config::Config;
pub use hub::Hub;
pub use routes::router;
pub use stats::Stats;

/// How long open sockets get to take their close frame at shutdown.
const SOCKET_DRAIN: Duration = Duration::from_secs(5);

/// Handles shared by every request and socket; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub state: ChatState,
    /// History reads: L1 → Redis → SQL.
    pub history: HistoryReader,
    /// SQL writes this node makes (answers its reaper fails).
    pub writer: StoreWriter,
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
    pub ai: Arc<AiClient>,
    pub stats: Arc<Stats>,
    /// Every socket task, so shutdown can wait for their close frames.
    pub sockets: TaskTracker,
    /// Cancelled when the node shuts down; every socket watches it.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Connects to Redis (state and bus) and builds the node's handles.
    pub async fn connect(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let stats = Arc::new(Stats::default());
        let hub = Arc::new(Hub::new(stats.clone()));
        let client = redis::Client::open(config.redis_url.as_str())
            .with_context(|| format!("REDIS_URL {}", config.redis_url))?;
        let bus = RedisBus::start(client, hub.clone(), shutdown.clone())
            .await
            .with_context(|| format!("connecting the pub/sub bus to {}", config.redis_url))?;
        let state = ChatState::connect(&config.redis_url)
            .await
            .with_context(|| format!("connecting to Redis at {}", config.redis_url))?;
        let store = Store::connect(&config.persistence.database_url)
            .await
            .with_context(|| format!("opening DATABASE_URL {}", config.persistence.database_url))?;
        let history = HistoryReader::new(
            state.clone(),
            store.clone(),
            config.persistence.cache_l1_max_size,
            config.persistence.cache_l1_ttl,
        );
        let writer = StoreWriter::start(store);
        let ai = AiClient::new(
            config.ai_service_urls.clone(),
            config.ai_request_timeout,
            stats.clone(),
        )
        .context("building the AI client")?;
        Ok(Self {
            config: Arc::new(config),
            state,
            history,
            writer,
            hub,
            bus: Arc::new(bus),
            ai: Arc::new(ai),
            stats,
            sockets: TaskTracker::new(),
            shutdown,
        })
    }

    /// Forwards a validated chat to an AI node.
    pub async fn forward_chat(
        &self,
        session: &SessionId,
        user: &UserId,
        text: String,
    ) -> Result<ChatAccepted, ForwardError> {
        let request = ChatRequest {
            session_id: session.to_string(),
            message: text,
            user_id: user.to_string(),
        };
        let accepted = self.ai.chat(&request).await?;
        Stats::inc(&self.stats.chats_forwarded);
        Ok(accepted)
    }
}

/// Serves the gateway on `listener` until `shutdown` is cancelled, then closes every socket
/// with 1001.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = AppState::connect(config, shutdown.clone()).await?;
    let sockets = app.sockets.clone();
    let flush = app.writer.clone();
    let writer = app.writer.clone();
    tokio::spawn(redis_state::run_reaper(
        app.state.clone(),
        redis_state::REAPER_INTERVAL,
        shutdown.clone(),
        move |failed| writer.answer(failed, "STREAM_ERROR"),
    ));
    if !std::path::Path::new(&app.config.static_dir)
        .join("index.html")
        .exists()
    {
        info!(static_dir = %app.config.static_dir, "no browser app to serve at / (build frontend/)");
    }
    info!(addr = %listener.local_addr()?, ai_nodes = ?app.ai.urls(), "gateway listening");
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("serving HTTP")?;
    sockets.close();
    if tokio::time::timeout(SOCKET_DRAIN, sockets.wait())
        .await
        .is_err()
    {
        info!(
            open = sockets.len(),
            "sockets still open after the drain period"
        );
    }
    if tokio::time::timeout(SOCKET_DRAIN, flush.flush())
        .await
        .is_err()
    {
        info!("SQL writes still queued at shutdown; they are lost");
    }
    info!("gateway stopped");
    Ok(())
}
