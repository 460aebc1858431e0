//! portalocker's `TemporaryFileLock`: a lock file that exists only while
//! held, with the unlink-before-unlock and identity re-check that keep
//! waiters from splitting across two inodes.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::flags::LockFlags;
use crate::guard::{LockGuard, release_file};
use crate::lock::Lock;
use crate::mode::FileMode;
use crate::sys;
use crate::wait::Wait;

/// A lock file that is created on acquire and removed on release.
///
/// Defaults are portalocker's: fail at once when locked ([`Wait::NONE`]),
/// an exclusive lock.
///
/// Releasing unlinks the file *before* unlocking it, and acquiring checks,
/// once the lock is held, that the path still names the locked file; if it
/// was swapped in between, the lock is dropped and taken again on the
/// current file. So every holder, and every waiter that wins, locks the
/// file the path names, never an orphaned inode.
///
/// ```
/// use portalocker::TemporaryFileLock;
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("job.lock");
/// let guard = TemporaryFileLock::new(&path).acquire()?;
/// assert!(path.exists());
/// guard.release()?;
/// assert!(!path.exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TemporaryFileLock {
    lock: Lock,
}

impl TemporaryFileLock {
    /// A temporary lock file at `path` (made absolute now).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            lock: Lock::new(path)
                .mode(FileMode::Append)
                .flags(LockFlags::default())
                .wait(Wait::NONE),
        }
    }

    /// How [`TemporaryFileLock::acquire`] waits (default [`Wait::NONE`]:
    /// portalocker's `fail_when_locked`).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.lock = self.lock.wait(wait);
        self
    }

    /// The absolute path of the lock file.
    pub fn path(&self) -> &Path {
        self.lock.path()
    }

    /// Create and lock the file, verifying that the path still names it,
    /// waiting as configured.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] or [`Error::TimedOut`] on contention, and also
    /// when the path kept being replaced while locking (split-brain);
    /// [`Error::Io`] when the file cannot be opened or locked.
    pub fn acquire(&self) -> Result<TemporaryLockGuard> {
        self.acquire_waiting(self.lock.waits())
    }

    /// One attempt; never blocks.
    ///
    /// # Errors
    ///
    /// As [`TemporaryFileLock::acquire`].
    pub fn try_acquire(&self) -> Result<TemporaryLockGuard> {
        self.acquire_waiting(Wait::NONE)
    }

    /// Wait at most `timeout`, whatever the configured wait.
    ///
    /// # Errors
    ///
    /// As [`TemporaryFileLock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<TemporaryLockGuard> {
        self.acquire_waiting(self.lock.waits().for_up_to(timeout))
    }

    /// [`TemporaryFileLock::acquire`] without blocking an executor
    /// (see [`Lock::acquire_async`]).
    ///
    /// # Errors
    ///
    /// As [`TemporaryFileLock::acquire`].
    #[cfg(feature = "async")]
    pub async fn acquire_async(&self) -> Result<TemporaryLockGuard> {
        let guard = acquire_verified_async(&self.lock, self.lock.waits()).await?;
        Ok(TemporaryLockGuard { guard })
    }

    fn acquire_waiting(&self, wait: Wait) -> Result<TemporaryLockGuard> {
        Ok(TemporaryLockGuard {
            guard: acquire_verified(&self.lock, wait)?,
        })
    }
}

/// Lock `lock`'s file and check that its path still names the locked file,
/// retrying on the current file until the wait runs out.
pub(crate) fn acquire_verified(lock: &Lock, wait: Wait) -> Result<LockGuard> {
    let (mode, _) = lock.lock_flags().validate()?;
    crate::wait::lock_opened(
        || lock.open(),
        |file| sys::same_file(file, lock.path()),
        lock.path(),
        mode,
        wait,
    )
}

/// [`acquire_verified`] without blocking an executor.
#[cfg(feature = "async")]
pub(crate) async fn acquire_verified_async(lock: &Lock, wait: Wait) -> Result<LockGuard> {
    let (mode, _) = lock.lock_flags().validate()?;
    crate::wait::lock_opened_async(
        || lock.open(),
        |file| sys::same_file(file, lock.path()),
        lock.path(),
        mode,
        wait,
    )
    .await
}

/// Unlink `path` only if `file` is what it names, ignoring a missing path.
pub(crate) fn unlink_if_current(file: &File, path: &Path) -> Result<()> {
    match sys::same_file(file, path) {
        Ok(true) => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("unlink", path.to_path_buf(), e)),
        },
        Ok(false) => {
            log::warn!(
                "'{}' no longer names the held lock file; not removing it",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(Error::io("stat", path.to_path_buf(), e)),
    }
}

/// Check that the guard still locks the file its path names.
pub(crate) fn verify_current(guard: &LockGuard) -> Result<()> {
    match sys::same_file(guard.file(), guard.path()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Compromised {
            path: guard.path().to_path_buf(),
            reason: "the file was unlinked or replaced externally while the lock was held".into(),
        }),
        Err(e) => Err(Error::io("stat", guard.path().to_path_buf(), e)),
    }
}

/// A held [`TemporaryFileLock`]. Dropping it removes the file and unlocks.
#[derive(Debug)]
#[must_use = "if unused the lock is released and the file removed immediately"]
pub struct TemporaryLockGuard {
    guard: LockGuard,
}

impl TemporaryLockGuard {
    /// The locked file.
    pub fn file(&self) -> &File {
        self.guard.file()
    }

    /// The path of the lock file.
    pub fn path(&self) -> &Path {
        self.guard.path()
    }

    /// Check that the path still names the locked file.
    ///
    /// # Errors
    ///
    /// [`Error::Compromised`] when someone else unlinked or replaced it (a
    /// tmp cleaner, say): the lock no longer excludes anyone.
    pub fn verify(&self) -> Result<()> {
        verify_current(&self.guard)
    }

    /// Remove the file (only if the path still names it), then unlock and
    /// close, reporting failures. Every step runs even if one fails.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]: the unlink error if any, else the unlock/close error.
    pub fn release(mut self) -> Result<()> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<()> {
        let Some(file) = self.guard.take_file() else {
            return Ok(());
        };
        let path = self.guard.path().to_path_buf();
        let unlinked = unlink_if_current(&file, &path);
        let released = release_file(file, &path);
        match (unlinked, released) {
            (Err(unlink), Err(release)) => {
                log::warn!("also failed to release '{}': {release}", path.display());
                Err(unlink)
            }
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        }
    }
}

impl Drop for TemporaryLockGuard {
    fn drop(&mut self) {
        if let Err(e) = self.release_inner() {
            log::warn!("suppressed error while removing lock file: {e}");
        }
    }
}
