//! portalocker's Redis lock: holding lock `C` is being subscribed to the
//! Redis channel `C`, so a crashed holder frees it at once. Wire-compatible
//! with portalocker 4.4.2 (Python and Rust processes share locks), with an
//! instant release, waits that watch the subscriber count instead of
//! sleeping blindly, fencing tokens and loss detection.
//!
//! ```no_run
//! use portalocker::redis::RedisLock;
//!
//! let lock = RedisLock::open("redis://127.0.0.1:6379/", "nightly-report")?.fencing(true);
//! let guard = lock.acquire()?; // waits up to 5 s, like portalocker
//! println!("fencing token {:?}", guard.fencing_token());
//! if guard.is_lost() {
//!     eprintln!("lost the lock: someone else may hold it now");
//! }
//! drop(guard); // released at once
//! # Ok::<(), portalocker::Error>(())
//! ```
//!
//! Only a single standalone Redis primary gives mutual exclusion: the lock
//! refuses a Redis Cluster node and a replica.

mod connection;
mod decide;
mod protocol;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use redis::aio::MultiplexedConnection;
use tokio::sync::{OwnedMutexGuard, watch};

use self::connection::{Advertised, Replies, Subscription, numsub};
use self::decide::{Confirm, Fresh, Incumbent};
pub use self::protocol::MAX_CHANNEL_LEN;
use self::protocol::{Record, WireMode};
use crate::error::{Error, Result};
use crate::flags::LockMode;
/// The Redis client type ([`RedisLock::with_client`] takes one).
pub use redis::Client;

/// portalocker's default `unavailable_timeout`: how long a probe waits for
/// replies before reaping silent subscribers.
pub const DEFAULT_UNAVAILABLE_TIMEOUT: Duration = Duration::from_secs(1);
/// portalocker's `thread_sleep_time`: the poll inside probes and confirms.
const THREAD_SLEEP: Duration = Duration::from_millis(100);
/// How long a probe waits for the next reply before re-checking the
/// subscriber count (Python polls every 0.1 s; replies come within a
/// millisecond, and a count change means the probe is moot).
const PROBE_POLL: Duration = Duration::from_millis(10);
/// The pause between confirm rounds.
const CONFIRM_PAUSE: Duration = Duration::from_millis(2);
/// How often a waiter checks the subscriber count between attempts.
const COUNT_POLL: Duration = Duration::from_millis(10);

impl From<redis::RedisError> for Error {
    fn from(error: redis::RedisError) -> Self {
        Error::Redis(error.to_string())
    }
}

/// The runtime the Redis tasks run on: one worker thread, so responders
/// answer pings while the caller's thread does anything at all.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("portalocker-redis")
            .enable_all()
            .build()
            .expect("starting the portalocker Redis runtime")
    })
}

/// What the clones of one [`RedisLock`] share: the command connection
/// (checked once: a standalone primary) and the time of the last release.
#[derive(Default)]
struct Shared {
    command: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// The kept lock connection; held (locked) by an acquisition and its
    /// guard until the release has unsubscribed.
    slot: Arc<tokio::sync::Mutex<Option<Subscription>>>,
    /// The kept subscription to Rust holders' release notices.
    notices: tokio::sync::Mutex<Option<redis::aio::PubSubStream>>,
    /// The kept reply connection of probes.
    replies: tokio::sync::Mutex<Option<Replies>>,
    released_at: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// A Redis lock named `channel`, exclusive or shared. Cheap to clone
/// (clones share the holder id and connections).
///
/// Defaults are portalocker's: exclusive, 5 s timeout, 0.25 s check
/// interval, no fail-when-locked, 1 s unavailable timeout, no fencing.
#[derive(Debug, Clone)]
pub struct RedisLock {
    client: Client,
    client3: Client,
    channel: String,
    holder_id: String,
    mode: LockMode,
    timeout: Option<Duration>,
    check_interval: Duration,
    fail_when_locked: bool,
    unavailable_timeout: Duration,
    fencing: bool,
    shared: Arc<Shared>,
}

impl RedisLock {
    /// A lock named `channel` on the Redis server at `url`
    /// (`redis://host:port/db`). Connects lazily.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed URL or an empty, over-long
    /// or control-character lock name.
    pub fn open(url: &str, channel: &str) -> Result<Self> {
        let client = Client::open(url)
            .map_err(|e| Error::invalid(format!("invalid Redis URL {url:?}: {e}")))?;
        Self::with_client(client, channel)
    }

