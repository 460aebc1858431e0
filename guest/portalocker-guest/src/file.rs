//! Whole-file locks.

use std::marker::PhantomData;
use std::time::Duration;

use crate::error::Result;
use crate::wit::portalocker::locks::file_lock as wit;

#[doc(inline)]
pub use crate::wit::portalocker::locks::types::LockMode;

/// A lock file in a directory the host granted.
///
/// ```no_run
/// use portalocker_guest::FileLock;
/// let lock = FileLock::open("/jobs/report.lock")?;
/// match lock.try_lock() {
///     Ok(_guard) => println!("ours until the end of this block"),
///     Err(e) if e.is_contention() => println!("someone else is writing the report"),
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), portalocker_guest::Error>(())
/// ```
#[derive(Debug)]
pub struct FileLock(wit::FileLock);

impl FileLock {
    /// Name the lock file at `path` (as this plugin sees it). Never blocks
    /// and creates nothing; the file is created when first locked.
    ///
    /// # Errors
    ///
    /// [`Error::AccessDenied`](crate::Error::AccessDenied) outside the
    /// granted directories, [`Error::InvalidArgument`](crate::Error::InvalidArgument)
    /// for an empty, over-long or NUL-carrying path.
    pub fn open(path: impl AsRef<str>) -> Result<Self> {
        Ok(Self(wit::FileLock::open(path.as_ref())?))
    }

    /// Take the exclusive lock, blocking until it is free (the host may
    /// bound the wait: then [`Error::TimedOut`](crate::Error::TimedOut)).
    ///
    /// # Errors
    ///
    /// Contention past the host's maximum wait, a symlinked or unreachable
    /// lock file, or too many locks held.
    pub fn lock(&self) -> Result<FileLockGuard<'_>> {
        self.0.lock(LockMode::Exclusive).map(FileLockGuard::new)
    }

    /// Take a shared lock, blocking until no exclusive holder remains.
    ///
    /// # Errors
    ///
    /// As [`FileLock::lock`].
    pub fn lock_shared(&self) -> Result<FileLockGuard<'_>> {
        self.0.lock(LockMode::Shared).map(FileLockGuard::new)
    }

    /// Try once for the exclusive lock; never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) when it is held; the
    /// other failures of [`FileLock::lock`].
    pub fn try_lock(&self) -> Result<FileLockGuard<'_>> {
        self.0.try_lock(LockMode::Exclusive).map(FileLockGuard::new)
    }

    /// Try once for a shared lock; never blocks.
    ///
    /// # Errors
    ///
    /// As [`FileLock::try_lock`].
    pub fn try_lock_shared(&self) -> Result<FileLockGuard<'_>> {
        self.0.try_lock(LockMode::Shared).map(FileLockGuard::new)
    }

    /// Take the exclusive lock, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`](crate::Error::TimedOut) when still held at the
    /// deadline, [`Error::LimitExceeded`](crate::Error::LimitExceeded) for a
    /// timeout longer than the host allows; as [`FileLock::lock`].
    pub fn lock_for(&self, timeout: Duration) -> Result<FileLockGuard<'_>> {
        self.0
            .lock_for(LockMode::Exclusive, crate::nanos(timeout))
            .map(FileLockGuard::new)
    }

    /// Take a shared lock, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`FileLock::lock_for`].
    pub fn lock_shared_for(&self, timeout: Duration) -> Result<FileLockGuard<'_>> {
        self.0
            .lock_for(LockMode::Shared, crate::nanos(timeout))
            .map(FileLockGuard::new)
    }

    /// The path given to [`FileLock::open`].
    pub fn path(&self) -> String {
        self.0.path()
    }
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
#[must_use = "if unused the lock is released immediately"]
pub struct FileLockGuard<'a> {
    inner: wit::FileLockGuard,
    _lock: PhantomData<&'a FileLock>,
}

impl FileLockGuard<'_> {
    fn new(inner: wit::FileLockGuard) -> Self {
        Self {
            inner,
            _lock: PhantomData,
        }
    }

    /// Exclusive or shared.
    pub fn mode(&self) -> LockMode {
        self.inner.mode()
    }

    /// Release now and report any failure (the lock is gone either way).
    ///
    /// # Errors
    ///
    /// When the host failed to unlock or close the file.
    pub fn release(self) -> Result<()> {
        wit::FileLockGuard::release(self.inner)
    }
}
