//! Taking the lock: portalocker's attempt loop (docs/redis-protocol.md §6),
//! with waits that watch the subscriber count and Rust holders' release
//! notices instead of sleeping blindly.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::OwnedMutexGuard;

use super::DEFAULT_UNAVAILABLE_TIMEOUT;
use super::connection::{Advertised, LockConnection};
use super::decide::{self, Probe, Round};
use super::guard::{Grant, RedisLockGuard};
use super::lock::RedisLock;
use super::protocol::{self, Notice, WireMode};
use super::router::Listener;
use crate::error::{Error, Result};
use crate::flags::LockMode;
use crate::wait::{DEFAULT_CHECK_INTERVAL, Started, Wait};

/// portalocker's `thread_sleep_time`: the pause when no check interval is set.
const THREAD_SLEEP: Duration = Duration::from_millis(100);
/// How often a waiter checks the subscriber count between attempts.
const COUNT_POLL: Duration = Duration::from_millis(10);
/// The first pause after the server could not be reached; it doubles up to
/// [`RETRY_LONGEST`].
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_LONGEST: Duration = Duration::from_millis(500);
/// How long Rust contenders hold back after a release while a waiter that
/// polls is waiting (portalocker's waiters poll every 0.125-0.375 s), so it
/// gets its turn.
pub(crate) const POLLER_WINDOW: Duration = Duration::from_millis(400);
/// A release this recent, heard by another instance's listener, is handed
/// off before this instance tries again.
const HANDOFF_WINDOW: Duration = Duration::from_millis(5);
/// How long a hand-off waits for the waiter to subscribe.
const HANDOFF_GRACE: Duration = Duration::from_millis(2);
/// How long a waiter that saw the count drop waits for the holder's
/// release notice before trying (see `RedisLock::settle`).
const NOTICE_GRACE: Duration = Duration::from_millis(1);
/// How long hand-offs pause after one found nobody coming (an idle
/// listener then costs one [`HANDOFF_GRACE`] per this, 2%).
const UNHEEDED_FOR: Duration = Duration::from_millis(100);
/// How long a hand-off waits for the waiter to finish.
const HANDOFF_LONGEST: Duration = Duration::from_millis(20);

/// How a run of attempts ended without the lock.
struct Failed {
    error: Error,
    /// Whether the lock connection was closed under it (see
    /// [`LockConnection::cut`]).
    cut: bool,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Self { error, cut: false }
    }
}

/// Where a round of an attempt leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Held,
    StayElected,
    GiveUp,
}

impl RedisLock {
    /// The whole acquisition: take this instance's turn, then run attempts
    /// on a lock connection from the pool. Trouble that the server or the
    /// link may get over costs only the attempt under way: the connections
    /// are renewed and it tries again after a pause, until the deadline.
    /// Whatever ends it without the lock leaves the channel (awaited) first.
    pub(crate) async fn acquire_inner(&self, wait: Wait) -> Result<RedisLockGuard> {
        let started = Instant::now();
        let waiting = wait.start();
        let deadline = waiting.deadline();
        let turn = self.take_turn(&waiting).await?;
        let mut pause = RETRY_FIRST;
        let mut recut = false;
        loop {
            match self.attempts_on_its_server(&waiting, wait).await {
                Ok((pool, conn, fencing_token)) => {
                    return Ok(RedisLockGuard::new(Grant {
                        conn,
                        turn,
                        pool,
                        origin: self.pool.clone(),
                        shared: Arc::clone(&self.shared),
                        name: self.name.clone(),
                        wire: self.wire.clone(),
                        holder_id: self.holder_id.clone(),
                        mode: self.mode,
                        fencing_token,
                    }));
                }
                Err(Failed {
                    error: Error::RedisUnavailable(reason),
                    cut,
                }) => {
                    // Perhaps the topology changed: look the server up
                    // again (a cluster or Sentinel pool).
                    self.pool.invalidate().await;
                    let now = Instant::now();
                    if waiting.expired() && cut && !recut {
                        // The lock connection was closed under the last
                        // attempt: the server went away, or a peer's
                        // reaper killed it (portalocker's reapers kill a
                        // contender that joined just after their ping).
                        // One more attempt at once tells the two apart: a
                        // server that is gone refuses it.
                        log::debug!("{:?}: {reason}; one more attempt", self.wire);
                        recut = true;
                        continue;
                    }
                    if waiting.expired() {
                        return Err(Error::RedisUnavailable(format!(
                            "{reason} (tried for {:?})",
                            started.elapsed()
                        )));
                    }
                    log::debug!("{:?}: {reason}; trying again", self.wire);
                    let mut nap = pause.mul_f64(0.5 + fastrand::f64());
                    if let Some(deadline) = deadline {
                        nap = nap.min(deadline - now);
                    }
                    tokio::time::sleep(nap).await;
                    pause = (pause * 2).min(RETRY_LONGEST);
                }
                Err(Failed { error, .. }) => return Err(error),
            }
        }
    }