    /// A lock named `channel` through an existing client.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed lock name.
    pub fn with_client(client: Client, channel: &str) -> Result<Self> {
        protocol::validate_channel(channel).map_err(Error::InvalidArgument)?;
        Ok(Self {
            client3: connection::resp3(&client)?,
            client,
            channel: channel.to_owned(),
            holder_id: protocol::random_id(),
            mode: LockMode::Exclusive,
            timeout: Some(crate::lock::DEFAULT_TIMEOUT),
            check_interval: crate::lock::DEFAULT_CHECK_INTERVAL,
            fail_when_locked: false,
            unavailable_timeout: DEFAULT_UNAVAILABLE_TIMEOUT,
            fencing: false,
            shared: Arc::default(),
        })
    }

    /// Take a shared (reader) lock instead of an exclusive one.
    pub fn shared(mut self) -> Self {
        self.mode = LockMode::Shared;
        self
    }

    /// Exclusive or shared.
    pub fn mode(mut self, mode: LockMode) -> Self {
        self.mode = mode;
        self
    }

    /// How long an acquire keeps trying (default 5 s; zero is one attempt).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Keep trying as long as it takes.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// The longest pause between full attempts (default 0.25 s, jittered
    /// ×[0.5, 1.5)); a release is usually noticed much sooner.
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// Fail at the first conclusive contention (default `false`).
    pub fn fail_when_locked(mut self, fail: bool) -> Self {
        self.fail_when_locked = fail;
        self
    }

    /// How long a probe waits for replies before treating silent
    /// subscribers as wedged and reaping them (default 1 s).
    pub fn unavailable_timeout(mut self, timeout: Duration) -> Self {
        self.unavailable_timeout = timeout;
        self
    }

    /// Draw a fencing token (`INCRBY C-fence 1`, shared with portalocker) on
    /// every exclusive acquisition.
    pub fn fencing(mut self, fencing: bool) -> Self {
        self.fencing = fencing;
        self
    }

    /// The lock name (the Redis channel).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// This instance's holder id (32 lowercase hex digits).
    pub fn holder_id(&self) -> &str {
        &self.holder_id
    }

    /// Acquire, blocking the calling thread. Do not call it from async code:
    /// use [`RedisLock::acquire_async`] there.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] / [`Error::TimedOut`] on contention;
    /// [`Error::Unsupported`] for a cluster node or a replica;
    /// [`Error::Redis`] when the server cannot be reached or refuses.
    pub fn acquire(&self) -> Result<RedisLockGuard> {
        runtime().block_on(self.acquire_async())
    }

    /// Acquire without blocking a thread (any async runtime).
    ///
    /// # Errors
    ///
    /// As [`RedisLock::acquire`].
    pub async fn acquire_async(&self) -> Result<RedisLockGuard> {
        let this = self.clone();
        runtime()
            .spawn(async move { this.acquire_inner().await })
            .await
            .map_err(|e| Error::Redis(format!("the acquire task failed: {e}")))?
    }

    /// The command connection, connected (and the server checked) once.
    async fn command_connection(&self) -> Result<MultiplexedConnection> {
        let mut cached = self.shared.command.lock().await;
        if let Some(conn) = cached.as_ref() {
            return Ok(conn.clone());
        }
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        check_topology(&mut conn).await?;
        *cached = Some(conn.clone());
        Ok(conn)
    }

