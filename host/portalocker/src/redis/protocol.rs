//! What portalocker's Redis lock says on the wire: names, the ping and the
//! holder record, parsed exactly as portalocker 4.2+ parses them.

use std::fmt::Write as _;

/// The protocol version every 4.x record carries.
pub(crate) const PROTOCOL: i64 = 1;

/// The longest lock name accepted, in bytes.
pub const MAX_CHANNEL_LEN: usize = 1024;

/// A participant's advertised mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireMode {
    /// Owns the lock alone.
    Exclusive,
    /// A writer that does not own it yet.
    Pending,
    /// A reader, holding or waiting.
    Shared,
}

impl WireMode {
    fn as_str(self) -> &'static str {
        match self {
            WireMode::Exclusive => "exclusive",
            WireMode::Pending => "pending",
            WireMode::Shared => "shared",
        }
    }
}

/// One reply to a ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) mode: WireMode,
    /// `None`: the peer did not say (a 4.0/4.1 peer, or a legacy reply).
    pub(crate) elected: Option<bool>,
    /// Not a protocol record (a 3.x timestamp, garbage): counts as exclusive.
    pub(crate) legacy: bool,
}

/// A fresh 32-lowercase-hex id (a holder id or a reply channel suffix).
pub(crate) fn random_id() -> String {
    let mut id = String::with_capacity(32);
    for _ in 0..2 {
        write!(id, "{:016x}", fastrand::u64(..)).expect("writing to a String");
    }
    id
}

/// The name of the lock subscription connection: `C-lock-<id>`.
pub(crate) fn connection_name(channel: &str, holder_id: &str) -> String {
    format!("{channel}-lock-{holder_id}")
}

/// Rust peers announce releases here; never on `C` itself.
pub(crate) fn release_channel(channel: &str) -> String {
    format!("{channel}:portalocker-rs:released")
}

/// The fencing counter key.
pub(crate) fn fence_key(channel: &str) -> String {
    format!("{channel}-fence")
}

/// Check a lock name.
pub(crate) fn validate_channel(channel: &str) -> Result<(), String> {
    if channel.is_empty() {
        return Err("a Redis lock name must not be empty".into());
    }
    if channel.len() > MAX_CHANNEL_LEN {
        return Err(format!(
            "a Redis lock name must be at most {MAX_CHANNEL_LEN} bytes, not {}",
            channel.len()
        ));
    }
    // Redis refuses client names with other bytes, and every holder names
    // its connection `C-lock-<id>`.
    if let Some(bad) = channel.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "a Redis lock name may hold only printable ASCII without spaces \
             (Redis refuses other client names, and each holder's connection \
             is named after its lock): {bad:?} in {channel:?}"
        ));
    }
    Ok(())
}

/// `{"message": "ping", "response_channel": "<reply>"}`, spaced as Python's
/// `json.dumps` does.
pub(crate) fn ping(reply_channel: &str) -> String {
    format!(
        "{{\"message\": \"ping\", \"response_channel\": {}}}",
        serde_json::Value::String(reply_channel.to_owned())
    )
}

/// The reply channel named by a ping, if the message is a valid ping.
pub(crate) fn parse_ping(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let reply = value.as_object()?.get("response_channel")?.as_str()?;
    (!reply.is_empty()).then(|| reply.to_owned())
}

/// Our record as we answer a ping.
pub(crate) fn record(holder_id: &str, mode: WireMode, elected: bool) -> String {
    format!(
        "{{\"holder_id\": \"{holder_id}\", \"mode\": \"{}\", \"protocol\": {PROTOCOL}, \"elected\": {elected}}}",
        mode.as_str()
    )
}

