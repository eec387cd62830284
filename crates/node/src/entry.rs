//! What each binary's `main` does: read its config, start tracing, bind, and run until Ctrl-C
//! or SIGTERM.

use std::future::Future;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ServiceConfig};

/// Runs a node: reads its [`Config`] from the process environment, and has `run` serve it on
/// the bound listener until the shutdown token (cancelled by Ctrl-C or SIGTERM) fires.
pub async fn main<S, F, Fut>(run: F) -> anyhow::Result<()>
where
    S: ServiceConfig,
    F: FnOnce(Config<S>, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = Config::<S>::from_vars(&runtime::env::vars()).context("configuration")?;
    let node = &config.node;
    let _telemetry = config.start_telemetry();
    runtime::metrics::install(Some(&node.node_id));
    let listener = runtime::net::bind(&node.host, node.port)
        .await
        .with_context(|| format!("binding {}:{}", node.host, node.port))?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        runtime::shutdown::signal().await;
        trigger.cancel();
    });
    run(config, listener, shutdown).await
}
