//! The conversation with the other participants: ping the channel and
//! collect one record per subscriber (§6.3), reap the ones that stay silent
//! (§8), and confirm a promotion (§6.6). Sections are those of
//! docs/redis-protocol.md.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

use redis::aio::MultiplexedConnection;

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

/// A holder connection subscribed before an anchored probe's ping.
#[derive(Debug)]
struct Candidate {
    client_id: String,
    name: String,
    /// Its holder id; `None` for a 3.x peer's `C-lock`.
    holder: Option<String>,
}

/// Whether a `CLIENT LIST` line shows a connection that sent nothing for a
/// whole second: a wedged holder does not, while a live Rust contender
/// (which pings every 100 ms) always shows `idle=0`. A live peer that
/// missed a ping because it left the channel just before it and came back
/// after is so never taken for a wedged one.
fn quiet(line: &str) -> bool {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix("idle="))
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|idle| idle >= 1)
}

impl Candidate {
    /// Whether its holder answered (a 3.x peer: whether any legacy record
    /// came).
    fn answered(&self, records: &HashMap<String, Record>) -> bool {
        match &self.holder {
            Some(holder) => records.contains_key(holder),
            None => records.values().any(|r| r.legacy),
        }
    }
}

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
        let reply_channel = format!("{}-{}", self.wire, protocol::random_id());
        // Dropping the listener (at the end, or on cancellation) leaves the
        // reply channel.
        let mut replies = router.listen(reply_channel.as_bytes()).await?;
        self.collect(conn, &mut replies, &reply_channel, expected)
            .await
    }

    /// Ping and collect the records for [`RedisLock::probe`].
    ///
    /// Normally (portalocker's rule) a change of the subscriber count makes
    /// the probe moot, and silent subscribers are reaped only after a whole
    /// window with the count unchanged. With many contenders the count never
    /// stays still, so a wedged holder would never be reaped: once a probe
    /// of this lock has met silence, the next ones are *anchored*. They note
    /// which holder connections were subscribed before the ping, collect for
    /// the whole window whatever the count does, and reap exactly those of
    /// them that never answered. A newcomer (subscribed after the ping) is
    /// never among them, and a live holder answers within milliseconds.
    async fn collect(
        &self,
        conn: &mut MultiplexedConnection,
        replies: &mut Listener,
        reply_channel: &str,
        expected: i64,
    ) -> Result<Option<Vec<Record>>> {
        if self.count(conn).await? != expected {
            return Ok(None);
        }
        let mut anchored = if self.shared.suspect.load(Ordering::SeqCst) {
            Some(self.subscribed_holders(conn).await?).filter(|c| !c.is_empty())
        } else {
            None
        };
        let _: () = self
            .pool
            .dialect()
            .publish(&self.wire, protocol::ping(reply_channel))
            .query_async(conn)
            .await?;
        let expected_len = usize::try_from(expected).unwrap_or(0);
        let window = Instant::now() + self.unavailable_timeout;
        let mut records: HashMap<String, Record> = HashMap::new();
        let mut legacy = 0;
        let mut churned = false;
        let complete =
            |anchored: &Option<Vec<Candidate>>, records: &HashMap<String, Record>| match anchored {
                Some(candidates) => candidates.iter().all(|c| c.answered(records)),
                None => records.len() >= expected_len,
            };
        while !complete(&anchored, &records) {
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
                    // A live subscriber answers within a millisecond.
                    self.shared.suspect.store(true, Ordering::SeqCst);
                    if self.count(conn).await? != expected {
                        churned = true;
                        match anchored.as_mut() {
                            None => return Ok(None),
                            // A candidate that left the channel is not
                            // silent, it is gone: wait only for those still
                            // there (a wedged holder stays, and is reaped).
                            Some(candidates) => {
                                let present = self.subscribed_holders(conn).await?;
                                candidates
                                    .retain(|c| present.iter().any(|p| p.client_id == c.client_id));
                            }
                        }
                    }
                }
            }
        }
        if let Some(candidates) = anchored {
            let silent: Vec<&Candidate> = candidates
                .iter()
                .filter(|c| !c.answered(&records))
                .collect();
            if !silent.is_empty() {
                let quiet_now = self.quiet_clients(conn).await?;
                for candidate in silent.iter().filter(|c| quiet_now.contains(&c.client_id)) {
                    self.kill(conn, candidate).await;
                }
            }
            let settled = !churned && self.count(conn).await? == expected;
            if !silent.is_empty() || !settled || records.len() < expected_len {
                return Ok(None);
            }
            self.shared.suspect.store(false, Ordering::SeqCst);
            return Ok(Some(records.into_values().collect()));
        }
        if self.count(conn).await? != expected {
            return Ok(None);
        }
        if records.len() < expected_len {
            self.reap(conn, &records).await?;
            return Ok(None);
        }
        self.shared.suspect.store(false, Ordering::SeqCst);
        Ok(Some(records.into_values().collect()))
    }

    /// The holder connections of `C` subscribed now (`CLIENT LIST`): named
    /// `C-lock-<id>` (or a 3.x peer's `C-lock`) with a subscription. Empty
    /// when the server will not list its clients.
    async fn subscribed_holders(&self, conn: &mut MultiplexedConnection) -> Result<Vec<Candidate>> {
        let Some(clients) = self.client_list(conn).await? else {
            return Ok(Vec::new());
        };
        let legacy_name = format!("{}-lock", self.wire);
        Ok(clients
            .lines()
            .filter_map(|line| {
                let field = |key: &str| {
                    line.split(' ')
                        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                };
                let subscribed = field("sub")
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
                    > 0;
                let (id, name) = (field("id")?, field("name")?);
                let holder = match protocol::holder_of_connection(&self.wire, name) {
                    Some(holder) => Some(holder.to_owned()),
                    None if name == legacy_name => None,
                    None => return None,
                };
                subscribed.then(|| Candidate {
                    client_id: id.to_owned(),
                    name: name.to_owned(),
                    holder,
                })
            })
            .collect())
    }

    /// The ids of the clients that sent nothing for a second (see
    /// [`quiet`]).
    async fn quiet_clients(&self, conn: &mut MultiplexedConnection) -> Result<HashSet<String>> {
        let Some(clients) = self.client_list(conn).await? else {
            return Ok(HashSet::new());
        };
        Ok(clients
            .lines()
            .filter(|line| quiet(line))
            .filter_map(|line| line.split(' ').find_map(|kv| kv.strip_prefix("id=")))
            .map(str::to_owned)
            .collect())
    }

    /// `CLIENT LIST`; `None` when the server refuses it (no `@admin`
    /// rights: then nobody can be reaped, which is said once per refusal).
    pub(super) async fn client_list(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Option<String>> {
        match redis::cmd("CLIENT").arg("LIST").query_async(conn).await {
            Ok(list) => Ok(Some(list)),
            Err(e) => match crate::error::Error::from(e) {
                unavailable @ crate::error::Error::RedisUnavailable(_) => Err(unavailable),
                refused => {
                    log::warn!("cannot list the holders of {:?}: {refused}", self.wire);
                    Ok(None)
                }
            },
        }
    }

    /// Kill the connection of a silent holder.
    async fn kill(&self, conn: &mut MultiplexedConnection, candidate: &Candidate) {
        log::info!(
            "reaping the silent holder connection {} of {:?}",
            candidate.name,
            self.wire
        );
        let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(&candidate.client_id)
            .query_async(conn)
            .await;
    }

    /// §8: kill the lock subscriptions of `C` whose holders did not answer
    /// (and that sent nothing for a second: see [`quiet`]).
    async fn reap(
        &self,
        conn: &mut MultiplexedConnection,
        replied: &HashMap<String, Record>,
    ) -> Result<()> {
        let answered: HashSet<&str> = replied.keys().map(String::as_str).collect();
        let any_legacy = replied.values().any(|r| r.legacy);
        let legacy_name = format!("{}-lock", self.wire);
        let Some(clients) = self.client_list(conn).await? else {
            return Ok(());
        };
        for line in clients.lines() {
            let field = |key: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            };
            let (Some(id), Some(name)) = (field("id"), field("name")) else {
                continue;
            };
            let silent = match protocol::holder_of_connection(&self.wire, name) {
                Some(holder) => !answered.contains(holder),
                None => name == legacy_name && !any_legacy,
            };
            if silent && quiet(line) {
                self.kill(
                    conn,
                    &Candidate {
                        client_id: id.to_owned(),
                        name: name.to_owned(),
                        holder: None,
                    },
                )
                .await;
            }
        }
        Ok(())
    }

    /// §6.6: after promoting, make sure nobody has a better claim.
    pub(crate) async fn confirm(&self, conn: &mut MultiplexedConnection) -> Result<bool> {
        let budget = Instant::now() + self.unavailable_timeout;
        loop {
            let subscribers = self.count(conn).await?;
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