    /// Find the server that serves the lock now, and run attempts there;
    /// its command connection is renewed after trouble.
    async fn attempts_on_its_server(
        &self,
        waiting: &Started,
        wait: Wait,
    ) -> std::result::Result<(super::Pool, LockConnection, Option<u64>), Failed> {
        let on = self.on(self.pool.resolve(&self.wire).await?);
        match on.attempts_on_a_connection(waiting, wait).await {
            Ok((conn, fencing_token)) => Ok((on.pool, conn, fencing_token)),
            Err(failed) => {
                if matches!(failed.error, Error::RedisUnavailable(_) | Error::Redis(_)) {
                    on.pool.forget_command().await;
                }
                Err(failed)
            }
        }
    }

    /// How many connections are subscribed to the lock's channel, on its
    /// server (through `conn`) and the peers that may still hold a
    /// subscription (see [`Pool::count`](super::Pool)).
    pub(crate) async fn count(&self, conn: &mut MultiplexedConnection) -> Result<i64> {
        self.pool.count(conn, &self.wire).await
    }

    /// One run of attempts on a lock connection; on failure the connection
    /// has left the channel (or is closed, which leaves it too).
    async fn attempts_on_a_connection(
        &self,
        waiting: &Started,
        wait: Wait,
    ) -> std::result::Result<(LockConnection, Option<u64>), Failed> {
        let mut conn = self.pool.command().await?;
        self.yield_to_waiters(&mut conn, waiting.deadline()).await?;
        let mut lock_conn = self.pool.lock_connection().await?;
        match self
            .attempts(&mut conn, &mut lock_conn, waiting, wait)
            .await
        {
            Ok(fencing_token) => Ok((lock_conn, fencing_token)),
            Err(error) => {
                // Asked only when the wait is over (see `acquire_inner`).
                let cut = matches!(error, Error::RedisUnavailable(_))
                    && waiting.expired()
                    && lock_conn.cut().await;
                if lock_conn.subscribed() && lock_conn.lost().is_none() {
                    let _ = lock_conn.unsubscribe(None).await;
                }
                // Kept only if it left the channel; closed (and so
                // unsubscribed by the server) otherwise.
                self.pool.give_back(lock_conn);
                Err(Failed { error, cut })
            }
        }
    }

