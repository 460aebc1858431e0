//! Whole-file locks, awaited.

use std::marker::PhantomData;
use std::time::Duration;

use super::error::Result;
use super::wit::portalocker::locks::file_lock as wit;

#[doc(inline)]
pub use super::wit::portalocker::locks::types::LockMode;

/// A lock file in a directory the host granted.
///
/// ```no_run
/// # async fn f() -> portalocker_guest::aio::Result<()> {
/// use portalocker_guest::aio::FileLock;
/// let lock = FileLock::open("/jobs/report.lock", false)?;
/// let guard = lock.lock().await?; // other tasks run while this waits
/// drop(guard);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileLock(wit::FileLock);

impl FileLock {
    /// Name the lock file at `path` (as this plugin sees it). With
    /// `fencing`, every exclusive acquisition draws a fencing token from the
    /// counter `{path}.fence` (see [`FileLockGuard::fencing_token`]). Never
    /// waits and creates nothing.
    ///
    /// # Errors
    ///
    /// [`Error::AccessDenied`](super::Error::AccessDenied) outside the
    /// granted directories, [`Error::InvalidArgument`](super::Error::InvalidArgument)
    /// for an empty, over-long or NUL-carrying path.
    pub fn open(path: impl AsRef<str>, fencing: bool) -> Result<Self> {
        Ok(Self(wit::FileLock::open(path.as_ref(), fencing)?))
    }

    /// Take the exclusive lock, waiting until it is free (the host may
    /// bound the wait: then [`Error::TimedOut`](super::Error::TimedOut)).
    /// Dropping the future cancels the wait.
    ///
    /// # Errors
    ///
    /// Contention past the host's maximum wait, a symlinked or unreachable
    /// lock file, or too many locks held.
    pub async fn lock(&self) -> Result<FileLockGuard<'_>> {
        self.0
            .lock(LockMode::Exclusive)
            .await
            .map(FileLockGuard::new)
    }

    /// Take a shared lock, waiting until no exclusive holder remains.
    ///
    /// # Errors
    ///
    /// As [`FileLock::lock`].
    pub async fn lock_shared(&self) -> Result<FileLockGuard<'_>> {
        self.0.lock(LockMode::Shared).await.map(FileLockGuard::new)
    }

    /// Try once for the exclusive lock; never waits.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](super::Error::WouldBlock) when it is held; the
    /// other failures of [`FileLock::lock`].
    pub fn try_lock(&self) -> Result<FileLockGuard<'_>> {
        self.0.try_lock(LockMode::Exclusive).map(FileLockGuard::new)
    }

    /// Try once for a shared lock; never waits.
    ///
    /// # Errors
    ///
    /// As [`FileLock::try_lock`].
    pub fn try_lock_shared(&self) -> Result<FileLockGuard<'_>> {
        self.0.try_lock(LockMode::Shared).map(FileLockGuard::new)
    }

    /// Take the exclusive lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`](super::Error::TimedOut) when still held at the
    /// deadline, [`Error::LimitExceeded`](super::Error::LimitExceeded) for a
    /// timeout longer than the host allows; as [`FileLock::lock`].
    pub async fn lock_for(&self, timeout: Duration) -> Result<FileLockGuard<'_>> {
        self.0
            .lock_for(LockMode::Exclusive, crate::nanos(timeout))
            .await
            .map(FileLockGuard::new)
    }

    /// Take a shared lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`FileLock::lock_for`].
    pub async fn lock_shared_for(&self, timeout: Duration) -> Result<FileLockGuard<'_>> {
        self.0
            .lock_for(LockMode::Shared, crate::nanos(timeout))
            .await
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

    /// The fencing token of an exclusive lock opened with `fencing`: it is
    /// greater than every earlier fenced holder's, in every process.
    pub fn fencing_token(&self) -> Option<u64> {
        self.inner.fencing_token()
    }

    /// A future that resolves, with the reason, when the lock is lost (its file was
    /// unlinked or replaced, so someone else can lock that path now). Never
    /// resolves while the lock is held undisturbed. Each call starts a new
    /// watch: in a loop, keep one future pinned rather than calling again.
    ///
    /// # Errors
    ///
    /// [`Error::LimitExceeded`](super::Error::LimitExceeded) when the
    /// plugin already has as many handles as the host allows (each watch
    /// is one until dropped).
    pub fn lost(&self) -> Result<impl Future<Output = String> + 'static> {
        Ok(std::future::IntoFuture::into_future(self.inner.lost()?))
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
