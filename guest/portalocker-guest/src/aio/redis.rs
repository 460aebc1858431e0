//! Distributed locks on the Redis server the host chose, awaited.

use std::marker::PhantomData;
use std::time::Duration;

use super::error::Result;
use super::file::LockMode;
use super::wit::portalocker::locks::redis_lock as wit;

/// portalocker's Redis lock: shared with native programs, 0.1.0 plugins and
/// Python programs that use the same name (inside the host's namespace).
///
/// ```no_run
/// # async fn f() -> portalocker_guest::aio::Result<()> {
/// use portalocker_guest::aio::RedisLock;
/// let lock = RedisLock::open("nightly-report", true)?;
/// let guard = lock.lock().await?;
/// println!("fencing token {:?}", guard.fencing_token());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisLock(wit::RedisLock);

impl RedisLock {
    /// Name the lock; with `fencing`, every acquisition (shared ones too)
    /// draws a fencing token. Never waits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](super::Error::InvalidArgument) for a bad
    /// name, [`Error::Unsupported`](super::Error::Unsupported) when the host
    /// grants no Redis server.
    pub fn open(name: impl AsRef<str>, fencing: bool) -> Result<Self> {
        Ok(Self(wit::RedisLock::open(name.as_ref(), fencing)?))
    }

    /// Take the exclusive lock, waiting until it is free. Dropping the
    /// future cancels the wait and leaves no subscription behind.
    ///
    /// # Errors
    ///
    /// Contention past the host's maximum wait, an unreachable server.
    pub async fn lock(&self) -> Result<RedisLockGuard<'_>> {
        self.0
            .lock(LockMode::Exclusive)
            .await
            .map(RedisLockGuard::new)
    }

    /// Take a shared lock, waiting until no writer holds or waits.
    ///
    /// # Errors
    ///
    /// As [`RedisLock::lock`].
    pub async fn lock_shared(&self) -> Result<RedisLockGuard<'_>> {
        self.0.lock(LockMode::Shared).await.map(RedisLockGuard::new)
    }

    /// One attempt at the exclusive lock (it talks to the server, so it is
    /// awaited, but never waits for a holder).
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](super::Error::WouldBlock) when held.
    pub async fn try_lock(&self) -> Result<RedisLockGuard<'_>> {
        self.0
            .try_lock(LockMode::Exclusive)
            .await
            .map(RedisLockGuard::new)
    }

    /// One attempt at a shared lock.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](super::Error::WouldBlock) when a writer holds
    /// or waits.
    pub async fn try_lock_shared(&self) -> Result<RedisLockGuard<'_>> {
        self.0
            .try_lock(LockMode::Shared)
            .await
            .map(RedisLockGuard::new)
    }

    /// Take the exclusive lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`](super::Error::TimedOut) when still held.
    pub async fn lock_for(&self, timeout: Duration) -> Result<RedisLockGuard<'_>> {
        self.0
            .lock_for(LockMode::Exclusive, crate::nanos(timeout))
            .await
            .map(RedisLockGuard::new)
    }

    /// Take a shared lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`](super::Error::TimedOut) when a writer still
    /// holds or waits.
    pub async fn lock_shared_for(&self, timeout: Duration) -> Result<RedisLockGuard<'_>> {
        self.0
            .lock_for(LockMode::Shared, crate::nanos(timeout))
            .await
            .map(RedisLockGuard::new)
    }

    /// The name given to [`RedisLock::open`].
    pub fn name(&self) -> String {
        self.0.name()
    }
}

/// A held Redis lock; dropping it releases the lock at once.
#[derive(Debug)]
#[must_use = "if unused the lock is released immediately"]
pub struct RedisLockGuard<'a> {
    inner: wit::RedisLockGuard,
    _lock: PhantomData<&'a RedisLock>,
}

impl RedisLockGuard<'_> {
    fn new(inner: wit::RedisLockGuard) -> Self {
        Self {
            inner,
            _lock: PhantomData,
        }
    }

    /// Exclusive or shared.
    pub fn mode(&self) -> LockMode {
        self.inner.mode()
    }

    /// The fencing token of this acquisition, if fencing was asked for.
    pub fn fencing_token(&self) -> Option<u64> {
        self.inner.fencing_token()
    }

    /// Whether the lock was lost (someone else may hold it now).
    pub fn is_lost(&self) -> bool {
        self.inner.is_lost()
    }

    /// A future that resolves, with the reason, when the lock is lost (its subscription
    /// ended: the connection was killed, the server restarted). Each call
    /// starts a new watch: in a loop, keep one future pinned.
    ///
    /// # Errors
    ///
    /// [`Error::LimitExceeded`](super::Error::LimitExceeded) when the
    /// plugin already has as many handles as the host allows (each watch
    /// is one until dropped).
    pub fn lost(&self) -> Result<impl Future<Output = String> + 'static> {
        Ok(std::future::IntoFuture::into_future(self.inner.lost()?))
    }

    /// Release now.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`](super::Error::Lost) when it had already been lost.
    pub fn release(self) -> Result<()> {
        wit::RedisLockGuard::release(self.inner)
    }
}
