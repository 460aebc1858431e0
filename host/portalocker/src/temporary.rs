//! portalocker's `TemporaryFileLock`: a lock file that exists only while
//! held, with the unlink-before-unlock and identity re-check that keep
//! waiters from splitting across two inodes.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::flags::LockFlags;
use crate::lock::{Lock, LockGuard, Patience, Wait, release_file};
use crate::mode::FileMode;
use crate::sys;

/// A lock file that is created on acquire and removed on release.
///
/// Defaults are portalocker's: fail-when-locked (contention fails at once),
/// a 5 second timeout when waiting is enabled, an exclusive lock.
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
    fail_when_locked: bool,
    timeout: Option<Duration>,
}

impl TemporaryFileLock {
    /// A temporary lock file at `path` (made absolute now).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            lock: Lock::new(path)
                .mode(FileMode::Append)
                .flags(LockFlags::default()),
            fail_when_locked: true,
            timeout: Some(crate::lock::DEFAULT_TIMEOUT),
        }
    }

    /// Fail at the first contention (default `true`) or wait up to the
    /// timeout.
    pub fn fail_when_locked(mut self, fail: bool) -> Self {
        self.fail_when_locked = fail;
        self
    }

    /// How long to wait when fail-when-locked is off (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Wait without a timeout when fail-when-locked is off.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// How a contended acquire waits (default [`Wait::Park`]).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.lock = self.lock.wait(wait);
        self
    }

    /// The absolute path of the lock file.
    pub fn path(&self) -> &Path {
        self.lock.path()
    }

    /// Create and lock the file, verifying that the path still names it.
    ///
    /// Blocks up to the timeout unless fail-when-locked is on (the default).
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] or [`Error::TimedOut`] on contention, and also
    /// when the path kept being replaced while locking (split-brain);
    /// [`Error::Io`] when the file cannot be opened or locked.
    pub fn acquire(&self) -> Result<TemporaryLockGuard> {
        let patience = if self.fail_when_locked {
            Patience::Once
        } else {
            Patience::from_timeout(self.timeout)
        };
        Ok(TemporaryLockGuard {
            guard: acquire_verified(&self.lock, patience)?,
        })
    }
}

/// Lock `lock`'s file and check that its path still names the locked file,
/// retrying on the current file until `patience` runs out.
pub(crate) fn acquire_verified(lock: &Lock, patience: Patience) -> Result<LockGuard> {
    let mut stale_retries = 0;
    loop {
        let mut guard = lock.acquire_with(patience)?;
        let current = sys::same_file(guard.file(), lock.path())
            .map_err(|e| Error::io("stat", lock.path().to_path_buf(), e))?;
        if current {
            return Ok(guard);
        }
        // We locked an inode that the path no longer names: drop it, never
        // unlinking (the path belongs to whoever created the new file).
        if let Some(file) = guard.take_file()
            && let Err(e) = release_file(file, lock.path())
        {
            log::warn!("suppressed error while dropping a stale lock: {e}");
        }
        stale_retries += 1;
        if stale_retries > 1 && patience.expired() {
            log::warn!(
                "'{}' kept being replaced while locking (split-brain)",
                lock.path().display()
            );
            return Err(patience.contention(lock.path()));
        }
    }
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

/// The path a PID file's sidecar lock lives at: `path` + `.lock`.
pub(crate) fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