    /// Forget a command connection that failed, so the next call reconnects.
    async fn drop_command_connection(&self) {
        *self.shared.command.lock().await = None;
    }

    /// Right after releasing, let Rust waiters that were told take their
    /// turn before this instance takes the lock again: a releaser that
    /// re-acquires at once would otherwise nearly always win.
    async fn yield_to_waiters(&self, conn: &mut MultiplexedConnection) -> Result<()> {
        let released_at = *self
            .shared
            .released_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if released_at.is_some_and(|at| at.elapsed() < Duration::from_millis(5))
            && numsub(conn, &protocol::release_channel(&self.channel)).await? > 0
        {
            tokio::time::sleep(Duration::from_micros(1000 + fastrand::u64(0..1000))).await;
        }
        Ok(())
    }

    async fn acquire_inner(self) -> Result<RedisLockGuard> {
        let result = self.acquire_with_slot().await;
        if let Err(Error::Redis(_)) = &result {
            self.drop_command_connection().await;
        }
        result
    }

    /// Take this instance's lock connection (one acquisition at a time per
    /// instance: a clone acquiring waits for the other's release), run the
    /// attempts, and keep the connection for next time.
    async fn acquire_with_slot(&self) -> Result<RedisLockGuard> {
        let started = Instant::now();
        let deadline = self.timeout.and_then(|t| started.checked_add(t));
        let slot = Arc::clone(&self.shared.slot);
        let mut slot = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), slot.lock_owned())
                .await
                .map_err(|_| self.contention(self.timeout.unwrap_or_default()))?,
            None => slot.lock_owned().await,
        };
        let mut conn = self.command_connection().await?;
        self.yield_to_waiters(&mut conn).await?;
        let mut sub = match slot.take() {
            Some(sub) if sub.lost().is_none() => sub,
            _ => {
                Subscription::connect(
                    &self.client3,
                    &self.channel,
                    &self.holder_id,
                    self.unavailable_timeout,
                )
                .await?
            }
        };
        match self.attempts(&mut conn, &mut sub, deadline).await {
            Ok(fencing_token) => Ok(RedisLockGuard {
                lost: sub.watch_lost(),
                held: Some((sub, slot)),
                shared: Arc::clone(&self.shared),
                channel: self.channel.clone(),
                holder_id: self.holder_id.clone(),
                mode: self.mode,
                fencing_token,
            }),
            Err(e) => {
                if sub.subscribed() {
                    let _ = sub.unsubscribe(false).await;
                }
                if sub.lost().is_none() {
                    *slot = Some(sub);
                }
                Err(e)
            }
        }
    }

    /// Subscribe again on `sub`, reconnecting once if the kept connection
    /// turned out dead (a reaper may kill named connections).
    async fn subscribe(&self, sub: &mut Subscription, advertised: Advertised) -> Result<i64> {
        match sub.subscribe(advertised, self.unavailable_timeout).await {
            Ok(subscribers) => Ok(subscribers),
            Err(_) => {
                *sub = Subscription::connect(
                    &self.client3,
                    &self.channel,
                    &self.holder_id,
                    self.unavailable_timeout,
                )
                .await?;
                sub.subscribe(advertised, self.unavailable_timeout).await
            }
        }
    }

    /// §6: attempts until held (returning the fencing token, if any), or
    /// until contention ends it. `sub` is subscribed on success.
    async fn attempts(
        &self,
        conn: &mut MultiplexedConnection,
        sub: &mut Subscription,
        deadline: Option<Instant>,
    ) -> Result<Option<u64>> {
        let reader = self.mode == LockMode::Shared;
        let initial = Advertised {
            mode: if reader {
                WireMode::Shared
            } else {
                WireMode::Pending
            },
            elected: false,
        };
        // The release notices stay subscribed between acquisitions, so a
        // waiter is listening before its first attempt fails.
        let mut notices: Option<redis::aio::PubSubStream> = self.shared.notices.lock().await.take();
        let outcome = self
            .attempts_listening(conn, sub, deadline, initial, reader, &mut notices)
            .await;
        *self.shared.notices.lock().await = notices;
        outcome
    }

    async fn attempts_listening(
        &self,
        conn: &mut MultiplexedConnection,
        sub: &mut Subscription,
        deadline: Option<Instant>,
        initial: Advertised,
        reader: bool,
        notices: &mut Option<redis::aio::PubSubStream>,
    ) -> Result<Option<u64>> {
        let mut elected = false;
        loop {
            // Notices that came before this attempt are news no more.
            while let Some(stream) = notices.as_mut() {
                match stream.next().now_or_never() {
                    Some(Some(_)) => {}
                    Some(None) => *notices = None,
                    None => break,
                }
            }
            let subscribers = if sub.subscribed() {
                numsub(&mut sub.connection(), &self.channel).await?
            } else {
                self.subscribe(sub, initial).await?
            };
            let mut conclusive_contention = false;
            let step = if reader {
                if subscribers <= 1 {
                    Step::Held
                } else {
                    match self.probe(conn, subscribers).await? {
                        Some(records) if decide::reader_may_hold(&records) => Step::Held,
                        Some(_) => {
                            conclusive_contention = true;
                            Step::GiveUp
                        }
                        None => Step::GiveUp,
                    }
                }
            } else {
                let verdict = if subscribers <= 1 {
                    Step::Promote
                } else {
                    match self.probe(conn, subscribers).await? {
                        Some(records) if elected => {
                            match decide::incumbent_writer(&records, &self.holder_id) {
                                Incumbent::Forfeit => {
                                    elected = false;
                                    conclusive_contention = true;
                                    Step::GiveUp
                                }
                                Incumbent::Wait => Step::StayElected,
                                Incumbent::Promote => Step::Promote,
                            }
                        }
                        Some(records) => match decide::fresh_writer(&records, &self.holder_id) {
                            Fresh::NotElected => {
                                conclusive_contention = true;
                                Step::GiveUp
                            }
                            Fresh::Promote => {
                                elected = true;
                                Step::Promote
                            }
                            Fresh::WaitForReaders if self.fail_when_locked => {
                                conclusive_contention = true;
                                Step::GiveUp
                            }
                            Fresh::WaitForReaders => {
                                elected = true;
                                sub.advertise(WireMode::Pending, true);
                                Step::StayElected
                            }
                        },
                        None if elected => Step::StayElected,
                        None => Step::GiveUp,
                    }
                };
                if verdict == Step::Promote {
                    sub.advertise(WireMode::Exclusive, elected);
                    if self.confirm(&mut sub.connection()).await? {
                        Step::Held
                    } else {
                        elected = false;
                        Step::GiveUp
                    }
                } else {
                    verdict
                }
            };
            match step {
                Step::Held => {
                    if let Some(reason) = sub.lost() {
                        return Err(Error::Lost {
                            channel: self.channel.clone(),
                            reason,
                        });
                    }
                    if !self.fencing || reader {
                        return Ok(None);
                    }
                    let token: u64 = redis::cmd("INCRBY")
                        .arg(protocol::fence_key(&self.channel))
                        .arg(1)
                        .query_async(conn)
                        .await?;
                    return Ok(Some(token));
                }
                Step::GiveUp => {
                    sub.advertise(initial.mode, false);
                    sub.unsubscribe(false).await?;
                }
                Step::StayElected | Step::Promote => {}
            }
            let now = Instant::now();
            if self.fail_when_locked && conclusive_contention {
                return Err(self.contention(Duration::ZERO));
            }
            match (self.timeout, deadline) {
                (Some(t), _) if t.is_zero() => return Err(self.contention(t)),
                (Some(t), Some(deadline)) if now >= deadline => return Err(self.contention(t)),
                _ => {}
            }
            let jitter = 0.5 + fastrand::f64();
            let base = if self.check_interval.is_zero() {
                THREAD_SLEEP
            } else {
                self.check_interval
            };
            let mut until = now + base.mul_f64(jitter);
            if let Some(deadline) = deadline {
                until = until.min(deadline);
            }
            if notices.is_none() {
                *notices = self.release_notices().await;
            }
            // Wake when the count drops below what it is now (without us,
            // unless we stay subscribed as an elected writer).
            let baseline = numsub(conn, &self.channel).await?;
            self.pause(conn, notices, until, baseline).await?;
        }
    }

    fn contention(&self, timeout: Duration) -> Error {
        if timeout.is_zero() {
            Error::WouldBlock {
                path: None,
                holder_pid: None,
            }
        } else {
            Error::TimedOut {
                path: None,
                timeout,
                holder_pid: None,
            }
        }
    }

    /// Subscribe to the side channel on which Rust holders announce their
    /// releases (best effort: waiting works without it).
    async fn release_notices(&self) -> Option<redis::aio::PubSubStream> {
        let mut pubsub = self.client.get_async_pubsub().await.ok()?;
        tokio::time::timeout(
            self.unavailable_timeout,
            pubsub.subscribe(protocol::release_channel(&self.channel)),
        )
        .await
        .ok()?
        .ok()?;
        Some(pubsub.into_on_message())
    }

    /// Wait until `until`, or sooner when the subscriber count drops below
    /// what the last attempt saw or a Rust holder announces its release.
    async fn pause(
        &self,
        conn: &mut MultiplexedConnection,
        notices: &mut Option<redis::aio::PubSubStream>,
        until: Instant,
        seen: i64,
    ) -> Result<()> {
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            let nap = COUNT_POLL.min(until - now);
            match notices {
                Some(stream) => tokio::select! {
                    notice = stream.next() => match notice {
                        Some(_) => return Ok(()),
                        None => *notices = None,
                    },
                    () = tokio::time::sleep(nap) => {}
                },
                None => tokio::time::sleep(nap).await,
            }
            if numsub(conn, &self.channel).await? < seen {
                return Ok(());
            }
        }
    }

    /// §6.3: ping the channel and collect one record per subscriber. `None`
    /// when inconclusive (the count changed, or someone stayed silent: then
    /// the silent ones are reaped).
    async fn probe(
        &self,
        conn: &mut MultiplexedConnection,
        expected: i64,
    ) -> Result<Option<Vec<Record>>> {
        let kept = self.shared.replies.lock().await.take();
        let mut replies = match kept {
            Some(replies) => replies,
            None => Replies::connect(&self.client3, self.unavailable_timeout).await?,
        };
        let reply_channel = format!("{}-{}", self.channel, protocol::random_id());
        replies
            .listen(&reply_channel, self.unavailable_timeout)
            .await?;
        let outcome = self
            .collect(conn, &mut replies, &reply_channel, expected)
            .await;
        if outcome.is_ok() && replies.stop().await.is_ok() {
            *self.shared.replies.lock().await = Some(replies);
        }
        outcome
    }

    /// Ping and collect the records for [`RedisLock::probe`].
    async fn collect(
        &self,
        conn: &mut MultiplexedConnection,
        replies: &mut Replies,
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
    async fn confirm(&self, conn: &mut MultiplexedConnection) -> Result<bool> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Held,
    Promote,
    StayElected,
    GiveUp,
}

