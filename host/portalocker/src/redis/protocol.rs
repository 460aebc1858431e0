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

/// Rust peers announce releases here; never on `C` itself. The name holds
/// a byte that is never in UTF-8 text (`0xFF`), so it equals no lock name,
/// ours or Python's (whose names are `str`).
pub(crate) fn release_channel(channel: &str) -> Vec<u8> {
    let mut name = Vec::with_capacity(channel.len() + 24);
    name.extend_from_slice(channel.as_bytes());
    name.extend_from_slice(b"\xffportalocker-rs:released");
    name
}

/// A release notice: whether a waiter that does not hear notices (one that
/// polls, as Python's do) pinged the holder while it held: then Rust
/// waiters hold back a moment so it gets its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Released; take it.
    Released,
    /// Released while a polling waiter waits: let it in first.
    Yield,
}

impl Notice {
    /// The message `holder_id` publishes: `released HOLDER` (so a
    /// releaser can tell its own notice from a waiter's; earlier versions
    /// read anything but `yield` as "released") or `yield`.
    pub(crate) fn payload(self, holder_id: &str) -> String {
        match self {
            Notice::Released => format!("released {holder_id}"),
            Notice::Yield => "yield".to_owned(),
        }
    }

    /// Whether `payload` is `holder_id`'s own release notice.
    pub(crate) fn is_own(payload: &[u8], holder_id: &str) -> bool {
        payload
            .strip_prefix(b"released ")
            .is_some_and(|sender| sender == holder_id.as_bytes())
    }

    pub(crate) fn parse(payload: &[u8]) -> Self {
        if payload == b"yield" {
            Notice::Yield
        } else {
            Notice::Released
        }
    }
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

/// The key our pings add (peers read only `response_channel`): a ping
/// with it comes from a Rust waiter, which hears release notices; one
/// without it, from a waiter that polls.
const NOTICED: &str = "portalocker_rs";

/// `{"message": "ping", "response_channel": "<reply>", "portalocker_rs":
/// true}`, spaced as Python's `json.dumps` does.
pub(crate) fn ping(reply_channel: &str) -> String {
    format!(
        "{{\"message\": \"ping\", \"response_channel\": {}, \"{NOTICED}\": true}}",
        serde_json::Value::String(reply_channel.to_owned())
    )
}

/// A ping as a responder reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ping {
    /// Where to answer.
    pub(crate) reply_channel: String,
    /// Whether it came from a Rust waiter (one that hears notices).
    pub(crate) noticed: bool,
}

/// The ping in a message, if it is a valid one.
pub(crate) fn parse_ping(payload: &[u8]) -> Option<Ping> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let object = value.as_object()?;
    let reply = object.get("response_channel")?.as_str()?;
    (!reply.is_empty()).then(|| Ping {
        reply_channel: reply.to_owned(),
        noticed: object.get(NOTICED).and_then(serde_json::Value::as_bool) == Some(true),
    })
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
            r#"{"message": "ping", "response_channel": "jobs-abc", "portalocker_rs": true}"#
        );
        let parsed = parse_ping(ping.as_bytes()).unwrap();
        assert_eq!(parsed.reply_channel, "jobs-abc");
        assert!(parsed.noticed);
        // Python's pings carry only the reply channel.
        let python = br#"{"message": "ping", "response_channel": "jobs-x"}"#;
        assert!(!parse_ping(python).unwrap().noticed);
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
    fn the_notice_channel_is_no_lock_name() {
        let notice = release_channel("jobs");
        assert!(std::str::from_utf8(&notice).is_err());
        assert!(notice.starts_with(b"jobs"));
        assert_eq!(
            Notice::parse(Notice::Yield.payload("h").as_bytes()),
            Notice::Yield
        );
        assert_eq!(Notice::parse(b"released"), Notice::Released);
        let own = Notice::Released.payload("abc");
        assert_eq!(Notice::parse(own.as_bytes()), Notice::Released);
        assert!(Notice::is_own(own.as_bytes(), "abc"));
        assert!(!Notice::is_own(own.as_bytes(), "abd"));
        assert!(!Notice::is_own(b"released", "abc"));
        assert!(!Notice::is_own(b"yield", "abc"));
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
