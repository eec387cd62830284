//! Which master of a Redis Cluster serves which slot, as the servers say now, and a watch that
//! keeps a cluster connection's own idea of it current.
//!
//! The `redis` crate's cluster connection learns the slot map when it connects and refreshes
//! it on a `MOVED` reply or a lost connection. A master that stops answering without closing
//! its sockets (a stopped process, a frozen host) gives neither: after its replica has taken
//! over, requests for its slots still go to it, time out and are retried on it, until it
//! comes back. [`watch`] closes that gap: it asks the cluster for its slot map every so often
//! and, when an owner changed, sends one request to a node that does not own a moved slot.
//! That node answers `MOVED`, on which the connection refreshes its whole map (and moves the
//! sharded subscriptions it tracks to their new owners).

use std::collections::BTreeMap;
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{RedisResult, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: usize = protocol::keys::CLUSTER_SLOTS as usize;

/// How often [`watch`] asks for the slot map: a stopped master's slots are served again about
/// this long after its replica took over.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// A `CLUSTER SLOTS` reply that is not what Redis sends.
#[derive(Debug, thiserror::Error)]
#[error("CLUSTER SLOTS: {0}")]
pub struct Malformed(&'static str);

/// The master of every slot (`host:port`) and the other nodes, as one node described them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    /// Index into `masters` of each slot's master; `None` for a slot nobody serves.
    owners: Vec<Option<u16>>,
    masters: Vec<String>,
    replicas: Vec<String>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` reply: ranges of `[start, end, master, replicas...]`, each node
    /// `[host, port, id, ...]`.
    pub fn parse(reply: Vec<Value>) -> Result<Self, Malformed> {
        let mut map = Self {
            owners: vec![None; SLOTS],
            masters: Vec::new(),
            replicas: Vec::new(),
        };
        for range in reply {
            let Value::Array(parts) = range else {
                return Err(Malformed("a range is not an array"));
            };
            let (Some(Value::Int(start)), Some(Value::Int(end))) = (parts.first(), parts.get(1))
            else {
                return Err(Malformed("a range lacks its bounds"));
            };
            let (Ok(start), Ok(end)) = (usize::try_from(*start), usize::try_from(*end)) else {
                return Err(Malformed("a slot is out of range"));
            };
            if start > end || end >= SLOTS {
                return Err(Malformed("a slot is out of range"));
            }
            let master = address(parts.get(2).ok_or(Malformed("a range has no master"))?)?;
            let index = match map.masters.iter().position(|m| *m == master) {
                Some(i) => i,
                None => {
                    map.masters.push(master);
                    map.masters.len() - 1
                }
            };
            let index = u16::try_from(index).map_err(|_| Malformed("too many masters"))?;
            map.owners[start..=end].fill(Some(index));
            for replica in &parts[3..] {
                let replica = address(replica)?;
                if !map.replicas.contains(&replica) {
                    map.replicas.push(replica);
                }
            }
        }
        Ok(map)
    }

    /// The master serving `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<&str> {
        let index = (*self.owners.get(usize::from(slot))?)?;
        Some(&self.masters[usize::from(index)])
    }

    /// Each master with the slots it serves, in slot order.
    pub fn by_master(&self) -> BTreeMap<&str, Vec<u16>> {
        let mut masters: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
        for slot in 0..SLOTS as u16 {
            if let Some(master) = self.owner(slot) {
                masters.entry(master).or_default().push(slot);
            }
        }
        masters
    }

    /// The slots whose master differs from the one in `before`.
    pub fn moved_since(&self, before: &SlotMap) -> Vec<u16> {
        (0..SLOTS as u16)
            .filter(|&slot| self.owner(slot) != before.owner(slot))
            .collect()
    }

    /// Every node: the masters, then the replicas.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.masters
            .iter()
            .chain(&self.replicas)
            .map(String::as_str)
    }

    /// A node (a master if there is one) that does not serve `slot` as master.
    fn not_owning(&self, slot: u16) -> Option<&str> {
        let owner = self.owner(slot);
        self.nodes().find(|node| Some(*node) != owner)
    }
}

/// `host:port` of a node entry of `CLUSTER SLOTS`.
fn address(node: &Value) -> Result<String, Malformed> {
    let Value::Array(fields) = node else {
        return Err(Malformed("a node is not an array"));
    };
    let host = match fields.first() {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => return Err(Malformed("a node has no address")),
    };
    let Some(Value::Int(port)) = fields.get(1) else {
        return Err(Malformed("a node has no port"));
    };
    Ok(format!("{host}:{port}"))
}

/// The slot map as one node (any) of `conn`'s cluster describes it now.
pub async fn fetch(conn: &ClusterConnection) -> RedisResult<SlotMap> {
    fetch_from(conn, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random)).await
}

/// The slot map as the node `routing` names describes it.
async fn fetch_from(conn: &ClusterConnection, routing: RoutingInfo) -> RedisResult<SlotMap> {
    let reply = conn
        .clone()
        .route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), routing)
        .await?;
    let Value::Array(ranges) = reply else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "CLUSTER SLOTS: not an array",
        )));
    };
    SlotMap::parse(ranges).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "CLUSTER SLOTS",
            e.to_string(),
        ))
    })
}

