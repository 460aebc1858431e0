//! Locks on open files and portalocker's `Lock`: a lock by path.

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::flags::{LockFlags, LockMode};
use crate::mode::FileMode;
use crate::sys;
use crate::wait::{Wait, lock_opened};

/// Lock an open file, as portalocker's `lock(file, flags)` does.
///
/// With [`LockFlags::NON_BLOCKING`] this tries once; without it, it waits in
/// the kernel until the lock is free. The lock belongs to this open file (its
/// open file description): another open of the same path, even in this
/// process, contends with it. Locking again through the same file converts
/// the lock (shared to exclusive or back).
///
/// ```
/// use portalocker::{lock, unlock, LockFlags};
/// # let dir = tempfile::tempdir()?;
/// let file = std::fs::File::create(dir.path().join("data.lock"))?;
/// lock(&file, LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING)?;
/// unlock(&file)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidArgument`] for flags [`LockFlags::validate`] rejects,
/// before any system call; [`Error::WouldBlock`] when non-blocking and held
/// elsewhere; [`Error::Io`] when the system call fails otherwise.
pub fn lock(file: &File, flags: LockFlags) -> Result<()> {
    let (mode, non_blocking) = flags.validate()?;
    if non_blocking {
        match sys::try_lock(file, mode) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::WouldBlock {
                path: None,
                holder_pid: None,
            }),
            Err(e) => Err(Error::io("lock", None, e)),
        }
    } else {
        sys::lock_blocking(file, mode).map_err(|e| Error::io("lock", None, e))
    }
}

/// Lock an open file, waiting at most `timeout`.
///
/// The wait is parked in the kernel where the platform allows it (Linux and
/// other Unix systems), so the lock is taken within microseconds of its
/// release, and it ends at the deadline to the millisecond.
///
/// ```
/// use std::time::Duration;
/// use portalocker::{lock_timeout, LockMode};
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("data.lock");
/// let holder = std::fs::File::create(&path)?;
/// let waiter = std::fs::File::open(&path)?;
/// lock_timeout(&holder, LockMode::Exclusive, Duration::ZERO)?;
/// let err = lock_timeout(&waiter, LockMode::Exclusive, Duration::from_millis(20)).unwrap_err();
/// assert!(err.is_contention());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::WouldBlock`] when `timeout` is zero and the lock is held,
/// [`Error::TimedOut`] when the timeout ran out, [`Error::Io`] otherwise.
pub fn lock_timeout(file: &File, mode: LockMode, timeout: Duration) -> Result<()> {
    let deadline = Instant::now().checked_add(timeout);
    let result = match deadline {
        _ if timeout.is_zero() => sys::try_lock(file, mode),
        Some(deadline) => crate::wait::lock_until(file, mode, deadline),
        None => sys::lock_blocking(file, mode).map(|()| true),
    };
    match result {
        Ok(true) => Ok(()),
        Ok(false) if timeout.is_zero() => Err(Error::WouldBlock {
            path: None,
            holder_pid: None,
        }),
        Ok(false) => Err(Error::TimedOut {
            path: None,
            timeout,
            holder_pid: None,
        }),
        Err(e) => Err(Error::io("lock", None, e)),
    }
}

/// Release the lock held through an open file, as portalocker's
/// `unlock(file)` does. Unlocking a file that holds no lock is harmless.
///
/// # Errors
///
/// [`Error::Io`] when the system call fails.
pub fn unlock(file: &File) -> Result<()> {
    sys::unlock(file).map_err(|e| Error::io("unlock", None, e))
}

/// portalocker's `Lock`: a lock on a file named by path, opened on acquire.
///
/// Defaults are portalocker's: mode `a`, flags `EXCLUSIVE | NON_BLOCKING`,
/// [`Wait::DEFAULT`] (up to 5 s). Unlike portalocker, the wait parks in the
/// kernel instead of polling every 0.25 s (see [`Wait`]).
///
/// ```
/// use std::io::Write;
/// use std::time::Duration;
/// use portalocker::{FileMode, Lock, Wait};
/// # let dir = tempfile::tempdir()?;
/// let lock = Lock::new(dir.path().join("report.txt"))
///     .mode(FileMode::Write)
///     .wait(Wait::up_to(Duration::from_secs(1)));
/// let mut guard = lock.acquire()?; // truncated only now that it is locked
/// guard.write_all(b"done\n")?;
/// guard.release()?; // or let it drop
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Each successful [`Lock::acquire`] opens the file anew, and two opens
/// contend even in one process: a `Lock` is a recipe, not a re-entrant
/// lock. Use [`RLock`](crate::RLock) for re-entrancy.
#[derive(Debug, Clone)]
pub struct Lock {
    path: PathBuf,
    mode: FileMode,
    flags: LockFlags,
    wait: Wait,
}

