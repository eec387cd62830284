//! `ws-gateway`: parse config, start tracing, bind, run until Ctrl-C or SIGTERM.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ws_gateway::Config::from_vars(&runtime::env::vars()).context("configuration")?;
    runtime::telemetry::init(&config.node_id, &config.log_level);
    let listener = runtime::net::bind(&config.host, config.port)
        .await
        .with_context(|| format!("binding {}:{}", config.host, config.port))?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        runtime::shutdown::signal().await;
        trigger.cancel();
    });
    ws_gateway::run(config, listener, shutdown).await
}
