//! What a Redis Cluster looks like from here: which master serves which slots.

use cluster_map::SlotMap;
use redis::Value;

use crate::{ChatState, Error, Result};

impl ChatState {
    /// The slots of each master, as `CLUSTER SLOTS` (asked of any node) says now.
    pub(crate) async fn slots_by_master(&self) -> Result<Vec<Vec<u16>>> {
        let reply: Vec<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.conn())
            .await?;
        let map = SlotMap::parse(reply).map_err(|e| Error::Reply(e.to_string()))?;
        Ok(map.by_master().into_values().collect())
    }
}