impl Lock {
    /// A lock on `path`, made absolute now so a later `chdir` cannot
    /// redirect it.
    pub fn new(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        Self {
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            mode: FileMode::default(),
            flags: LockFlags::default(),
            wait: Wait::DEFAULT,
        }
    }

    /// How the file is opened (default [`FileMode::Append`]).
    pub fn mode(mut self, mode: FileMode) -> Self {
        self.mode = mode;
        self
    }

    /// portalocker's lock flags (default `EXCLUSIVE | NON_BLOCKING`). Flags
    /// without `NON_BLOCKING` wait for the lock as long as it takes, whatever
    /// the [`Wait`], as portalocker does. They are validated on acquire.
    pub fn flags(mut self, flags: LockFlags) -> Self {
        self.flags = flags;
        self
    }

    /// Take a shared lock instead of an exclusive one, keeping the
    /// blocking choice.
    pub fn shared(mut self) -> Self {
        let non_blocking = self.flags.contains(LockFlags::NON_BLOCKING);
        self.flags = LockFlags::new(LockMode::Shared, non_blocking);
        self
    }

    /// How [`Lock::acquire`] waits (default [`Wait::DEFAULT`]): portalocker's
    /// `timeout`, `check_interval` and `fail_when_locked` in one.
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// The absolute path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configured lock flags.
    pub fn lock_flags(&self) -> LockFlags {
        self.flags
    }

    /// The configured file mode.
    pub fn file_mode(&self) -> FileMode {
        self.mode
    }

    /// How [`Lock::acquire`] waits, blocking flags considered.
    pub fn waits(&self) -> Wait {
        if self.flags.contains(LockFlags::NON_BLOCKING) {
            self.wait
        } else {
            self.wait.forever()
        }
    }

    /// Open the file and lock it, waiting as configured (see
    /// [`Lock::waits`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for invalid flags (nothing is opened);
    /// [`Error::Io`] when the file cannot be opened (a missing directory, a
    /// symlink, permissions), never retried; [`Error::WouldBlock`] on
    /// contention with [`Wait::NONE`]; [`Error::TimedOut`] when the wait ran
    /// out.
    pub fn acquire(&self) -> Result<LockGuard> {
        self.acquire_waiting(self.waits())
    }

    /// Open the file and try once to lock it. Never blocks.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`]; contention is [`Error::WouldBlock`].
    pub fn try_acquire(&self) -> Result<LockGuard> {
        self.acquire_waiting(Wait::NONE)
    }

    /// Open the file and lock it, waiting at most `timeout` (the configured
    /// way, parked or polling), whatever the configured length and flags.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard> {
        self.acquire_waiting(self.wait.for_up_to(timeout))
    }

    /// [`Lock::acquire`] without blocking an executor: the wait sleeps
    /// until a release of the file in this process wakes it, or a short
    /// pause (growing to 10 ms) passes. Cancel-safe. Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    #[cfg(feature = "async")]
    pub async fn acquire_async(&self) -> Result<LockGuard> {
        let (mode, _) = self.flags.validate()?;
        let guard = crate::wait::lock_opened_async(
            || self.open(),
            |_| Ok(true),
            &self.path,
            mode,
            self.waits(),
        )
        .await?;
        self.prepared(guard)
    }

    pub(crate) fn acquire_waiting(&self, wait: Wait) -> Result<LockGuard> {
        let (mode, _) = self.flags.validate()?;
        let guard = lock_opened(|| self.open(), |_| Ok(true), &self.path, mode, wait)?;
        self.prepared(guard)
    }

    /// Open the file in the lock's mode, never through a symlink.
    pub(crate) fn open(&self) -> io::Result<File> {
        sys::open_no_follow(&self.path, &mut self.mode.open_options())
    }

    /// Truncate a freshly locked file if the mode says so.
    fn prepared(&self, guard: LockGuard) -> Result<LockGuard> {
        if self.mode.truncates() {
            // On failure the guard drops: unlock and close, then report.
            guard.truncate()?;
        }
        Ok(guard)
    }
}

