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

/// portalocker's default timeout: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// portalocker's default check interval: 0.25 seconds.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(250);

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
        Some(deadline) => sys::lock_until(file, mode, deadline),
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

/// How a contended acquisition waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wait {
    /// Park in the kernel and wake on release (default): a handover takes
    /// microseconds and the timeout is honoured to the millisecond.
    #[default]
    Park,
    /// portalocker's schedule: retry at multiples of this interval (at least
    /// 1 ms apart), the last retry capped at the deadline. For filesystems
    /// whose blocking locks misbehave.
    Poll(Duration),
}

/// When an acquisition gives up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patience {
    /// One attempt; contention is [`Error::WouldBlock`].
    Once,
    /// Until the deadline; then [`Error::TimedOut`].
    Until {
        deadline: Instant,
        timeout: Duration,
    },
    /// As long as it takes.
    Forever,
}

impl Patience {
    /// Patience for a timeout measured from now; `None` waits forever, and a
    /// zero timeout (or one too large to represent) is handled.
    pub(crate) fn from_timeout(timeout: Option<Duration>) -> Self {
        match timeout {
            None => Patience::Forever,
            Some(t) if t.is_zero() => Patience::Once,
            Some(timeout) => match Instant::now().checked_add(timeout) {
                Some(deadline) => Patience::Until { deadline, timeout },
                None => Patience::Forever,
            },
        }
    }

    /// Wait for the lock on `file` as patiently as this says; `Ok(false)`
    /// on contention that outlasted the patience.
    pub(crate) fn wait(self, file: &File, mode: LockMode, wait: Wait) -> io::Result<bool> {
        match (self, wait) {
            (Patience::Once, _) => sys::try_lock(file, mode),
            (Patience::Forever, Wait::Park) => sys::lock_blocking(file, mode).map(|()| true),
            (Patience::Until { deadline, .. }, Wait::Park) => sys::lock_until(file, mode, deadline),
            (Patience::Forever, Wait::Poll(interval)) => poll(file, mode, None, interval),
            (Patience::Until { deadline, .. }, Wait::Poll(interval)) => {
                poll(file, mode, Some(deadline), interval)
            }
        }
    }

    /// The contention error this patience ends with.
    pub(crate) fn contention(self, path: &Path) -> Error {
        match self {
            Patience::Until { timeout, .. } => Error::TimedOut {
                path: Some(path.to_path_buf()),
                timeout,
                holder_pid: None,
            },
            _ => Error::WouldBlock {
                path: Some(path.to_path_buf()),
                holder_pid: None,
            },
        }
    }

    /// What is left of the patience, as a timeout from now.
    pub(crate) fn remaining(self) -> Option<Duration> {
        match self {
            Patience::Once => Some(Duration::ZERO),
            Patience::Until { deadline, .. } => {
                Some(deadline.saturating_duration_since(Instant::now()))
            }
            Patience::Forever => None,
        }
    }

    /// Whether there is time left for another attempt.
    pub(crate) fn expired(self) -> bool {
        match self {
            Patience::Once => true,
            Patience::Until { deadline, .. } => Instant::now() >= deadline,
            Patience::Forever => false,
        }
    }
}

/// portalocker's retry schedule: attempts at multiples of `interval` from
/// the start, each sleep at least 1 ms and capped at the deadline.
fn poll(
    file: &File,
    mode: LockMode,
    deadline: Option<Instant>,
    interval: Duration,
) -> io::Result<bool> {
    let start = Instant::now();
    for attempt in 1u32.. {
        if sys::try_lock(file, mode)? {
            return Ok(true);
        }
        let now = Instant::now();
        let until_deadline = match deadline {
            Some(deadline) if now >= deadline => return Ok(false),
            Some(deadline) => deadline - now,
            None => Duration::MAX,
        };
        let until_slot = (start + interval.saturating_mul(attempt)).saturating_duration_since(now);
        std::thread::sleep(until_slot.min(until_deadline).max(Duration::from_millis(1)));
    }
    unreachable!("the retry loop only ends by returning")
}

