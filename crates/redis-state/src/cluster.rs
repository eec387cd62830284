//! What a Redis Cluster looks like from here: which master serves which slots.

use std::collections::BTreeMap;

use redis::Value;

use crate::{ChatState, Error, Result};

impl ChatState {
    /// The slots of each master, as `CLUSTER SLOTS` (asked of any node) says now.
    pub(crate) async fn slots_by_master(&self) -> Result<Vec<Vec<u16>>> {
        let reply: Vec<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.conn())
            .await?;
        Ok(masters_slots(reply)?.into_values().collect())
    }
}

/// `CLUSTER SLOTS`' ranges (`[start, end, [host, port, id, ...], replicas...]`), gathered per
/// master (`host:port`).
pub fn masters_slots(reply: Vec<Value>) -> Result<BTreeMap<String, Vec<u16>>> {
    let bad = |what: &str| Error::Reply(format!("CLUSTER SLOTS: {what}"));
    let mut masters: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for range in reply {
        let Value::Array(parts) = range else {
            return Err(bad("a range is not an array"));
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            return Err(bad("a range lacks its bounds or its master"));
        };
        let host = match master.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => return Err(bad("a master has no address")),
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return Err(bad("a master has no port"));
        };
        let (Ok(start), Ok(end)) = (u16::try_from(*start), u16::try_from(*end)) else {
            return Err(bad("a slot is out of range"));
        };
        masters
            .entry(format!("{host}:{port}"))
            .or_default()
            .extend(start..=end);
    }
    Ok(masters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    /// Ranges of one master are gathered; replicas are not masters.
    #[test]
    fn slots_are_gathered_per_master() {
        let reply = vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(2),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            Value::Array(vec![Value::Int(3), Value::Int(3), node("127.0.0.1", 7001)]),
            Value::Array(vec![
                Value::Int(10),
                Value::Int(11),
                node("127.0.0.1", 7000),
            ]),
        ];
        let masters = masters_slots(reply).unwrap();
        assert_eq!(masters.len(), 2);
        assert_eq!(masters["127.0.0.1:7000"], vec![0, 1, 2, 10, 11]);
        assert_eq!(masters["127.0.0.1:7001"], vec![3]);
        assert!(masters_slots(vec![Value::Int(1)]).is_err());
    }
}