/// Refuse a cluster node or a replica: neither gives mutual exclusion.
async fn check_topology(conn: &mut MultiplexedConnection) -> Result<()> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    if info.lines().any(|line| line.trim() == "redis_mode:cluster") {
        return Err(Error::Unsupported(
            "this Redis server is a cluster node: pub/sub counts are per node, so the lock would not be exclusive"
                .into(),
        ));
    }
    let role: redis::Value = redis::cmd("ROLE").query_async(conn).await?;
    let primary = match &role {
        redis::Value::Array(items) => {
            matches!(items.first(), Some(redis::Value::BulkString(b)) if b == b"master")
        }
        _ => false,
    };
    if !primary {
        return Err(Error::Unsupported(
            "this Redis server is not a primary: subscriptions are not replicated, so the lock would not be exclusive"
                .into(),
        ));
    }
    Ok(())
}

/// A held Redis lock. Dropping it releases the lock at once (it
/// unsubscribes; Rust waiters are told on a side channel).
#[must_use = "if unused the lock is released immediately"]
pub struct RedisLockGuard {
    held: Option<(Subscription, OwnedMutexGuard<Option<Subscription>>)>,
    lost: watch::Receiver<Option<String>>,
    shared: Arc<Shared>,
    channel: String,
    holder_id: String,
    mode: LockMode,
    fencing_token: Option<u64>,
}

