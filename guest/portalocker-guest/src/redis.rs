//! Distributed locks on the Redis server the host chose.

use std::marker::PhantomData;
use std::time::Duration;

use crate::error::Result;
use crate::file::LockMode;
use crate::wit::portalocker::locks::redis_lock as wit;

/// portalocker's Redis lock: shared with native programs and Python
/// programs that use the same name (inside the host's namespace).
///
/// ```no_run
/// use portalocker_guest::RedisLock;
/// let lock = RedisLock::open("nightly-report", true)?;
/// let guard = lock.lock()?;
/// println!("fencing token {:?}", guard.fencing_token());
/// # Ok::<(), portalocker_guest::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisLock(wit::RedisLock);

impl RedisLock {
    /// Name the lock; with `fencing`, every acquisition (shared ones too)
    /// draws a fencing token. Never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a bad
    /// name, [`Error::Unsupported`](crate::Error::Unsupported) when the host
    /// grants no Redis server.
    pub fn open(name: impl AsRef<str>, fencing: bool) -> Result<Self> {
        Ok(Self(wit::RedisLock::open(name.as_ref(), fencing)?))
    }

    /// Take the exclusive lock, blocking until it is free.
    ///
    /// # Errors
    ///
    /// Contention past the host's maximum wait, an unreachable server.
    pub fn lock(&self) -> Result<RedisLockGuard<'_>> {
        self.0.lock(LockMode::Exclusive).map(RedisLockGuard::new)
    }

    /// Take a shared lock, blocking until no writer holds or waits.
    ///
    /// # Errors
    ///
    /// As [`RedisLock::lock`].
    pub fn lock_shared(&self) -> Result<RedisLockGuard<'_>> {
        self.0.lock(LockMode::Shared).map(RedisLockGuard::new)
    }

    /// One attempt at the exclusive lock.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) when held.
    pub fn try_lock(&self) -> Result<RedisLockGuard<'_>> {
        self.0
            .try_lock(LockMode::Exclusive)
            .map(RedisLockGuard::new)
    }

    /// One attempt at a shared lock.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) when a writer holds
    /// or waits.
    pub fn try_lock_shared(&self) -> Result<RedisLockGuard<'_>> {
        self.0.try_lock(LockMode::Shared).map(RedisLockGuard::new)
    }

    /// Take the exclusive lock, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`](crate::Error::TimedOut) when still held.
    pub fn lock_for(&self, timeout: Duration) -> Result<RedisLockGuard<'_>> {
        self.0
            .lock_for(LockMode::Exclusive, crate::nanos(timeout))
            .map(RedisLockGuard::new)
    }

    /// Take a shared lock, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`](crate::Error::TimedOut) when a writer still holds
    /// or waits.
    pub fn lock_shared_for(&self, timeout: Duration) -> Result<RedisLockGuard<'_>> {
        self.0
            .lock_for(LockMode::Shared, crate::nanos(timeout))
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

    /// The fencing token of this acquisition, if fencing was asked for.
    pub fn fencing_token(&self) -> Option<u64> {
        self.inner.fencing_token()
    }

    /// Whether the lock was lost (someone else may hold it now).
    pub fn is_lost(&self) -> bool {
        self.inner.is_lost()
    }

    /// Release now.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`](crate::Error::Lost) when it had already been lost.
    pub fn release(self) -> Result<()> {
        wit::RedisLockGuard::release(self.inner)
    }
}
