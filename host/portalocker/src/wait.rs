//! Waiting for a lock someone else holds: the policy every lock kind takes
//! ([`Wait`]), and every loop that waits for file locks, blocking or async.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::flags::LockMode;
use crate::guard::{LockGuard, release_file};
use crate::sys;

/// portalocker's default timeout: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// portalocker's default check interval: 0.25 seconds.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// How an acquisition waits when someone else holds the lock: for how long,
/// and how.
///
/// For how long: [`Wait::NONE`] tries once (contention is
/// [`Error::WouldBlock`]: portalocker's `fail_when_locked`, or a zero
/// timeout), [`Wait::up_to`] waits until a timeout (then
/// [`Error::TimedOut`]), [`Wait::FOREVER`] as long as it takes. How: parked
/// by default (a file lock waits in the kernel, a Redis lock on release
/// notices, and either is taken microseconds after its release, with the
/// timeout kept to the millisecond), or [`Wait::polling`] on portalocker's
/// schedule, for filesystems whose blocking locks misbehave.
///
/// ```
/// use std::time::Duration;
/// use portalocker::{Lock, Wait};
/// # let dir = tempfile::tempdir()?;
/// let patient = Lock::new(dir.path().join("a.lock")).wait(Wait::up_to(Duration::from_secs(30)));
/// let polling = Lock::new(dir.path().join("b.lock"))
///     .wait(Wait::FOREVER.polling(Duration::from_millis(50)));
/// assert_eq!(Wait::default(), Wait::up_to(portalocker::DEFAULT_TIMEOUT));
/// assert_eq!(Wait::up_to(Duration::ZERO), Wait::NONE);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Wait {
    limit: Limit,
    poll: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Limit {
    Once,
    For(Duration),
    Forever,
}

impl Wait {
    /// Try once; never wait.
    pub const NONE: Wait = Wait {
        limit: Limit::Once,
        poll: None,
    };

    /// Wait as long as it takes.
    pub const FOREVER: Wait = Wait {
        limit: Limit::Forever,
        poll: None,
    };

    /// portalocker's default: up to [`DEFAULT_TIMEOUT`], parked.
    pub const DEFAULT: Wait = Wait::up_to(DEFAULT_TIMEOUT);

    /// Wait up to `timeout` (zero is [`Wait::NONE`]).
    pub const fn up_to(timeout: Duration) -> Wait {
        Wait {
            limit: if timeout.is_zero() {
                Limit::Once
            } else {
                Limit::For(timeout)
            },
            poll: None,
        }
    }

    /// Poll on portalocker's schedule instead of parking: attempts at
    /// multiples of `interval` (at least 1 ms apart), the last one capped at
    /// the deadline. For a Redis lock, `interval` is the longest pause
    /// between full attempts (portalocker's `check_interval`).
    pub const fn polling(self, interval: Duration) -> Wait {
        Wait {
            limit: self.limit,
            poll: Some(interval),
        }
    }

    /// The same length of wait, parked.
    pub const fn parked(self) -> Wait {
        Wait {
            limit: self.limit,
            poll: None,
        }
    }

    /// The same way of waiting, for `timeout` (zero: once).
    pub const fn for_up_to(self, timeout: Duration) -> Wait {
        Wait {
            poll: self.poll,
            ..Wait::up_to(timeout)
        }
    }

    /// The same way of waiting, as long as it takes.
    pub const fn forever(self) -> Wait {
        Wait {
            limit: Limit::Forever,
            poll: self.poll,
        }
    }

    /// The timeout: `Some(ZERO)` for [`Wait::NONE`], `None` for no limit.
    pub const fn timeout(self) -> Option<Duration> {
        match self.limit {
            Limit::Once => Some(Duration::ZERO),
            Limit::For(timeout) => Some(timeout),
            Limit::Forever => None,
        }
    }

    /// The polling interval, if this wait polls.
    pub const fn poll_interval(self) -> Option<Duration> {
        self.poll
    }

    /// Start waiting now.
    pub(crate) fn start(self) -> Started {
        let deadline = match self.limit {
            // Never waits: any instant in the past will do, without
            // reading the clock.
            Limit::Once => Some(*EPOCH),
            Limit::For(timeout) => Instant::now().checked_add(timeout),
            Limit::Forever => None,
        };
        Started {
            wait: self,
            deadline,
        }
    }
}

/// An instant in the past: the deadline of a wait that never waits.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Default for Wait {
    fn default() -> Self {
        Wait::DEFAULT
    }
}

impl From<Duration> for Wait {
    /// [`Wait::up_to`].
    fn from(timeout: Duration) -> Self {
        Wait::up_to(timeout)
    }
}

/// A wait under way: its policy and, unless it waits forever, its
/// deadline (fixed once, when it started).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    wait: Wait,
    deadline: Option<Instant>,
}

