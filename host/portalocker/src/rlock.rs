//! portalocker's `RLock`: a lock that the same instance can take again.

use std::fmt;
use std::fs::File;
use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::Result;
use crate::guard::LockGuard;
use crate::lock::Lock;

/// A re-entrant [`Lock`]: the first acquire takes the OS lock, later ones on
/// the same `RLock` (from any thread) only count, and the lock is released
/// when the last guard goes.
///
/// Re-entrancy is per instance: a second `RLock` on the same path contends
/// like any other lock, as in portalocker.
///
/// ```
/// use portalocker::{Lock, RLock};
/// # let dir = tempfile::tempdir()?;
/// let lock = RLock::new(Lock::new(dir.path().join("state.lock")));
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?; // no deadlock, same file
/// assert_eq!(lock.count(), 2);
/// drop(inner);
/// drop(outer); // released here
/// assert_eq!(lock.count(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RLock {
    lock: Lock,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    count: usize,
    held: Option<Arc<LockGuard>>,
}

impl RLock {
    /// A re-entrant lock following `lock`'s configuration.
    pub fn new(lock: Lock) -> Self {
        Self {
            lock,
            state: Mutex::new(State::default()),
        }
    }

    /// The path of the lock file.
    pub fn path(&self) -> &Path {
        self.lock.path()
    }

    /// How many guards are alive.
    pub fn count(&self) -> usize {
        self.state().count
    }

    /// Take the lock, or count one more hold if this instance has it.
    ///
    /// The first acquire blocks as [`Lock::acquire`] does; later ones never
    /// block.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`], for the first acquire only.
    pub fn acquire(&self) -> Result<RLockGuard<'_>> {
        let mut state = self.state();
        if let Some(held) = &state.held {
            let held = Arc::clone(held);
            state.count += 1;
            return Ok(RLockGuard {
                owner: self,
                held: Some(held),
            });
        }
        // Taking the OS lock under the state mutex serialises first
        // acquires from several threads on this instance.
        let held = Arc::new(self.lock.acquire()?);
        state.held = Some(Arc::clone(&held));
        state.count = 1;
        Ok(RLockGuard {
            owner: self,
            held: Some(held),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drop one hold; returns the OS lock when it was the last one.
    fn release_one(&self, held: Arc<LockGuard>) -> Option<LockGuard> {
        drop(held);
        let mut state = self.state();
        state.count -= 1;
        if state.count > 0 {
            return None;
        }
        let last = state.held.take()?;
        // Every guard dropped its clone before decrementing, so this is the
        // only reference left.
        Arc::into_inner(last)
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("path", &self.lock.path())
            .field("count", &self.count())
            .finish()
    }
}

/// One hold on an [`RLock`]. Derefs to the locked [`File`].
#[must_use = "if unused the hold is released immediately"]
pub struct RLockGuard<'a> {
    owner: &'a RLock,
    held: Option<Arc<LockGuard>>,
}

impl RLockGuard<'_> {
    /// The locked file (the same handle for every hold).
    pub fn file(&self) -> &File {
        self.held.as_ref().expect("held until dropped").file()
    }

    /// Drop this hold now; if it was the last, unlock and close, reporting
    /// failures.
    ///
    /// # Errors
    ///
    /// As [`LockGuard::release`], when this was the last hold.
    pub fn release(mut self) -> Result<()> {
        let held = self.held.take().expect("held until dropped");
        match self.owner.release_one(held) {
            Some(last) => last.release(),
            None => Ok(()),
        }
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            drop(self.owner.release_one(held));
        }
    }
}

impl Deref for RLockGuard<'_> {
    type Target = File;
    fn deref(&self) -> &File {
        self.file()
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("path", &self.owner.path())
            .finish_non_exhaustive()
    }
}
