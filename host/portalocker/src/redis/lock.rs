//! The public lock: its settings, and acquiring from blocking or async code.

use std::sync::Arc;
use std::time::Duration;

use super::guard::RedisLockGuard;
use super::pool::Pool;
use super::protocol;
use super::runtime::{self, InRuntime};
use super::shared::Shared;
use super::{Client, DEFAULT_UNAVAILABLE_TIMEOUT};
use crate::error::{Error, Result};
use crate::flags::LockMode;
use crate::wait::Wait;

/// A Redis lock named `channel`, exclusive or shared. Cheap to clone
/// (clones share the holder id, so they take turns).
///
/// Defaults are portalocker's: exclusive, [`Wait::DEFAULT`] (up to 5 s, at
/// most [`DEFAULT_CHECK_INTERVAL`](crate::DEFAULT_CHECK_INTERVAL) between
/// full attempts), 1 s unavailable timeout, no fencing.
#[derive(Debug, Clone)]
pub struct RedisLock {
    pub(crate) pool: Pool,
    /// The lock name, as given.
    pub(crate) name: String,
    /// Its channel on the wire: the name, hash-tagged on a cluster
    /// (`{name}`, so its keys and channels share its slot).
    pub(crate) wire: String,
    pub(crate) holder_id: String,
    pub(crate) mode: LockMode,
    pub(crate) wait: Wait,
    pub(crate) unavailable_timeout: Duration,
    pub(crate) fencing: bool,
    pub(crate) shared: Arc<Shared>,
}

impl RedisLock {
    /// A lock named `channel` on the Redis server at `url`
    /// (`redis://host:port/db`), with connections of its own. Connects
    /// lazily.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed URL or lock name (see
    /// [`RedisLock::with_pool`]).
    pub fn open(url: &str, channel: &str) -> Result<Self> {
        Self::with_pool(&Pool::open(url)?, channel)
    }

    /// A lock named `channel` through an existing client, with connections
    /// of its own.
    ///
    /// # Errors
    ///
    /// As [`RedisLock::with_pool`].
    pub fn with_client(client: Client, channel: &str) -> Result<Self> {
        Self::with_pool(&Pool::with_client(client)?, channel)
    }

    /// A lock named `channel` using the connections of `pool`, which any
    /// number of locks may share.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a name that is empty, longer than
    /// [`MAX_CHANNEL_LEN`](super::MAX_CHANNEL_LEN) bytes, or holds anything
    /// but printable ASCII without spaces: the protocol names each holder's
    /// connection after the lock, and Redis refuses other client names
    /// (so Python's portalocker cannot use such names either). On a
    /// cluster, also a name that starts with `}`: the lock is `{name}` on
    /// the wire, a hash tag that keeps its keys and channels in its slot.
    pub fn with_pool(pool: &Pool, channel: &str) -> Result<Self> {
        protocol::validate_channel(channel).map_err(Error::InvalidArgument)?;
        let wire = if pool.is_cluster() {
            super::cluster::wire_channel(channel).map_err(Error::InvalidArgument)?
        } else {
            channel.to_owned()
        };
        Ok(Self {
            pool: pool.clone(),
            name: channel.to_owned(),
            wire,
            holder_id: protocol::random_id(),
            mode: LockMode::Exclusive,
            wait: Wait::DEFAULT,
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
    pub fn lock_mode(mut self, mode: LockMode) -> Self {
        self.mode = mode;
        self
    }

    /// How [`RedisLock::acquire`] waits (default [`Wait::DEFAULT`]): for how
    /// long, and with [`Wait::polling`] the longest pause between full
    /// attempts (portalocker's `check_interval`; a release is usually noticed
    /// much sooner, through the subscriber count and release notices).
    /// [`Wait::NONE`] is one attempt (portalocker's `fail_when_locked`).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// How long a probe waits for replies before treating silent
    /// subscribers as wedged and reaping them (default 1 s).
    pub fn unavailable_timeout(mut self, timeout: Duration) -> Self {
        self.unavailable_timeout = timeout;
        self
    }

    /// Draw a fencing token (`INCRBY C-fence 1`, shared with portalocker) on
    /// every acquisition. portalocker draws one for exclusive grants; we
    /// draw one for shared grants too, so a resource that checks a reader's
    /// token rejects a writer reaped while readers took over (a stopped
    /// process that resumes can write once before it learns its loss).
    pub fn fencing(mut self, fencing: bool) -> Self {
        self.fencing = fencing;
        self
    }

    /// The lock name (the Redis channel; on a cluster the channel is
    /// `{name}`).
    pub fn channel(&self) -> &str {
        &self.name
    }

    /// This lock, working through `pool` (a server [`Pool::resolve`]
    /// found): its clones share the turn and what it learned.
    pub(crate) fn on(&self, pool: Pool) -> Self {
        Self {
            pool,
            ..self.clone()
        }
    }

    /// This instance's holder id (32 lowercase hex digits).
    pub fn holder_id(&self) -> &str {
        &self.holder_id
    }

    /// The connections this lock uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Acquire, waiting as configured and blocking the calling thread. Do
    /// not call it from async code: use [`RedisLock::acquire_async`] there.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] / [`Error::TimedOut`] on contention;
    /// [`Error::RedisUnavailable`] when the server stayed unreachable until
    /// the deadline; [`Error::Unsupported`] for a cluster node or a replica;
    /// [`Error::Redis`] when the server refuses (authentication, ACL).
    pub fn acquire(&self) -> Result<RedisLockGuard> {
        self.acquire_blocking(self.wait)
    }

    /// One attempt; never waits for a holder.
    ///
    /// # Errors
    ///
    /// As [`RedisLock::acquire`].
    pub fn try_acquire(&self) -> Result<RedisLockGuard> {
        self.acquire_blocking(Wait::NONE)
    }

    /// Wait at most `timeout`, whatever the configured wait.
    ///
    /// # Errors
    ///
    /// As [`RedisLock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RedisLockGuard> {
        self.acquire_blocking(self.wait.for_up_to(timeout))
    }

    /// Acquire on the Redis runtime, blocking this thread until done.
    fn acquire_blocking(&self, wait: Wait) -> Result<RedisLockGuard> {
        let lock = self.clone();
        runtime::block_on(async move { lock.acquire_inner(wait).await })?
    }

    /// Acquire without blocking a thread, from any async runtime.
    ///
    /// Cancel-safe: the work runs in the caller's task, so dropping the
    /// future stops it where it is, and whatever it had taken (its turn, its
    /// subscription and connection, a grant it had just won) is let go on
    /// the spot, without a task left behind.
    ///
    /// # Errors
    ///
    /// As [`RedisLock::acquire`].
    pub async fn acquire_async(&self) -> Result<RedisLockGuard> {
        InRuntime::new(self.acquire_inner(self.wait))?.await
    }
}