impl RedisLockGuard {
    /// The fencing token drawn for this acquisition (with
    /// [`RedisLock::fencing`], exclusive locks only): it grows with every
    /// fenced acquisition, Python's included, so a protected resource can
    /// reject a stale holder.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }

    /// The lock name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The holder id peers see.
    pub fn holder_id(&self) -> &str {
        &self.holder_id
    }

    /// Exclusive or shared.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// Whether the lock was lost (its subscription connection died: killed
    /// by a reaper, a server restart, a broken link). Never blocks.
    pub fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    /// Check the lock is still held.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] with the reason when it was lost.
    pub fn ensure_held(&self) -> Result<()> {
        match self.lost.borrow().clone() {
            Some(reason) => Err(Error::Lost {
                channel: self.channel.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Block until the lock is lost or `timeout` passes; `true` if lost.
    /// Do not call it from async code: use [`RedisLockGuard::lost`].
    pub fn wait_lost(&self, timeout: Duration) -> bool {
        let mut lost = self.lost.clone();
        runtime().block_on(async move {
            tokio::time::timeout(timeout, lost.wait_for(Option::is_some))
                .await
                .is_ok_and(|r| r.is_ok())
        })
    }

    /// Wait until the lock is lost (async); returns the reason.
    pub async fn lost(&self) -> String {
        let mut lost = self.lost.clone();
        match lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the subscription ended".into(),
        }
    }

    /// Release now: when this returns (outside async code) the
    /// subscription is gone and Rust waiters have been told.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] when the lock had already been lost (someone else
    /// may have held it meanwhile).
    pub fn release(mut self) -> Result<()> {
        let held = self.ensure_held();
        if let Some(release) = self.take_release() {
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime().spawn(release);
            } else {
                runtime().block_on(release);
            }
        }
        held
    }

    /// Release now (async).
    ///
    /// # Errors
    ///
    /// As [`RedisLockGuard::release`].
    pub async fn release_async(mut self) -> Result<()> {
        let held = self.ensure_held();
        if let Some(release) = self.take_release() {
            let _ = runtime().spawn(release).await;
        }
        held
    }

    /// The work of releasing: unsubscribe and announce, keep the connection
    /// for the next acquisition if it is healthy, free the instance.
    fn take_release(&mut self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let (mut sub, mut slot) = self.held.take()?;
        *self
            .shared
            .released_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Some(async move {
            if sub.unsubscribe(true).await.is_ok() && sub.lost().is_none() {
                *slot = Some(sub);
            }
            drop(slot);
        })
    }
}

impl Drop for RedisLockGuard {
    fn drop(&mut self) {
        if let Some(release) = self.take_release() {
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime().spawn(release);
            } else {
                runtime().block_on(release);
            }
        }
    }
}

impl std::fmt::Debug for RedisLockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLockGuard")
            .field("channel", &self.channel)
            .field("holder_id", &self.holder_id)
            .field("mode", &self.mode)
            .field("fencing_token", &self.fencing_token)
            .field("lost", &self.is_lost())
            .finish()
    }
}