/// Parse a reply per portalocker 4.2: a protocol record, or a legacy one
/// (given the synthetic id `legacy-<n>`).
pub(crate) fn parse_record(payload: &[u8], legacy_count: &mut usize) -> Record {
    let parsed = (|| {
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        let object = value.as_object()?;
        // Python compares with ==, so 1, 1.0 and true all pass.
        let protocol_ok = match object.get("protocol")? {
            serde_json::Value::Number(n) => n.as_f64() == Some(1.0),
            serde_json::Value::Bool(b) => *b,
            _ => false,
        };
        if !protocol_ok {
            return None;
        }
        let id = object.get("holder_id")?.as_str()?.to_owned();
        let mode = match object.get("mode")?.as_str()? {
            "exclusive" => WireMode::Exclusive,
            "pending" => WireMode::Pending,
            "shared" => WireMode::Shared,
            _ => return None,
        };
        let elected = object.get("elected").and_then(serde_json::Value::as_bool);
        Some(Record {
            id,
            mode,
            elected,
            legacy: false,
        })
    })();
    parsed.unwrap_or_else(|| {
        *legacy_count += 1;
        Record {
            id: format!("legacy-{legacy_count}"),
            mode: WireMode::Exclusive,
            elected: None,
            legacy: true,
        }
    })
}

/// Whether a client name is a 4.2+ lock subscription of `channel`, and
/// whose: `C-lock-<32 lowercase hex>`.
pub(crate) fn holder_of_connection<'a>(channel: &str, name: &'a str) -> Option<&'a str> {
    let id = name.strip_prefix(channel)?.strip_prefix("-lock-")?;
    (id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_hex() {
        let id = random_id();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(random_id(), id);
    }

    #[test]
    fn pings_round_trip_and_junk_is_ignored() {
        let ping = ping("jobs-abc");
        assert_eq!(
            ping,
            r#"{"message": "ping", "response_channel": "jobs-abc"}"#
        );
        assert_eq!(parse_ping(ping.as_bytes()).as_deref(), Some("jobs-abc"));
        for junk in [
            &b"garbage"[..],
            b"{}",
            b"[]",
            b"{\"response_channel\": \"\"}",
            b"{\"response_channel\": 5}",
        ] {
            assert_eq!(parse_ping(junk), None);
        }
    }

    #[test]
    fn records_parse_like_portalocker() {
        let mut legacy = 0;
        let ours = record("a".repeat(32).as_str(), WireMode::Pending, true);
        let parsed = parse_record(ours.as_bytes(), &mut legacy);
        assert_eq!(parsed.mode, WireMode::Pending);
        assert_eq!(parsed.elected, Some(true));
        assert!(!parsed.legacy);
        // 4.0/4.1: no "elected".
        let old = br#"{"holder_id": "x", "mode": "shared", "protocol": 1}"#;
        assert_eq!(parse_record(old, &mut legacy).elected, None);
        // 3.x bare timestamps, wrong protocol, unknown mode: legacy exclusive.
        for junk in [
            &b"1795918701.123456"[..],
            br#"{"holder_id": "x", "mode": "shared", "protocol": 2}"#,
            br#"{"holder_id": "x", "mode": "weird", "protocol": 1}"#,
        ] {
            let r = parse_record(junk, &mut legacy);
            assert!(r.legacy);
            assert_eq!(r.mode, WireMode::Exclusive);
        }
        assert_eq!(legacy, 3);
    }

    #[test]
    fn connection_names_are_recognised_strictly() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            holder_of_connection("jobs", &connection_name("jobs", id)),
            Some(id)
        );
        assert_eq!(holder_of_connection("jobs", "jobs-lock"), None);
        assert_eq!(holder_of_connection("jobs", "jobs-lock-XYZ"), None);
        assert_eq!(
            holder_of_connection("jobs", &connection_name("jobs-lock-x", id)),
            None
        );
    }

    #[test]
    fn channel_names_are_validated() {
        assert!(validate_channel("jobs").is_ok());
        assert!(validate_channel("").is_err());
        assert!(validate_channel("a\nb").is_err());
        assert!(validate_channel("a b").is_err());
        assert!(validate_channel("caf\u{e9}").is_err());
        assert!(validate_channel("jobs:nightly/{x}-1!").is_ok());
        assert!(validate_channel(&"x".repeat(MAX_CHANNEL_LEN + 1)).is_err());
    }
}
