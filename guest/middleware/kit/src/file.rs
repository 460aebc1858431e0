//! `file-lock` passed through.

use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use crate::bindings::exports::portalocker::locks::file_lock as ex;
use crate::bindings::portalocker::locks::file_lock as next;
use crate::{Error, Grant, Hold, Hooks, Kind, LockMode, Request, Target, Wait};

/// An exported `file-lock`: the next component's, opened as the hooks said.
pub struct FileLockOf<H: Hooks> {
    inner: next::FileLock,
    lock: Rc<Target>,
    given: String,
    hooks: PhantomData<H>,
}

/// An exported `file-lock-guard`.
pub struct FileLockGuardOf<H: Hooks>(Hold<H, next::FileLockGuard>);

impl<H: Hooks> FileLockOf<H> {
    fn take(&self, mode: LockMode, wait: Wait) -> Result<ex::FileLockGuard, Error> {
        let call = || match wait {
            Wait::Forever => self.inner.lock(mode),
            Wait::Never => self.inner.try_lock(mode),
            Wait::For(timeout) => self.inner.lock_for(mode, nanos(timeout)),
        };
        // A file lock grants the mode asked for: no call to ask it back.
        let grant = |_: &next::FileLockGuard| Grant {
            mode,
            slot: None,
            fencing_token: None,
        };
        let hold = crate::acquire::<H, _>(&self.lock, Request { mode, wait }, call, grant)?;
        Ok(ex::FileLockGuard::new(FileLockGuardOf(hold)))
    }
}

impl<H: Hooks> ex::GuestFileLock for FileLockOf<H> {
    fn open(path: String) -> Result<ex::FileLock, Error> {
        let target = crate::open::<H>(Target::new(Kind::File, path.clone()))?;
        let inner = next::FileLock::open(&target.name)?;
        Ok(ex::FileLock::new(Self {
            inner,
            lock: Rc::new(target),
            given: path,
            hooks: PhantomData,
        }))
    }

    fn lock(&self, mode: LockMode) -> Result<ex::FileLockGuard, Error> {
        self.take(mode, Wait::Forever)
    }

    fn try_lock(&self, mode: LockMode) -> Result<ex::FileLockGuard, Error> {
        self.take(mode, Wait::Never)
    }

    fn lock_for(&self, mode: LockMode, timeout: u64) -> Result<ex::FileLockGuard, Error> {
        self.take(mode, Wait::For(Duration::from_nanos(timeout)))
    }

    fn path(&self) -> String {
        self.given.clone()
    }
}

impl<H: Hooks> ex::GuestFileLockGuard for FileLockGuardOf<H> {
    fn mode(&self) -> LockMode {
        self.0.grant().mode
    }

    fn release(guard: ex::FileLockGuard) -> Result<(), Error> {
        guard
            .into_inner::<Self>()
            .0
            .release(next::FileLockGuard::release)
    }
}

/// A duration back to the interface's nanoseconds (saturating).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
