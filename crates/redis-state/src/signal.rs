//! Wake-ups between nodes: a PUBLISH that carries no data, only "look now".
//!
//! A node that committed events to the SQL outbox signals the relay, which may run on another
//! node, so an event reaches Kafka within moments of its change instead of at the next poll.
//! A lost signal costs only latency: the relay also polls.

use protocol::keys;

use crate::{ChatState, Result};

impl ChatState {
    /// Tells the event relay, wherever it runs, that the outbox has new rows.
    pub async fn signal_outbox(&self) -> Result<()> {
        let mut conn = self.conn();
        redis::cmd("PUBLISH")
            .arg(keys::OUTBOX_WAKE_CHANNEL)
            .arg("1")
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }
}