/// Makes `conn` refresh its slot map: a key of `slot` is looked up on a node that, by `map`,
/// does not serve it, and the `MOVED` it answers makes the connection reload the map.
pub async fn refresh(conn: &ClusterConnection, map: &SlotMap, slot: u16) -> RedisResult<()> {
    let Some(routing) = map.not_owning(slot).and_then(by_address) else {
        return Ok(());
    };
    let key = format!("{{{}}}", protocol::keys::slot_tag(slot));
    conn.clone()
        .route_command(redis::cmd("EXISTS").arg(key).clone(), routing)
        .await?;
    Ok(())
}

/// Routing to the node at `host:port`.
fn by_address(address: &str) -> Option<RoutingInfo> {
    let (host, port) = address.rsplit_once(':')?;
    Some(RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: host.to_owned(),
        port: port.parse().ok()?,
    }))
}

/// Asks `conn`'s cluster for its slot map now and then every `every` until `shutdown` (its
/// masters in turn); when masters changed
/// since the last answer, makes `conn` refresh its map ([`refresh`]) and then calls `moved`
/// with the slots that changed master. An answer that cannot be had (the node asked is the one
/// that stopped) is skipped.
pub async fn watch(
    conn: ClusterConnection,
    every: Duration,
    shutdown: CancellationToken,
    mut moved: impl FnMut(Vec<u16>),
) {
    let mut known: Option<SlotMap> = None;
    // The masters of the last map are asked in turn, so a stopped one costs one round in as
    // many as there are masters (a random pick can land on it round after round). Not the
    // replicas: the cluster connection keeps no connection to them, and a request addressed to
    // a node it has no connection to makes it drop all of them and start again from its seeds
    // (silently losing every sharded subscription).
    let mut turn = 0usize;
    loop {
        if known.is_some() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
        let routing = known
            .as_ref()
            .map(|map| map.masters.iter().map(String::as_str).collect::<Vec<_>>())
            .filter(|nodes| !nodes.is_empty())
            .and_then(|nodes| by_address(nodes[turn % nodes.len()]))
            .unwrap_or(RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random));
        turn = turn.wrapping_add(1);
        let now = match fetch_from(&conn, routing).await {
            Ok(map) => map,
            Err(e) => {
                warn!(cause = %e, "asking the cluster for its slot map failed; next round");
                if known.is_none() {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                }
                continue;
            }
        };
        if let Some(before) = &known {
            let slots = now.moved_since(before);
            if let Some(&first) = slots.first() {
                info!(
                    slots = slots.len(),
                    "slots changed master; refreshing the cluster map"
                );
                if let Err(e) = refresh(&conn, &now, first).await {
                    warn!(cause = %e, "refreshing the cluster map failed");
                }
                moved(slots);
            }
        }
        known = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(start: i64, end: i64, nodes: &[i64]) -> Value {
        let mut parts = vec![Value::Int(start), Value::Int(end)];
        parts.extend(nodes.iter().map(|&p| node(p)));
        Value::Array(parts)
    }

    /// Ranges of one master are gathered; replicas are not masters; unserved slots have none.
    #[test]
    fn slots_are_gathered_per_master() {
        let map = SlotMap::parse(vec![
            range(0, 2, &[7000, 7003]),
            range(3, 3, &[7001]),
            range(10, 11, &[7000]),
        ])
        .unwrap();
        let masters = map.by_master();
        assert_eq!(masters.len(), 2);
        assert_eq!(masters["127.0.0.1:7000"], vec![0, 1, 2, 10, 11]);
        assert_eq!(masters["127.0.0.1:7001"], vec![3]);
        assert_eq!(map.owner(3), Some("127.0.0.1:7001"));
        assert_eq!(map.owner(4), None);
        assert_eq!(map.not_owning(0), Some("127.0.0.1:7001"));
    }

    #[test]
    fn malformed_replies_are_refused() {
        assert!(SlotMap::parse(vec![Value::Int(1)]).is_err());
        assert!(SlotMap::parse(vec![range(0, 16384, &[7000])]).is_err());
        assert!(SlotMap::parse(vec![range(5, 4, &[7000])]).is_err());
        assert!(SlotMap::parse(vec![Value::Array(vec![Value::Int(0), Value::Int(1)])]).is_err());
    }

    /// A failover moves a master's slots to its replica; nothing else moved.
    #[test]
    fn moved_slots_are_those_whose_master_changed() {
        let before = SlotMap::parse(vec![range(0, 9, &[7000, 7003]), range(10, 19, &[7001])]);
        let after = SlotMap::parse(vec![range(0, 9, &[7003]), range(10, 19, &[7001])]);
        let moved = after.unwrap().moved_since(&before.unwrap());
        assert_eq!(moved, (0..10).collect::<Vec<u16>>());
    }

    /// A single-master cluster's only other node is the replica (which answers MOVED too).
    #[test]
    fn a_replica_is_asked_when_no_other_master_exists() {
        let map = SlotMap::parse(vec![range(0, 16383, &[7000, 7003])]).unwrap();
        assert_eq!(map.not_owning(5), Some("127.0.0.1:7003"));
    }
}
