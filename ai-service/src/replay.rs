//! `ai-service replay --from-beginning`: rebuilds the SQL store from `chat-events`.

use std::time::Duration;

use anyhow::Context;
use node::Config;
use store::Store;

/// Reads the configuration from the environment (`DATABASE_URL`, `KAFKA_*`; Redis is not
/// needed) and replays `chat-events` from the beginning into the database. Events are applied,
/// never written to the outbox again.
pub async fn replay(idle: Duration) -> anyhow::Result<()> {
    let config =
        Config::<crate::AiConfig>::from_vars(&runtime::env::vars()).context("configuration")?;
    let _telemetry = config.start_telemetry();
    let kafka = config
        .node
        .kafka
        .as_ref()
        .context("KAFKA_BOOTSTRAP_SERVERS is not set: nothing to replay from")?;
    let database_url = &config.node.persistence.database_url;
    let store = Store::connect(database_url)
        .await
        .with_context(|| format!("opening DATABASE_URL {database_url}"))?;
    let report = events::replay(kafka, &store, idle)
        .await
        .context("replaying chat events")?;
    println!(
        "replayed {} events from {} ({} applied) into {database_url}",
        report.read, kafka.topic_chat_events, report.applied
    );
    Ok(())
}
