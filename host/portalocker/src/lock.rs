//! Locks on open files and portalocker's `Lock`: a lock by path.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::flags::{LockFlags, LockMode};
use crate::guard::LockGuard;
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
