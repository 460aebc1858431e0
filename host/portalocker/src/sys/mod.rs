//! The operating-system layer: opening lock files safely, taking and
//! releasing whole-file locks, and waiting for them with a deadline.
//!
//! Locks are `flock(2)` on Unix (what portalocker uses, so Python and Rust
//! programs exclude each other) and `LockFileEx` on Windows, both through
//! `fs4`. Either way a lock belongs to the open file description, not the
//! process: two opens of one file in one process contend.

use std::fs::File;
use std::io;

use crate::flags::LockMode;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

/// Try once to take the lock. `Ok(false)` means someone else holds it.
pub(crate) fn try_lock(file: &File, mode: LockMode) -> io::Result<bool> {
    let result = match mode {
        LockMode::Exclusive => fs4::FileExt::try_lock(file),
        LockMode::Shared => fs4::FileExt::try_lock_shared(file),
    };
    match result {
        Ok(()) => Ok(true),
        Err(fs4::TryLockError::WouldBlock) => Ok(false),
        Err(fs4::TryLockError::Error(e)) if is_contention(&e) => Ok(false),
        Err(fs4::TryLockError::Error(e)) => Err(e),
    }
}

/// Wait as long as it takes for the lock, parked in the kernel.
pub(crate) fn lock_blocking(file: &File, mode: LockMode) -> io::Result<()> {
    loop {
        let result = match mode {
            LockMode::Exclusive => fs4::FileExt::lock(file),
            LockMode::Shared => fs4::FileExt::lock_shared(file),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Release the lock held through `file`. Harmless when none is held.
pub(crate) fn unlock(file: &File) -> io::Result<()> {
    match fs4::FileExt::unlock(file) {
        Err(e) if nothing_to_unlock(&e) => Ok(()),
        other => other,
    }
}

/// Identifies a file: device and inode where the platform tells, `(0, 0)`
/// elsewhere (then a release wakes every async waiter, which only costs a
/// retry).
#[cfg(feature = "async")]
pub(crate) type FileKey = (u64, u64);

/// The identity of an open file.
#[cfg(feature = "async")]
pub(crate) fn key_of(file: &File) -> FileKey {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        file.metadata().map_or((0, 0), |m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        (0, 0)
    }
}

/// Whether an error from a lock call means "someone else holds it".
fn is_contention(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock || contention_errno(error)
}
