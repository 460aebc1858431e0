//! `redis-lock` passed through.

use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use crate::bindings::exports::portalocker::locks::redis_lock as ex;
use crate::bindings::portalocker::locks::redis_lock as next;
use crate::file::nanos;
use crate::{Error, Grant, Hold, Hooks, Kind, LockMode, Request, Target, Wait};

/// An exported `redis-lock`: the next component's, opened as the hooks
/// said.
pub struct RedisLockOf<H: Hooks> {
    inner: next::RedisLock,
    lock: Rc<Target>,
    given: String,
    hooks: PhantomData<H>,
}

/// An exported `redis-lock-guard`.
pub struct RedisLockGuardOf<H: Hooks>(Hold<H, next::RedisLockGuard>);

impl<H: Hooks> RedisLockOf<H> {
    fn take(&self, mode: LockMode, wait: Wait) -> Result<ex::RedisLockGuard, Error> {
        let call = || match wait {
            Wait::Forever => self.inner.lock(mode),
            Wait::Never => self.inner.try_lock(mode),
            Wait::For(timeout) => self.inner.lock_for(mode, nanos(timeout)),
        };
        let grant = |guard: &next::RedisLockGuard| Grant {
            mode,
            slot: None,
            // Only a fenced lock draws tokens: no call to ask otherwise.
            fencing_token: if self.lock.fencing {
                guard.fencing_token()
            } else {
                None
            },
        };
        let hold = crate::acquire::<H, _>(&self.lock, Request { mode, wait }, call, grant)?;
        Ok(ex::RedisLockGuard::new(RedisLockGuardOf(hold)))
    }
}

impl<H: Hooks> ex::GuestRedisLock for RedisLockOf<H> {
    fn open(name: String, fencing: bool) -> Result<ex::RedisLock, Error> {
        let mut target = Target::new(Kind::Redis, name.clone());
        target.fencing = fencing;
        let target = crate::open::<H>(target)?;
        let inner = next::RedisLock::open(&target.name, target.fencing)?;
        Ok(ex::RedisLock::new(Self {
            inner,
            lock: Rc::new(target),
            given: name,
            hooks: PhantomData,
        }))
    }

    fn lock(&self, mode: LockMode) -> Result<ex::RedisLockGuard, Error> {
        self.take(mode, Wait::Forever)
    }

    fn try_lock(&self, mode: LockMode) -> Result<ex::RedisLockGuard, Error> {
        self.take(mode, Wait::Never)
    }

    fn lock_for(&self, mode: LockMode, timeout: u64) -> Result<ex::RedisLockGuard, Error> {
        self.take(mode, Wait::For(Duration::from_nanos(timeout)))
    }

    fn name(&self) -> String {
        self.given.clone()
    }
}

impl<H: Hooks> ex::GuestRedisLockGuard for RedisLockGuardOf<H> {
    fn fencing_token(&self) -> Option<u64> {
        self.0.grant().fencing_token
    }

    fn is_lost(&self) -> bool {
        self.0.guard().is_none_or(next::RedisLockGuard::is_lost)
    }

    fn release(guard: ex::RedisLockGuard) -> Result<(), Error> {
        guard
            .into_inner::<Self>()
            .0
            .release(next::RedisLockGuard::release)
    }
}
