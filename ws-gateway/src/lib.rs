//! The gateway node: browsers' WebSockets and REST API.
//!
//! # Layout
//! - `config.rs`: [`Config`], read once from the environment.
//! - `state.rs`: [`AppState`], the handles every request and socket shares.
//! - `routes.rs`: the HTTP surface: `/ws/chat`, `/api/*`, `/health`, `/metrics`.
//! - `socket/`: the node's WebSockets: the hub (local sockets per session, fed by the bus), and
//!   each socket's handshake, reader, single writer, queue and delivery filter, generic over
//!   the socket and the [`socket::Backend`] it talks to.
//! - `gate.rs`: what a chat passes before an AI node gets it (the user's rate limit, a token
//!   vouching for the user).
//! - `ai_client.rs`: forwarding chats to AI nodes, round robin with failover.
//! - `stats.rs`: the node's counters.

use std::future::IntoFuture;
use std::time::Duration;

use anyhow::Context;
use node::Core;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

mod ai_client;
mod config;
mod gate;
mod owners;
mod routes;
pub mod socket;
mod state;
mod stats;

pub use ai_client::{AiClient, ForwardError};
pub use config::{Config, GatewayConfig};
pub use routes::router;
pub use socket::Hub;
pub use state::AppState;
pub use stats::Stats;

/// A token for `user` from the settings in `vars` (`JWT_SECRET`, `JWT_EXPIRATION_MS`; dev
/// mode's built-in secret when no secret is set): `ws-gateway token --user alice`.
pub fn mint_token(
    vars: &std::collections::HashMap<String, String>,
    user: &str,
) -> anyhow::Result<String> {
    let config = auth::AuthConfig::from_vars(vars).context("configuration")?;
    let user = protocol::UserId::parse(user).context("--user")?;
    let authenticator = auth::Authenticator::new(&config).context("JWT_SECRET")?;
    Ok(authenticator.mint(&user))
}

/// Serves the gateway on `listener` until `shutdown` is cancelled (SIGTERM), then drains: the
/// node turns not-ready (`/health/ready` 503), refuses new sockets (503, so NGINX tries the
/// next node), closes the open ones with 1012 (the browser reconnects at once, elsewhere),
/// stops serving HTTP and flushes its SQL writes, all within `SHUTDOWN_GRACE_SECONDS`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let static_dir = &config.service.static_dir;
    if !std::path::Path::new(static_dir).join("index.html").exists() {
        info!(%static_dir, "no browser app to serve at / (build frontend/)");
    }
    let grace = config.service.shutdown_grace;
    let core = Core::connect(&config.node, &shutdown).await?;
    let app = AppState::connect(config, core.clone(), shutdown.clone()).await?;
    let (sockets, drain) = (app.socket_tasks.clone(), app.clone());
    info!(addr = %listener.local_addr()?, ai_nodes = ?app.ai.urls(), "gateway listening");
    let stop_http = CancellationToken::new();
    let server = tokio::spawn(
        axum::serve(listener, router(app))
            .with_graceful_shutdown(stop_http.clone().cancelled_owned())
            .into_future(),
    );
    shutdown.cancelled().await;
    let deadline = tokio::time::Instant::now() + grace;
    drain.start_draining();
    sockets.close();
    info!(open = sockets.len(), "draining: closing sockets with 1012");
    if tokio::time::timeout_at(deadline, sockets.wait())
        .await
        .is_err()
    {
        info!(
            open = sockets.len(),
            "sockets still open at the end of the grace period"
        );
    }
    stop_http.cancel();
    match tokio::time::timeout_at(deadline, server).await {
        Ok(served) => served
            .context("HTTP server task")?
            .context("serving HTTP")?,
        Err(_) => info!("HTTP requests still running at the end of the grace period"),
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    core.finish_writes(left.max(Duration::from_millis(500)))
        .await;
    info!("gateway stopped");
    Ok(())
}
