//! The operating-system layer: opening lock files safely, taking and
//! releasing whole-file locks, and waiting for them with a deadline.
//!
//! Locks are `flock(2)` on Unix (what portalocker uses, so Python and Rust
//! programs exclude each other) and `LockFileEx` on Windows, both through
//! `fs4`. Either way a lock belongs to the open file description, not the
//! process: two opens of one file in one process contend.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

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
    fs4::FileExt::unlock(file)
}

/// Wait for the lock until `deadline`. `Ok(false)` means the deadline passed
/// with the lock still held by someone else.
///
/// Where the platform allows it the wait is parked in the kernel and is cut
/// short at the deadline (see [`unix`]); elsewhere it polls with a short
/// backoff so a release is noticed within about a millisecond.
pub(crate) fn lock_until(file: &File, mode: LockMode, deadline: Instant) -> io::Result<bool> {
    if try_lock(file, mode)? {
        return Ok(true);
    }
    if Instant::now() >= deadline {
        return Ok(false);
    }
    match lock_until_parked(file, mode, deadline) {
        Some(result) => result,
        None => lock_until_polling(file, mode, deadline),
    }
}

/// Poll with an exponential backoff from 50 µs to 1 ms, capped at the
/// deadline: the fallback where a parked wait cannot be interrupted.
pub(crate) fn lock_until_polling(
    file: &File,
    mode: LockMode,
    deadline: Instant,
) -> io::Result<bool> {
    let mut pause = Duration::from_micros(50);
    loop {
        if try_lock(file, mode)? {
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

/// Whether an error from a lock call means "someone else holds it".
fn is_contention(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock || contention_errno(error)
}
