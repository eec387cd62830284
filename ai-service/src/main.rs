//! `ai-service`: read the config, serve until Ctrl-C or SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    node::main(ai_service::run).await
}
