//! What each binary's `main` does: read its config, start tracing, bind, and run until Ctrl-C
//! or SIGTERM.

use std::collections::HashMap;
use std::future::Future;

use anyhow::Context;
use runtime::env::BadVar;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;

/// Runs a node: `load` reads its config from the process environment; `run` serves it on the
/// bound listener until the shutdown token (cancelled by Ctrl-C or SIGTERM) fires.
pub async fn main<C, F, Fut>(
    load: impl FnOnce(&HashMap<String, String>) -> Result<C, BadVar>,
    run: F,
) -> anyhow::Result<()>
where
    C: AsRef<NodeConfig>,
    F: FnOnce(C, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = load(&runtime::env::vars()).context("configuration")?;
    let node = config.as_ref();
    runtime::telemetry::init(&node.node_id, &node.log_level);
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