/// portalocker's `Lock`: a lock on a file named by path, opened on acquire.
///
/// Defaults are portalocker's: mode `a`, flags `EXCLUSIVE | NON_BLOCKING`, a
/// 5 second timeout, no fail-when-locked. Unlike portalocker, the wait parks
/// in the kernel instead of polling every 0.25 s (see [`Wait`]).
///
/// ```
/// use std::io::Write;
/// use std::time::Duration;
/// use portalocker::{FileMode, Lock};
/// # let dir = tempfile::tempdir()?;
/// let lock = Lock::new(dir.path().join("report.txt"))
///     .mode(FileMode::Write)
///     .timeout(Duration::from_secs(1));
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
    timeout: Option<Duration>,
    wait: Wait,
    fail_when_locked: bool,
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
            timeout: Some(DEFAULT_TIMEOUT),
            wait: Wait::Park,
            fail_when_locked: false,
        }
    }

    /// How the file is opened (default [`FileMode::Append`]).
    pub fn mode(mut self, mode: FileMode) -> Self {
        self.mode = mode;
        self
    }

    /// portalocker's lock flags (default `EXCLUSIVE | NON_BLOCKING`). Flags
    /// without `NON_BLOCKING` wait for the lock as long as it takes and
    /// ignore the timeout, as portalocker does. They are validated on
    /// acquire.
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

    /// How long a contended acquire waits (default 5 s). Zero means one
    /// attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Wait as long as it takes (no timeout).
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Poll on portalocker's schedule with this interval instead of parking
    /// in the kernel (see [`Wait::Poll`]).
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.wait = Wait::Poll(interval);
        self
    }

    /// How a contended acquire waits (default [`Wait::Park`]).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Fail at the first contention instead of waiting (default `false`).
    pub fn fail_when_locked(mut self, fail: bool) -> Self {
        self.fail_when_locked = fail;
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

    /// The configured timeout (`None`: no timeout).
    pub fn lock_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Open the file and lock it, waiting as configured.
    ///
    /// Blocks up to the timeout (forever with blocking flags or
    /// [`Lock::no_timeout`]; not at all with fail-when-locked).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for invalid flags (nothing is opened);
    /// [`Error::Io`] when the file cannot be opened (a missing directory, a
    /// symlink, permissions), never retried; [`Error::WouldBlock`] on
    /// contention with fail-when-locked or a zero timeout;
    /// [`Error::TimedOut`] when the timeout ran out.
    pub fn acquire(&self) -> Result<LockGuard> {
        self.acquire_with(self.patience(self.timeout))
    }

    /// Open the file and try once to lock it.
    ///
    /// Never blocks.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`]; contention is [`Error::WouldBlock`].
    pub fn try_acquire(&self) -> Result<LockGuard> {
        self.acquire_with(Patience::Once)
    }

    /// Open the file and lock it, waiting at most `timeout` (overriding the
    /// configured timeout, the blocking flags and fail-when-locked).
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard> {
        self.acquire_with(Patience::from_timeout(Some(timeout)))
    }

    fn patience(&self, timeout: Option<Duration>) -> Patience {
        let non_blocking = self.flags.contains(LockFlags::NON_BLOCKING);
        if self.fail_when_locked {
            Patience::Once
        } else if !non_blocking {
            Patience::Forever
        } else {
            Patience::from_timeout(timeout)
        }
    }

    pub(crate) fn acquire_with(&self, patience: Patience) -> Result<LockGuard> {
        let (mode, _) = self.flags.validate()?;
        let mut options = self.mode.open_options();
        let file = sys::open_no_follow(&self.path, &mut options)
            .map_err(|e| Error::io("open", self.path.clone(), e))?;
        let locked = match patience.wait(&file, mode, self.wait) {
            Ok(locked) => locked,
            Err(e) => return Err(Error::io("lock", self.path.clone(), e)),
        };
        if !locked {
            let holder = sys::holder_pid(&file);
            return Err(patience
                .contention(&self.path)
                .with_context(&self.path, holder));
        }
        let guard = LockGuard {
            file: Some(file),
            path: self.path.clone(),
            mode,
        };
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

    /// Lock a file you opened yourself (through a sandboxed directory
    /// handle, say) and guard it. `path` is only used in messages.
    ///
    /// `timeout`: `None` waits as long as it takes, zero tries once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use portalocker::{LockGuard, LockMode};
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("opened.lock");
    /// let file = std::fs::File::create(&path)?;
    /// let guard = LockGuard::lock_file(file, &path, LockMode::Exclusive, Some(Duration::ZERO))?;
    /// # drop(guard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] (zero timeout) or [`Error::TimedOut`] on
    /// contention, [`Error::Io`] when locking fails. The file is closed on
    /// error.
    pub fn lock_file(
        file: File,
        path: impl Into<PathBuf>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<LockGuard> {
        let path = path.into();
        let patience = Patience::from_timeout(timeout);
        match patience.wait(&file, mode, Wait::Park) {
            Ok(true) => Ok(LockGuard::from_locked(file, path, mode)),
            Ok(false) => {
                let holder = sys::holder_pid(&file);
                Err(patience.contention(&path).with_context(&path, holder))
            }
            Err(e) => Err(Error::io("lock", path, e)),
        }
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

/// Unlock then close, both always attempted.
pub(crate) fn release_file(file: File, path: &Path) -> Result<()> {
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
