//! `ws-gateway`: read the config, serve until Ctrl-C or SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    node::main(ws_gateway::run).await
}
