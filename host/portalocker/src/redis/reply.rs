//! Reading the records in server replies (`CLUSTER SHARDS`, `SENTINEL
//! MASTER`, `SENTINEL REPLICAS`): key-value pairs, flat in RESP2 and a
//! map in RESP3.

use redis::Value;

/// The key-value pairs of a record; keys that are not text are skipped.
pub(crate) fn pairs(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Map(map) => map
            .iter()
            .filter_map(|(k, v)| Some((string(k)?, v)))
            .collect(),
        Value::Array(flat) => flat
            .chunks_exact(2)
            .filter_map(|kv| Some((string(&kv[0])?, &kv[1])))
            .collect(),
        _ => Vec::new(),
    }
}

/// A bulk or simple string as text.
pub(crate) fn string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}
