//! The conversation with the other participants: ping the channel and
//! collect one record per subscriber (protocol spec §6.3), reap the ones
//! that stay silent (§8), and confirm a promotion (§6.6).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use redis::aio::MultiplexedConnection;

use super::connection::numsub;
use super::decide::{self, Confirm};
use super::lock::RedisLock;
use super::protocol::{self, Record};
use super::router::Listener;
use crate::error::Result;

/// How long a probe waits for the next reply before re-checking the
/// subscriber count (Python polls every 0.1 s; replies come within a
/// millisecond, and a count change means the probe is moot).
const PROBE_POLL: std::time::Duration = std::time::Duration::from_millis(10);
/// The pause between confirm rounds.
const CONFIRM_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

impl RedisLock {
    /// §6.3: ping the channel and collect one record per subscriber. `None`
    /// when inconclusive (the count changed, or someone stayed silent: then
    /// the silent ones are reaped).
    pub(crate) async fn probe(
        &self,
        conn: &mut MultiplexedConnection,
        expected: i64,
    ) -> Result<Option<Vec<Record>>> {
        let router = self.pool.replies().await?;
        let reply_channel = format!("{}-{}", self.channel, protocol::random_id());
        // Dropping the listener (at the end, or on cancellation) leaves the
        // reply channel.
        let mut replies = router.listen(&reply_channel).await?;
        self.collect(conn, &mut replies, &reply_channel, expected)
            .await
    }

    /// Ping and collect the records for [`RedisLock::probe`].
    async fn collect(
        &self,
        conn: &mut MultiplexedConnection,
        replies: &mut Listener,
        reply_channel: &str,
        expected: i64,
    ) -> Result<Option<Vec<Record>>> {
        if numsub(conn, &self.channel).await? != expected {
            return Ok(None);
        }
        let _: () = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(protocol::ping(reply_channel))
            .query_async(conn)
            .await?;
        let expected_len = usize::try_from(expected).unwrap_or(0);
        let window = Instant::now() + self.unavailable_timeout;
        let mut records: HashMap<String, Record> = HashMap::new();
        let mut legacy = 0;
        while records.len() < expected_len {
            let left = window.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match replies.next(PROBE_POLL.min(left)).await? {
                Some(payload) => {
                    let record = protocol::parse_record(&payload, &mut legacy);
                    records.insert(record.id.clone(), record);
                }
                None => {
                    if numsub(conn, &self.channel).await? != expected {
                        return Ok(None);
                    }
                }
            }
        }
        if numsub(conn, &self.channel).await? != expected {
            return Ok(None);
        }
        if records.len() < expected_len {
            self.reap(conn, &records).await?;
            return Ok(None);
        }
        Ok(Some(records.into_values().collect()))
    }

    /// §8: kill the lock subscriptions of `C` whose holders did not answer.
    async fn reap(
        &self,
        conn: &mut MultiplexedConnection,
        replied: &HashMap<String, Record>,
    ) -> Result<()> {
        let answered: HashSet<&str> = replied.keys().map(String::as_str).collect();
        let any_legacy = replied.values().any(|r| r.legacy);
        let legacy_name = format!("{}-lock", self.channel);
        let clients: String = match redis::cmd("CLIENT").arg("LIST").query_async(conn).await {
            Ok(list) => list,
            // Without @admin rights nobody can be reaped: say so, go on.
            Err(e) => {
                log::warn!("cannot reap silent holders of {:?}: {e}", self.channel);
                return Ok(());
            }
        };
        for line in clients.lines() {
            let field = |key: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            };
            let (Some(id), Some(name)) = (field("id"), field("name")) else {
                continue;
            };
            let silent = match protocol::holder_of_connection(&self.channel, name) {
                Some(holder) => !answered.contains(holder),
                None => name == legacy_name && !any_legacy,
            };
            if silent {
                log::info!(
                    "reaping the silent holder connection {name} of {:?}",
                    self.channel
                );
                let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(id)
                    .query_async(conn)
                    .await;
            }
        }
        Ok(())
    }

    /// §6.6: after promoting, make sure nobody has a better claim.
    pub(crate) async fn confirm(&self, conn: &mut MultiplexedConnection) -> Result<bool> {
        let budget = Instant::now() + self.unavailable_timeout;
        loop {
            let subscribers = numsub(conn, &self.channel).await?;
            if subscribers <= 1 {
                return Ok(true);
            }
            if let Some(records) = self.probe(conn, subscribers).await? {
                match decide::confirm(&records, &self.holder_id) {
                    Confirm::Confirmed => return Ok(true),
                    Confirm::Demote => return Ok(false),
                    Confirm::Inconclusive => {}
                }
            }
            if Instant::now() >= budget {
                return Ok(false);
            }
            // Python waits 0.1 s between rounds; the wire does not care, and
            // an inconclusive round is usually a contender leaving right now.
            tokio::time::sleep(CONFIRM_PAUSE.mul_f64(0.5 + fastrand::f64())).await;
        }
    }
}
