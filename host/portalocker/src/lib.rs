//! portalocker's locks for Rust: file locks with timeouts, re-entrant,
//! temporary and PID-file locks, bounded semaphores across processes and
//! atomic file publication, with the semantics of Python's
//! [portalocker](https://pypi.org/project/portalocker/) 4.4.2 and
//! interoperable with it: a Python program and a Rust program exclude each
//! other on the same lock file or semaphore.
//!
//! ```no_run
//! use std::io::Write;
//! use std::time::Duration;
//! use portalocker::{Lock, Wait};
//!
//! let mut guard = Lock::new("/var/tmp/report.log")
//!     .wait(Wait::up_to(Duration::from_secs(10)))
//!     .acquire()?;            // waits, parked in the kernel, up to 10 s
//! writeln!(guard, "one line, written alone")?;
//! // dropped: unlocked and closed
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is here
//!
//! | portalocker | here |
//! |---|---|
//! | `lock(fh, flags)` / `unlock(fh)` | [`lock`], [`unlock`], [`lock_timeout`] |
//! | `Lock` | [`Lock`] → [`LockGuard`] |
//! | `RLock` | [`RLock`] → [`RLockGuard`] |
//! | `TemporaryFileLock` | [`TemporaryFileLock`] → [`TemporaryLockGuard`] |
//! | `PidFileLock` | [`PidFileLock`] → [`PidLockGuard`] / [`PidLock`] |
//! | `BoundedSemaphore`, `NamedBoundedSemaphore` | [`BoundedSemaphore`] → [`SemaphorePermit`] |
//! | `open_atomic` | [`open_atomic`], [`AtomicFile`] |
//! | `AlreadyLocked` / `LockException` | [`Error::is_contention`] / the other [`Error`] variants |
//! | `timeout`, `check_interval`, `fail_when_locked` | one [`Wait`] |
//!
//! Every lock kind has the same verbs: `acquire` (waiting as configured
//! with `.wait(…)`), `try_acquire` (once), `acquire_timeout` and, with the
//! `async` feature, `acquire_async`. Guards release on drop (errors are
//! logged at `warn` level, portalocker's default policy) and have a
//! `release()` that reports them.
//!
//! # Waiting
//!
//! portalocker polls every 0.25 s. Here a contended wait parks in the kernel
//! and wakes when the lock is released; a timeout is honoured to the
//! millisecond (on Unix, a `SIGURG` aimed at the waiting thread cuts the
//! wait short at the deadline). [`Wait::polling`] keeps portalocker's
//! schedule where blocking locks misbehave (some network filesystems).
//! `acquire_async` never blocks an executor: it sleeps until a release in
//! this process wakes it, or a short pause passes. [`lock_opened`] locks a
//! file you open yourself (through a sandboxed directory handle, say) with
//! the same waits.
//!
//! # Advisory locks
//!
//! On Unix these are `flock(2)` locks, the ones portalocker takes: advisory.
//! They exclude only programs that also lock; a program that just opens and
//! writes the file is never stopped. On Windows they are `LockFileEx` locks,
//! which are mandatory: other handles cannot read or write a locked file.
//! Locks belong to an open file, not to a process: two opens of one path in
//! one process contend. Network filesystems are best effort.
//!
//! # Lock files and symlinks
//!
//! Lock files are opened with `O_NOFOLLOW` (a reparse-point check on
//! Windows): a symlink planted at a lock path is refused, never followed.
//! New lock files get `0o666 & !umask`.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod atomic;
mod error;
pub mod fence;
mod flags;
mod guard;
mod lock;
mod mode;
mod name_watch;
mod pidfile;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod rlock;
mod semaphore;
mod sys;
mod temporary;
mod wait;
#[cfg(feature = "async")]
mod wake;

pub use atomic::{AtomicFile, open_atomic};
pub use error::{Error, Result};
pub use flags::{LockFlags, LockMode};
pub use guard::LockGuard;
pub use lock::{Lock, lock, lock_timeout, unlock};
pub use mode::FileMode;
pub use name_watch::NameWatch;
pub use pidfile::{PidFileLock, PidLock, PidLockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, DEFAULT_PATTERN, MAX_NAME_LEN, MAX_SLOTS, SemaphorePermit};
pub use temporary::{TemporaryFileLock, TemporaryLockGuard};
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use wait::lock_opened_async;
pub use wait::{DEFAULT_CHECK_INTERVAL, DEFAULT_TIMEOUT, Wait, lock_opened};

/// The PID of the process holding a lock on `file`, where the platform tells
/// (Linux reads `/proc/locks`); `None` when unknown or unheld.
///
/// ```no_run
/// let file = std::fs::File::open("/var/tmp/report.log")?;
/// if let Some(pid) = portalocker::holder_pid(&file) {
///     eprintln!("held by PID {pid}");
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn holder_pid(file: &std::fs::File) -> Option<u32> {
    sys::holder_pid(file)
}