/// A held [`Lock`]: the locked file, open in the lock's mode.
///
/// Dropping the guard unlocks and closes the file; errors on that path are
/// logged at `warn` level (portalocker's default policy).
/// [`LockGuard::release`] does the same and reports them.
///
/// The guard derefs to the [`File`] and implements [`Read`], [`Write`] and
/// [`Seek`].
#[must_use = "if unused the lock is released immediately"]
pub struct LockGuard {
    file: Option<File>,
    path: PathBuf,
    mode: LockMode,
}

impl LockGuard {
    /// The locked file.
    pub fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("a guard holds its file until released")
    }

    /// The locked file, mutably.
    pub fn file_mut(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("a guard holds its file until released")
    }

    /// The path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock is exclusive or shared.
    pub fn lock_mode(&self) -> LockMode {
        self.mode
    }

    /// Unlock and close now, reporting failures. Both steps always run; the
    /// unlock error wins when both fail (the close error is logged).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when unlocking or closing failed. The lock is gone
    /// either way: closing the last descriptor drops it.
    pub fn release(mut self) -> Result<()> {
        match self.file.take() {
            Some(file) => release_file(file, &self.path),
            None => Ok(()),
        }
    }

    fn truncate(&self) -> Result<()> {
        let mut file = self.file();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(|e| Error::io("truncate", self.path.clone(), e))
    }

    /// Lock a file you opened yourself and guard it, waiting as `wait`
    /// says. `path` is only used in messages. (To open it through your own
    /// directory handle at every attempt, see [`lock_opened`].)
    ///
    /// ```
    /// use portalocker::{LockGuard, LockMode, Wait};
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("opened.lock");
    /// let file = std::fs::File::create(&path)?;
    /// let guard = LockGuard::lock_file(file, &path, LockMode::Exclusive, Wait::NONE)?;
    /// # drop(guard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] or [`Error::TimedOut`] on contention,
    /// [`Error::Io`] when locking fails. The file is closed on error.
    pub fn lock_file(
        file: File,
        path: impl Into<PathBuf>,
        mode: LockMode,
        wait: Wait,
    ) -> Result<LockGuard> {
        let mut file = Some(file);
        lock_opened(
            || {
                file.take()
                    .ok_or_else(|| io::Error::other("the file was replaced while locking"))
            },
            |_| Ok(true),
            path,
            mode,
            wait,
        )
    }

    /// Unlock and hand the file back, open, for reuse (the next lock of the
    /// same path then needs no open).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when unlocking fails; the file is closed then.
    pub fn into_unlocked(mut self) -> Result<File> {
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::io("unlock", self.path.clone(), io::Error::other("released")))?;
        #[cfg(feature = "async")]
        crate::wait::released(&file);
        sys::unlock(&file).map_err(|e| Error::io("unlock", self.path.clone(), e))?;
        Ok(file)
    }

    /// Guard a file already locked in `mode` with [`lock`]: dropping the
    /// guard unlocks and closes it.
    pub fn from_locked(file: File, path: impl Into<PathBuf>, mode: LockMode) -> Self {
        let path = path.into();
        Self {
            file: Some(file),
            path,
            mode,
        }
    }

    /// Take the file out, leaving the guard inert.
    pub(crate) fn take_file(&mut self) -> Option<File> {
        self.file.take()
    }
}

/// Unlock then close, both always attempted (waking this process's async
/// waiters for the file).
pub(crate) fn release_file(file: File, path: &Path) -> Result<()> {
    #[cfg(feature = "async")]
    crate::wait::released(&file);
    let unlocked = sys::unlock(&file);
    let closed = sys::close(file);
    match (unlocked, closed) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(unlock), Ok(())) => Err(Error::io("unlock", path.to_path_buf(), unlock)),
        (Ok(()), Err(close)) => Err(Error::io("close", path.to_path_buf(), close)),
        (Err(unlock), Err(close)) => {
            log::warn!("also failed to close '{}': {close}", path.display());
            Err(Error::io("unlock", path.to_path_buf(), unlock))
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(file) = self.file.take()
            && let Err(e) = release_file(file, &self.path)
        {
            log::warn!("suppressed error while releasing lock: {e}");
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Deref for LockGuard {
    type Target = File;
    fn deref(&self) -> &File {
        self.file()
    }
}

impl DerefMut for LockGuard {
    fn deref_mut(&mut self) -> &mut File {
        self.file_mut()
    }
}

impl Read for LockGuard {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file_mut().read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.file_mut().read_vectored(bufs)
    }
}

impl Write for LockGuard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file_mut().write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.file_mut().write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file_mut().flush()
    }
}

impl Seek for LockGuard {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file_mut().seek(pos)
    }
}
