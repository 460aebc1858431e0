//! Redis Sentinel: which server is a group's master now, its replicas, and
//! the `+switch-master` events that announce a failover.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Client, Msg, PushKind, Value};

use super::connection::push_connection;
use super::reply::{pairs, string};
use super::servers::Addr;
use crate::error::{Error, Result};

/// The master a sentinel names `service`, and its replicas that are not
/// down (the old master of a failover among them, once demoted).
///
/// # Errors
///
/// When the sentinel cannot answer or does not know the service, and
/// while a failover is under way: from the promotion of a replica until
/// `+switch-master` the sentinel already names the new master but does
/// not list the old one among the replicas yet, so the old holders'
/// subscriptions could not be counted.
pub(crate) async fn lookup(
    conn: &mut MultiplexedConnection,
    service: &str,
) -> Result<(Addr, Vec<Addr>)> {
    let master: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(service)
        .query_async(conn)
        .await?;
    let Some(master) = master else {
        return Err(Error::RedisUnavailable(format!(
            "the sentinel knows no master named {service:?}"
        )));
    };
    let record: Value = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(service)
        .query_async(conn)
        .await?;
    let record = fields(&record);
    let get = |key: &str| {
        record
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let recorded = get("ip").zip(get("port").and_then(|p| p.parse::<u16>().ok()));
    let failing_over = get("flags").is_some_and(|flags| {
        flags
            .split(',')
            .any(|flag| flag.starts_with("failover") || flag == "promoted")
    });
    if failing_over || recorded.is_none_or(|(ip, port)| ip != master.0 || port != master.1) {
        return Err(Error::RedisUnavailable(format!(
            "a failover of {service:?} is under way"
        )));
    }
    let replicas: Value = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(service)
        .query_async(conn)
        .await?;
    Ok((master, parse_replicas(&replicas)))
}

/// The replicas in a `SENTINEL REPLICAS` reply that are not known to be
/// down (one the sentinel is still connecting to counts: it may be a
/// master just demoted, with the old holders' subscriptions).
fn parse_replicas(reply: &Value) -> Vec<Addr> {
    let Value::Array(replicas) = reply else {
        return Vec::new();
    };
    replicas
        .iter()
        .filter_map(|replica| {
            let fields = fields(replica);
            let get = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            let down = get("flags").is_some_and(|flags| {
                flags
                    .split(',')
                    .any(|flag| matches!(flag, "s_down" | "o_down"))
            });
            let port = get("port")?.parse().ok()?;
            let ip = get("ip")?.to_owned();
            (!down).then_some((ip, port))
        })
        .collect()
}

/// The key-value pairs of a sentinel's record, values as text.
fn fields(record: &Value) -> Vec<(String, String)> {
    pairs(record)
        .into_iter()
        .filter_map(|(key, value)| {
            let value = match value {
                Value::Int(n) => n.to_string(),
                other => string(other)?,
            };
            Some((key, value))
        })
        .collect()
}

/// A `+switch-master` event of `service`: the old master's address and
/// the new one's.
pub(crate) fn parse_switch(payload: &[u8], service: &str) -> Option<(Addr, Addr)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut words = text.split(' ');
    if words.next()? != service {
        return None;
    }
    let mut addr =
        || -> Option<Addr> { Some((words.next()?.to_owned(), words.next()?.parse().ok()?)) };
    Some((addr()?, addr()?))
}

/// What a sentinel watcher reports.
pub(crate) enum Seen {
    /// Once subscribed: the master the sentinel names now (a switch
    /// announced while the watcher was away is noticed here).
    Master(Addr),
    /// A `+switch-master`: the old master and the new one.
    Switch(Addr, Addr),
}

/// How often a watcher pings its sentinel: an idle subscription on a link
/// that went half-open would otherwise wait for events forever.
const WATCH_KEEPALIVE: Duration = Duration::from_secs(1);

/// Listen to one sentinel's `+switch-master` events of `service`,
/// reporting them (and, once subscribed, the current master) to `seen`;
/// returns when the connection to the sentinel ends or stops answering
/// its pings (the caller reconnects).
///
/// # Errors
///
/// When the sentinel cannot be reached, subscribed to, or answer.
pub(crate) async fn watch_switches(
    sentinel: &Client,
    service: &str,
    timeout: Duration,
    mut seen: impl FnMut(Seen),
) -> Result<()> {
    let client3 = super::connection::resp3(sentinel)?;
    let (mut conn, mut pushes) = push_connection(&client3, timeout).await?;
    tokio::time::timeout(timeout, conn.subscribe("+switch-master"))
        .await
        .map_err(|_| {
            Error::RedisUnavailable("the sentinel did not confirm a subscription".into())
        })??;
    let master: Option<(String, u16)> = tokio::time::timeout(
        timeout,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(service)
            .query_async(&mut conn),
    )
    .await
    .map_err(|_| Error::RedisUnavailable("the sentinel did not answer".into()))??;
    if let Some(master) = master {
        seen(Seen::Master(master));
    }
    let mut keepalive = tokio::time::interval(WATCH_KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = pushes.recv() => match push {
                None => return Ok(()),
                Some(push) if push.kind == PushKind::Disconnection => return Ok(()),
                Some(push) if push.kind == PushKind::Message => {
                    if let Some(message) = Msg::from_push_info(push)
                        && let Some((old, new)) = parse_switch(message.get_payload_bytes(), service)
                    {
                        seen(Seen::Switch(old, new));
                    }
                }
                Some(_) => {}
            },
            _ = keepalive.tick() => {
                let pong = tokio::time::timeout(
                    timeout,
                    redis::cmd("PING").query_async::<redis::Value>(&mut conn),
                )
                .await;
                if !matches!(pong, Ok(Ok(_))) {
                    return Err(Error::RedisUnavailable("the sentinel stopped answering".into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_of_our_service_are_read() {
        assert_eq!(
            parse_switch(b"mymaster 127.0.0.1 30101 127.0.0.1 30102", "mymaster"),
            Some((("127.0.0.1".into(), 30101), ("127.0.0.1".into(), 30102)))
        );
        assert_eq!(
            parse_switch(b"other 127.0.0.1 1 127.0.0.1 2", "mymaster"),
            None
        );
        assert_eq!(parse_switch(b"mymaster junk", "mymaster"), None);
    }

    #[test]
    fn replicas_that_are_down_are_left_out() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let replica = |port: &str, flags: &str| {
            Value::Array(vec![
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("port"),
                bulk(port),
                bulk("flags"),
                bulk(flags),
            ])
        };
        let reply = Value::Array(vec![
            replica("30102", "slave"),
            replica("30103", "s_down,slave,disconnected"),
            replica("30104", "slave,disconnected"),
        ]);
        assert_eq!(
            parse_replicas(&reply),
            vec![("127.0.0.1".into(), 30102), ("127.0.0.1".into(), 30104)]
        );
    }
}
