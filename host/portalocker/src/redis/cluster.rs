//! Redis Cluster: which slot a lock lives in, its name on the wire, and
//! which nodes serve the slot (`CLUSTER SHARDS`).

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::reply::{pairs, string};
use super::servers::Addr;
use crate::error::Result;

/// How many hash slots a cluster has.
const SLOTS: u16 = 16384;

/// The hash slot of `key`, as Redis computes it: CRC16 (XMODEM) of the
/// key, or of its hash tag (the part between the first `{` and the next
/// `}`, if not empty), modulo 16384.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The name of lock `name` on a cluster: `{name}`, a hash tag, so its
/// channel and every key and channel named after it (`{name}-fence`, the
/// release and reply channels) share one slot.
///
/// # Errors
///
/// A name that starts with `}` (its tag would be empty, and the names
/// derived from it would land in other slots).
pub(crate) fn wire_channel(name: &str) -> std::result::Result<String, String> {
    if name.starts_with('}') {
        return Err(format!(
            "a cluster lock name may not start with '}}' (its hash tag would be empty): {name:?}"
        ));
    }
    Ok(format!("{{{name}}}"))
}

/// One shard: the slots it serves, its master and replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shard {
    /// Inclusive slot ranges.
    pub(crate) slots: Vec<(u16, u16)>,
    /// The master, if the shard has one that is not failed.
    pub(crate) master: Option<Addr>,
    /// The replicas that are not failed.
    pub(crate) replicas: Vec<Addr>,
}

impl Shard {
    /// Whether it serves `slot`.
    pub(crate) fn serves(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|&(from, to)| (from..=to).contains(&slot))
    }
}

/// The cluster's shards, as the node behind `conn` sees them.
///
/// # Errors
///
/// When the node cannot answer (Redis older than 7.0 has no `CLUSTER
/// SHARDS`, and no sharded pub/sub either).
pub(crate) async fn shards(conn: &mut MultiplexedConnection) -> Result<Vec<Shard>> {
    let reply: Value = redis::cmd("CLUSTER")
        .arg("SHARDS")
        .query_async(conn)
        .await?;
    Ok(parse_shards(&reply))
}

/// Read a `CLUSTER SHARDS` reply (RESP2 flat pairs or RESP3 maps).
fn parse_shards(reply: &Value) -> Vec<Shard> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|entry| {
            let fields = pairs(entry);
            let slots = field(&fields, "slots")
                .and_then(|slots| {
                    // All or nothing: one unreadable bound would shift
                    // every range after it.
                    let bounds: Option<Vec<u16>> = items(slots).iter().map(int).collect();
                    Some(bounds?.chunks_exact(2).map(|b| (b[0], b[1])).collect())
                })
                .unwrap_or_default();
            let mut master = None;
            let mut replicas = Vec::new();
            for node in field(&fields, "nodes").map(items).unwrap_or_default() {
                let node = pairs(node);
                let text = |key| field(&node, key).and_then(string);
                if text("health").as_deref() == Some("fail") {
                    continue;
                }
                let host = text("endpoint")
                    .filter(|e| !e.is_empty() && e != "?")
                    .or_else(|| text("ip"));
                let (Some(host), Some(port)) = (host, field(&node, "port").and_then(int)) else {
                    continue;
                };
                match text("role").as_deref() {
                    Some("master") => master = Some((host, port)),
                    _ => replicas.push((host, port)),
                }
            }
            Shard {
                slots,
                master,
                replicas,
            }
        })
        .collect()
}

fn field<'a>(fields: &[(String, &'a Value)], key: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

fn int(value: &Value) -> Option<u16> {
    match value {
        Value::Int(n) => u16::try_from(*n).ok(),
        other => string(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_slots() {
        // Checked against `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(key_slot(b"lock:a"), 6035);
        assert_eq!(key_slot(b"lock:b"), 10224);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    #[test]
    fn a_lock_and_its_keys_share_a_slot() {
        for name in ["jobs", "a{b", "a}b", "x{y}z", "{x}"] {
            let wire = wire_channel(name).unwrap();
            let slot = key_slot(wire.as_bytes());
            assert_eq!(slot, key_slot(format!("{wire}-fence").as_bytes()), "{name}");
            assert_eq!(slot, key_slot(format!("{wire}-0123").as_bytes()), "{name}");
        }
        assert!(wire_channel("}x").is_err());
    }

    #[test]
    fn shards_are_read_from_resp2_pairs() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let node = |port: i64, role: &str, health: &str| {
            Value::Array(vec![
                bulk("id"),
                bulk("abc"),
                bulk("port"),
                Value::Int(port),
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("endpoint"),
                bulk("127.0.0.1"),
                bulk("role"),
                bulk(role),
                bulk("health"),
                bulk(health),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("slots"),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Int(6000),
                Value::Int(6000),
            ]),
            bulk("nodes"),
            Value::Array(vec![
                node(30001, "master", "online"),
                node(30004, "replica", "online"),
                node(30007, "replica", "fail"),
            ]),
        ])]);
        let shards = parse_shards(&reply);
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].master, Some(("127.0.0.1".to_owned(), 30001)));
        assert_eq!(shards[0].replicas, vec![("127.0.0.1".to_owned(), 30004)]);
        assert!(shards[0].serves(6000) && shards[0].serves(0) && !shards[0].serves(5461));
    }
}