    /// This instance's turn: clones share a holder id, so one acquisition
    /// (and then its guard) at a time. A turn still held by a release under
    /// way is waited for whatever the timeout: it is ours, not a holder's.
    async fn take_turn(&self, waiting: &Started) -> Result<OwnedMutexGuard<()>> {
        let turn = &self.shared.turn;
        loop {
            if let Ok(taken) = Arc::clone(turn).try_lock_owned() {
                return Ok(taken);
            }
            let releasing = self.shared.releasing.load(Ordering::SeqCst) > 0;
            match waiting.deadline() {
                _ if releasing => return Ok(Arc::clone(turn).lock_owned().await),
                None => return Ok(Arc::clone(turn).lock_owned().await),
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline.into(), Arc::clone(turn).lock_owned())
                        .await
                    {
                        Ok(taken) => return Ok(taken),
                        Err(_) if self.shared.releasing.load(Ordering::SeqCst) > 0 => {}
                        Err(_) => return Err(waiting.contention(None)),
                    }
                }
            }
        }
    }

    /// Right after releasing, let the waiters take their turn before this
    /// instance takes the lock again (a releaser that re-acquires at once
    /// would nearly always win): a waiter that heard the release notice,
    /// until it has come and gone (see [`RedisLock::hand_off`]); a waiter
    /// that polls (it pinged while we held), for a whole poll interval.
    async fn yield_to_waiters(
        &self,
        conn: &mut MultiplexedConnection,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let released = *self
            .shared
            .released
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(released) = released else {
            return Ok(());
        };
        match released.notice {
            Notice::Yield => {
                let until = released.at + POLLER_WINDOW;
                let until = deadline.map_or(until, |d| until.min(d));
                tokio::time::sleep_until(until.into()).await;
                Ok(())
            }
            Notice::Released
                if released.others.unwrap_or(0) > 0
                    && released.at.elapsed() < HANDOFF_WINDOW
                    && !self.unheeded() =>
            {
                self.hand_off(conn, deadline).await
            }
            Notice::Released => Ok(()),
        }
    }

    /// Whether this instance itself released with a `yield` within the
    /// poller window (then it already held back, and a queued `yield` is
    /// likely its own).
    fn yielded_lately(&self) -> bool {
        self.shared
            .released
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|r| r.notice == Notice::Yield && r.at.elapsed() < POLLER_WINDOW)
    }

    fn unheeded_at(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.shared
            .unheeded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a recent hand-off found nobody coming: skip hand-offs for
    /// [`UNHEEDED_FOR`], then try again (a waiter may have been slow to
    /// come, not absent).
    fn unheeded(&self) -> bool {
        self.unheeded_at()
            .is_some_and(|at| at.elapsed() < UNHEEDED_FOR)
    }

    /// Hand the lock to a waiter that heard our release: wait for another
    /// holder's release notice (the waiter came and went), checking the
    /// channel's subscriber count every millisecond (tokio's timer
    /// resolution) in case it announces nothing. Stop when the count has
    /// risen and dropped again; after [`HANDOFF_GRACE`] if nobody came (then
    /// hand off no more for [`UNHEEDED_FOR`], or until this instance meets
    /// contention again: the listener was idle); after [`HANDOFF_LONGEST`] (a long hold: wait for
    /// it as any waiter does); or at the deadline.
    async fn hand_off(
        &self,
        conn: &mut MultiplexedConnection,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let mut notices = self.shared.notices.lock().await.take();
        if notices.as_ref().is_some_and(|n| !self.pool.owns(n)) {
            notices = None;
        }
        let outcome = self.hand_off_listening(conn, deadline, &mut notices).await;
        *self.shared.notices.lock().await = notices;
        outcome
    }

    async fn hand_off_listening(
        &self,
        conn: &mut MultiplexedConnection,
        deadline: Option<Instant>,
        notices: &mut Option<Listener>,
    ) -> Result<()> {
        let start = Instant::now();
        let longest = start + HANDOFF_LONGEST;
        let limit = deadline.map_or(longest, |d| longest.min(d));
        // Notices from before our release are not news (ours, late, is
        // told apart by its sender).
        if notices.as_mut().is_some_and(|n| !n.drain()) {
            *notices = None;
        }
        let mut came = false;
        loop {
            let now = Instant::now();
            if now >= limit {
                return Ok(());
            }
            if !came && now >= start + HANDOFF_GRACE {
                *self.unheeded_at() = Some(Instant::now());
                return Ok(());
            }
            let nap = Duration::from_millis(1).min(limit - now);
            match notices {
                Some(listener) => tokio::select! {
                    notice = listener.recv() => match notice {
                        Some(payload) if Notice::is_own(&payload, &self.holder_id) => continue,
                        Some(payload) => {
                            if Notice::parse(&payload) == Notice::Yield {
                                // A waiter that polls gets its turn first,
                                // whatever this hand-off's own limits.
                                let window = Instant::now() + POLLER_WINDOW;
                                let until = deadline.map_or(window, |d| window.min(d));
                                tokio::time::sleep_until(until.into()).await;
                            }
                            return Ok(());
                        }
                        None => *notices = None,
                    },
                    () = tokio::time::sleep(nap) => {}
                },
                None => tokio::time::sleep(nap).await,
            }
            if self.count(conn).await? > 0 {
                came = true;
            } else if came {
                let window = Instant::now() + POLLER_WINDOW;
                self.settle(notices, deadline.map_or(window, |d| window.min(d)))
                    .await;
                return Ok(());
            }
        }
    }

    /// What this acquisition advertises.
    fn advertised(&self, mode: WireMode, elected: bool) -> Advertised {
        Advertised {
            channel: self.wire.clone(),
            holder_id: self.holder_id.clone(),
            mode,
            elected,
            held: false,
            loss_after: self.loss_after(),
            listening: false,
            leaving: 0,
        }
    }

    /// How long the server may stay silent before a holder counts its lock
    /// as lost: half the reap window of a default peer (or of ours, if
    /// shorter), so the holder knows before any such peer can reap it.
    pub(crate) fn loss_after(&self) -> Duration {
        self.unavailable_timeout.min(DEFAULT_UNAVAILABLE_TIMEOUT) / 2
    }

    /// Subscribe on `lock_conn`, once more on a fresh connection if the
    /// lent one turned out dead (a reaper may kill connections); counts
    /// the subscribers on the server and its peers.
    async fn subscribe(
        &self,
        lock_conn: &mut LockConnection,
        advertised: Advertised,
    ) -> Result<i64> {
        let here = match lock_conn
            .subscribe(advertised.clone(), self.unavailable_timeout)
            .await
        {
            Ok(subscribers) => subscribers,
            Err(_) => {
                *lock_conn = self.pool.lock_connection().await?;
                lock_conn
                    .subscribe(advertised, self.unavailable_timeout)
                    .await?
            }
        };
        Ok(here + self.pool.peer_count(&self.wire).await?)
    }

    /// §6: attempts until held (returning the fencing token, if any), or
    /// until contention ends it. `lock_conn` is subscribed on success.
    async fn attempts(
        &self,
        conn: &mut MultiplexedConnection,
        lock_conn: &mut LockConnection,
        waiting: &Started,
        wait: Wait,
    ) -> Result<Option<u64>> {
        // The release notices stay subscribed between acquisitions, so a
        // waiter is listening before its first attempt fails.
        let mut notices: Option<Listener> = self.shared.notices.lock().await.take();
        // A listener on another server (before a failover) hears nothing
        // of this one.
        if notices.as_ref().is_some_and(|n| !self.pool.owns(n)) {
            notices = None;
        }
        let outcome = self
            .attempts_listening(conn, lock_conn, waiting, wait, &mut notices)
            .await;
        *self.shared.notices.lock().await = notices;
        outcome
    }

    async fn attempts_listening(
        &self,
        conn: &mut MultiplexedConnection,
        lock_conn: &mut LockConnection,
        waiting: &Started,
        wait: Wait,
        notices: &mut Option<Listener>,
    ) -> Result<Option<u64>> {
        let deadline = waiting.deadline();
        let reader = self.mode == LockMode::Shared;
        let initial = if reader {
            WireMode::Shared
        } else {
            WireMode::Pending
        };
        let mut elected = false;
        loop {
            // Notices that came before this attempt are news no more, but
            // a poller's `yield` is still honoured (it may have come while
            // this attempt was being prepared).
            if let Some(listener) = notices.as_mut() {
                match listener.take_queued() {
                    None => *notices = None,
                    Some(queued) => {
                        let yielded = queued.iter().any(|p| Notice::parse(p) == Notice::Yield);
                        if yielded && !self.yielded_lately() {
                            let window = Instant::now() + POLLER_WINDOW;
                            let until = deadline.map_or(window, |d| window.min(d));
                            tokio::time::sleep_until(until.into()).await;
                        }
                    }
                }
            }
            // A fresh writer answers `exclusive` from the moment it
            // subscribes (docs/redis-protocol.md §6.2): whoever subscribes
            // after its count backs off, so a count of 1 is a grant at once,
            // with no confirming round trip.
            let optimistic = !reader && !lock_conn.subscribed();
            let subscribers = if lock_conn.subscribed() {
                self.count(&mut lock_conn.connection()).await?
            } else {
                let mode = if optimistic {
                    WireMode::Exclusive
                } else {
                    initial
                };
                self.subscribe(lock_conn, self.advertised(mode, false))
                    .await?
            };
            if optimistic {
                if subscribers <= 1 {
                    return self.granted(lock_conn).await;
                }
                // Not alone: a contender like any other from here on.
                lock_conn.advertise(initial, false);
            }
            let probe;
            let found = if subscribers <= 1 {
                Probe::Alone
            } else {
                // Contention: hand the lock off after releasing again.
                *self.unheeded_at() = None;
                probe = self.probe(conn, subscribers).await?;
                probe.as_deref().map_or(Probe::Inconclusive, Probe::Records)
            };
            let verdict = decide::round(reader, elected, waiting.once(), found, &self.holder_id);
            let step = match verdict {
                Round::Held => Step::Held,
                Round::GiveUp => {
                    elected = false;
                    Step::GiveUp
                }
                Round::StayElected => {
                    elected = true;
                    lock_conn.advertise(WireMode::Pending, true);
                    Step::StayElected
                }
                Round::Promote { elected: won } => {
                    elected = won;
                    lock_conn.advertise(WireMode::Exclusive, elected);
                    if self.confirm(&mut lock_conn.connection()).await? {
                        Step::Held
                    } else {
                        elected = false;
                        Step::GiveUp
                    }
                }
            };
            match step {
                Step::Held => return self.granted(lock_conn).await,
                Step::GiveUp => {
                    lock_conn.advertise(initial, false);
                    if let Err(e) = lock_conn.unsubscribe(None).await {
                        // The connection died as it left (a peer's reaper
                        // may kill a contender that joined after its ping),
                        // or the server stalls: closing the connection
                        // leaves the channel all the same, and the round's
                        // verdict stands.
                        log::debug!("{:?}: leaving failed ({e}); closing instead", self.wire);
                        lock_conn.abandon();
                        if !waiting.expired() {
                            *lock_conn = self.pool.lock_connection().await?;
                        }
                    }
                }
                Step::StayElected => {}
            }
            let now = Instant::now();
            if waiting.expired() {
                return Err(waiting.contention(None));
            }
            let jitter = 0.5 + fastrand::f64();
            let base = match wait.poll_interval() {
                Some(interval) if interval.is_zero() => THREAD_SLEEP,
                Some(interval) => interval,
                None => DEFAULT_CHECK_INTERVAL,
            };
            let mut until = now + base.mul_f64(jitter);
            if let Some(deadline) = deadline {
                until = until.min(deadline);
            }
            if notices.is_none() {
                *notices = self.release_notices().await;
            }
            // Wake when the count drops below what it is now (without us,
            // unless we stay subscribed as an elected writer), or to us
            // alone.
            let baseline = self.count(conn).await?;
            let own = i64::from(lock_conn.subscribed());
            self.pause(conn, notices, until, baseline, own).await?;
        }
    }

    /// The lock is ours: draw the fencing token (shared grants too) on the
    /// lock connection
    /// itself, so a token is drawn only while its subscription lives (a
    /// killed connection runs no more commands, so a peer that reaped us
    /// draws a later token than any we could).
    ///
    /// A lock whose connection is cut before the caller has it was never
    /// held: like any transient trouble that costs the attempt, not the
    /// wait (the caller tries again on fresh connections until the
    /// deadline). A token the server refuses to draw (the fencing key is
    /// not a counter) is an error at once.
    async fn granted(&self, lock_conn: &mut LockConnection) -> Result<Option<u64>> {
        let cut = |reason| {
            Error::RedisUnavailable(format!("the lock was lost as it was granted: {reason}"))
        };
        if let Some(reason) = lock_conn.lost() {
            return Err(cut(reason));
        }
        let token = if self.fencing {
            let token: u64 = redis::cmd("INCRBY")
                .arg(protocol::fence_key(&self.wire))
                .arg(1)
                .query_async(&mut lock_conn.connection())
                .await
                .map_err(|e| {
                    let reason = format!("drawing the fencing token failed: {e}");
                    // A dropped link, or a cluster's MOVED/ASK/READONLY (the
                    // slot moved or its shard failed over as it was
                    // granted): the attempt is lost, not the wait.
                    if e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_timeout()
                        || matches!(Error::from(e.clone()), Error::RedisUnavailable(_))
                    {
                        cut(reason)
                    } else {
                        Error::Lost {
                            channel: self.name.clone(),
                            reason,
                        }
                    }
                })?;
            Some(token)
        } else {
            None
        };
        lock_conn.hold();
        Ok(token)
    }

    /// Listen for Rust holders' release notices of this lock (best effort:
    /// waiting works without them).
    async fn release_notices(&self) -> Option<Listener> {
        let router = self.pool.notices().await.ok()?;
        router
            .listen(&protocol::release_channel(&self.wire))
            .await
            .ok()
    }

    /// Wait until `until`, or sooner when the subscriber count drops below
    /// what the last attempt saw, or to `own` (1 for an elected writer still
    /// subscribed, else 0): contenders that all gave up leave the lock free,
    /// and an elected writer waiting for a contender that has left would
    /// otherwise wait the whole interval, as nobody announces either; or
    /// when a Rust holder announces its release. The count is checked after a jittered
    /// 100-300 µs, doubling to [`COUNT_POLL`], so contenders that gave up
    /// together do not come back together.
    async fn pause(
        &self,
        conn: &mut MultiplexedConnection,
        notices: &mut Option<Listener>,
        until: Instant,
        seen: i64,
        own: i64,
    ) -> Result<()> {
        let mut poll = Duration::from_micros(100).mul_f64(1.0 + 2.0 * fastrand::f64());
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            let nap = poll.min(until - now);
            poll = (poll * 2).min(COUNT_POLL);
            match notices {
                Some(listener) => tokio::select! {
                    notice = listener.recv() => match notice {
                        // Our own, late: not news.
                        Some(payload) if Notice::is_own(&payload, &self.holder_id) => continue,
                        Some(payload) => match Notice::parse(&payload) {
                            Notice::Released => return Ok(()),
                            // A waiter that polls gets its turn first.
                            Notice::Yield => {
                                tokio::time::sleep_until(until.min(Instant::now() + POLLER_WINDOW).into()).await;
                                return Ok(());
                            }
                        },
                        None => *notices = None,
                    },
                    () = tokio::time::sleep(nap) => {}
                },
                None => tokio::time::sleep(nap).await,
            }
            let count = self.count(conn).await?;
            if count < seen || count <= own {
                self.settle(notices, until).await;
                return Ok(());
            }
        }
    }

    /// The count just dropped: the holder's release notice, published in
    /// the same batch as its unsubscription, may still be on its way, and a
    /// `yield` must not be missed (a polling waiter would starve). Wait for
    /// it up to [`NOTICE_GRACE`]; on a `yield`, hold back the poller's
    /// window (until `until` at most). A holder that sends no notices (a
    /// Python one) costs the grace.
    async fn settle(&self, notices: &mut Option<Listener>, until: Instant) {
        let Some(listener) = notices else {
            return;
        };
        let grace = Instant::now() + NOTICE_GRACE;
        loop {
            match tokio::time::timeout_at(grace.into(), listener.recv()).await {
                Ok(Some(payload)) if Notice::is_own(&payload, &self.holder_id) => {}
                Ok(Some(payload)) => {
                    if Notice::parse(&payload) == Notice::Yield {
                        let window = Instant::now() + POLLER_WINDOW;
                        tokio::time::sleep_until(window.min(until).into()).await;
                    }
                    return;
                }
                Ok(None) => {
                    *notices = None;
                    return;
                }
                Err(_) => return,
            }
        }
    }
}