impl Started {
    /// When it gives up (`None`: never).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether it may not wait at all.
    pub(crate) fn once(&self) -> bool {
        self.wait.limit == Limit::Once
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// What is left (`None`: no limit).
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The contention error it ends with, about `path` if any.
    pub(crate) fn contention(&self, path: Option<&Path>) -> Error {
        let path = path.map(Path::to_path_buf);
        match self.wait.limit {
            Limit::For(timeout) => Error::TimedOut {
                path,
                timeout,
                holder_pid: None,
            },
            Limit::Once | Limit::Forever => Error::WouldBlock {
                path,
                holder_pid: None,
            },
        }
    }

    /// Wait for the lock on `file`; `Ok(false)` when the wait ran out.
    pub(crate) fn lock(&self, file: &File, mode: LockMode) -> io::Result<bool> {
        if sys::try_lock(file, mode)? {
            return Ok(true);
        }
        if self.once() {
            return Ok(false);
        }
        match (self.wait.poll, self.deadline) {
            (Some(interval), deadline) => poll(file, mode, deadline, interval),
            (None, None) => sys::lock_blocking(file, mode).map(|()| true),
            (None, Some(deadline)) => lock_until(file, mode, deadline),
        }
    }
}

/// Wait for the lock until `deadline`, parked in the kernel where the
/// platform lets a parked wait be cut short (see `sys`), else polling with
/// a backoff from 50 µs to 1 ms, so a release is noticed within about a
/// millisecond.
pub(crate) fn lock_until(file: &File, mode: LockMode, deadline: Instant) -> io::Result<bool> {
    if Instant::now() >= deadline {
        return sys::try_lock(file, mode);
    }
    if let Some(parked) = sys::lock_until_parked(file, mode, deadline) {
        return parked;
    }
    let mut pause = Duration::from_micros(50);
    loop {
        if sys::try_lock(file, mode)? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(1));
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

/// How often a lock is taken again because its path named another file by
/// the time it was locked, before giving up (someone keeps replacing it).
const STALE_RETRIES: u32 = 100;

/// Lock a file that `open` opens (through a sandboxed directory handle,
/// say), waiting as `wait` says, and guard it as `path` (used in messages).
///
/// Once the lock is taken, `names` says whether the path still names the
/// locked file: if it was unlinked or replaced meanwhile, the lock would
/// exclude nobody, so it is dropped and the current file opened and locked
/// instead. `open` is called for every attempt and must not follow a final
/// symlink; `|_| Ok(true)` skips the check.
///
/// ```
/// use portalocker::{LockMode, Wait, lock_opened};
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("opened.lock");
/// let guard = lock_opened(
///     || std::fs::OpenOptions::new().append(true).create(true).open(&path),
///     |_| Ok(true),
///     &path,
///     LockMode::Exclusive,
///     Wait::NONE,
/// )?;
/// # drop(guard);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::WouldBlock`] / [`Error::TimedOut`] on contention (also when
/// the path kept being replaced until the wait ran out); [`Error::Io`]
/// when `open`, locking or `names` fails.
pub fn lock_opened(
    mut open: impl FnMut() -> io::Result<File>,
    names: impl Fn(&File) -> io::Result<bool>,
    path: impl Into<PathBuf>,
    mode: LockMode,
    wait: Wait,
) -> Result<LockGuard> {
    let path = path.into();
    let started = wait.start();
    let mut stale = 0;
    loop {
        let file = open().map_err(|e| Error::io("open", path.clone(), e))?;
        let locked = started
            .lock(&file, mode)
            .map_err(|e| Error::io("lock", path.clone(), e))?;
        if !locked {
            return Err(contended(&started, &file, &path));
        }
        if let Some(file) = still_named(file, &names, &path, &started, &mut stale)? {
            return Ok(LockGuard::from_locked(file, path, mode));
        }
    }
}

impl LockGuard {
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
}

/// The contention a wait for `file` ended with, naming its holder where
/// the platform tells.
fn contended(started: &Started, file: &File, path: &Path) -> Error {
    let holder = sys::holder_pid(file);
    started.contention(Some(path)).with_context(path, holder)
}

/// After locking `file`: the file back if `path` still names it; `None`
/// (the file unlocked and closed) to try the current file.
fn still_named(
    file: File,
    names: &impl Fn(&File) -> io::Result<bool>,
    path: &Path,
    started: &Started,
    stale: &mut u32,
) -> Result<Option<File>> {
    let current = names(&file).map_err(|e| Error::io("stat", path.to_path_buf(), e))?;
    if current {
        return Ok(Some(file));
    }
    // We locked an inode the path no longer names: drop it, never
    // unlinking (the path belongs to whoever created the new file).
    if let Err(e) = release_file(file, path) {
        log::warn!("suppressed error while dropping a stale lock: {e}");
    }
    *stale += 1;
    if (*stale > 1 && started.expired()) || *stale > STALE_RETRIES {
        log::warn!(
            "'{}' kept being replaced while locking (split-brain)",
            path.display()
        );
        return Err(started.contention(Some(path)));
    }
    Ok(None)
}

/// The longest a semaphore waiter parks on one slot before sweeping them
/// all again: a release of another slot waits at most this long for it.
const LONGEST_PARK: Duration = Duration::from_millis(50);

/// Sweep for one of `slots` until one is free or the wait runs out: try
/// them all, then park on one (round robin from a random slot) for a slice
/// growing from 1 ms to [`LONGEST_PARK`], so a release of that slot is
/// taken at once and the others are seen at the next sweep.
pub(crate) fn sweep<T>(
    started: &Started,
    slots: usize,
    mut sweep_all: impl FnMut() -> Result<Option<T>>,
    mut park_on: impl FnMut(usize, Instant) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let mut pause = Duration::from_millis(1);
    // Waiters start parking on different slots, so a release of any slot
    // finds one parked there.
    let first = fastrand::usize(0..slots.max(1));
    for round in 0usize.. {
        if let Some(found) = sweep_all()? {
            return Ok(Some(found));
        }
        let slice = match started.remaining() {
            Some(left) if left.is_zero() => break,
            Some(left) => left.min(pause),
            None => pause,
        };
        if let Some(found) = park_on((first + round) % slots.max(1), Instant::now() + slice)? {
            return Ok(Some(found));
        }
        pause = (pause * 2).min(LONGEST_PARK);
    }
    Ok(None)
}

#[cfg(feature = "async")]
pub use self::asynchronous::lock_opened_async;
#[cfg(feature = "async")]
pub(crate) use self::asynchronous::until;

/// Waiting without a thread: try, then sleep until a release in this
/// process wakes us (see `wake`) or a short pause (growing to 10 ms)
/// passes, so a release by another process is seen within that pause.
/// Needs a tokio runtime with its timer.
#[cfg(feature = "async")]
mod asynchronous {
    use std::fs::File;
    use std::io;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::{Started, Wait, contended, still_named};
    use crate::error::{Error, Result};
    use crate::flags::LockMode;
    use crate::guard::LockGuard;
    use crate::sys::{self, FileKey};
    use crate::wake;

    const FIRST_PAUSE: Duration = Duration::from_micros(100);
    const LONGEST_PAUSE: Duration = Duration::from_millis(10);

    /// Call `attempt` until it succeeds (`true`) or the wait runs out
    /// (`false`), sleeping between attempts until a release of `key` in this
    /// process or a short pause. Cancel-safe: dropping the future stops the
    /// wait.
    pub(crate) async fn until(
        key: Option<FileKey>,
        started: &Started,
        mut attempt: impl FnMut() -> Result<bool>,
    ) -> Result<bool> {
        let notify = key.map(wake::notifier);
        let _waiting = wake::Waiting::start();
        let mut pause = started.wait.poll.unwrap_or(FIRST_PAUSE);
        loop {
            // Listen before trying, so a release between the two is not
            // missed.
            let notified = notify.as_ref().map(|n| n.notified());
            tokio::pin!(notified);
            if let Some(listening) = notified.as_mut().as_pin_mut() {
                listening.enable();
            }
            if attempt()? {
                return Ok(true);
            }
            let now = Instant::now();
            let nap = match started.deadline {
                Some(deadline) if now >= deadline => return Ok(false),
                Some(deadline) => pause.min(deadline - now),
                None => pause,
            };
            match notified.as_pin_mut() {
                Some(listening) => {
                    tokio::select! {
                        () = listening => {}
                        () = tokio::time::sleep(nap) => {}
                    }
                }
                None => tokio::time::sleep(nap).await,
            }
            if started.wait.poll.is_none() {
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }

    /// [`lock_opened`](super::lock_opened) without blocking an executor:
    /// between attempts it sleeps until a release of the file in this
    /// process or a short pause (growing to 10 ms). Cancel-safe: dropping
    /// the future closes whatever it opened. Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`lock_opened`](super::lock_opened).
    pub async fn lock_opened_async(
        mut open: impl FnMut() -> io::Result<File>,
        names: impl Fn(&File) -> io::Result<bool>,
        path: impl Into<PathBuf>,
        mode: LockMode,
        wait: Wait,
    ) -> Result<LockGuard> {
        let path = path.into();
        let started = wait.start();
        let mut stale = 0;
        loop {
            let file = open().map_err(|e| Error::io("open", path.clone(), e))?;
            let key = sys::key_of(&file);
            let attempt =
                || sys::try_lock(&file, mode).map_err(|e| Error::io("lock", path.clone(), e));
            if !until(Some(key), &started, attempt).await? {
                return Err(contended(&started, &file, &path));
            }
            if let Some(file) = still_named(file, &names, &path, &started, &mut stale)? {
                return Ok(LockGuard::from_locked(file, path, mode));
            }
        }
    }
}
