//! The `redis-lock` interface: portalocker's Redis lock on the server the
//! host granted, inside the host's namespace, and its guards.
//!
//! Every instance granted the same server shares one connection pool (three
//! connections, plus one per Redis lock being taken or held, plus a few
//! idle ones): a plugin opening Redis locks in a loop opens no connection,
//! and one taking or holding many is stopped by its
//! `max_redis_connections` budget.

use std::time::Duration;

use portalocker::LockMode;
use portalocker::redis::{RedisLock, RedisLockGuard};
use wasmtime::component::Resource;

use crate::bindings::{async_, sync_};
use crate::budget::{Charge, HANDLE_OVERHEAD, Kind};
use crate::ctx::LocksCtxView;
use crate::error::{ErrorCode, LockError, trap};

/// The longest Redis lock name a guest may use, in bytes (before the
/// host's prefix).
pub const MAX_REDIS_NAME_LEN: usize = 256;

/// A Redis lock the guest named (`redis-lock`).
#[doc(hidden)]
#[derive(Debug)]
pub struct RedisLockHandle {
    lock: RedisLock,
    name: String,
    _charge: Charge,
}

/// A held Redis lock (`redis-lock-guard`): dropping it releases the lock.
#[doc(hidden)]
#[derive(Debug)]
pub struct RedisGuardHandle {
    guard: Option<RedisLockGuard>,
    _charge: Charge,
}

impl RedisLockHandle {
    /// A core error about this lock, told with the guest's name: the host's
    /// prefix never reaches the guest.
    fn error(&self, error: portalocker::Error) -> LockError {
        LockError::from_core(&self.name, error).renamed(self.lock.channel(), &self.name)
    }
}

impl LocksCtxView<'_> {
    fn open_redis_lock(
        &mut self,
        name: String,
        fencing: bool,
    ) -> Result<Resource<RedisLockHandle>, LockError> {
        let Some(grant) = &self.ctx.redis else {
            return Err(ErrorCode::Unsupported("this host grants no Redis server".into()).into());
        };
        if name.is_empty() || name.len() > MAX_REDIS_NAME_LEN {
            return Err(LockError::invalid(format!(
                "a Redis lock name must be 1 to {MAX_REDIS_NAME_LEN} bytes"
            )));
        }
        let channel = format!("{}{name}", grant.prefix());
        let charge = self
            .ctx
            .budget
            .charge_handle(2 * channel.len() + name.len() + 2 * HANDLE_OVERHEAD)?;
        let lock = RedisLock::with_pool(grant.pool(), &channel)
            .map_err(|e| LockError::from_core(&name, e).renamed(&channel, &name))?
            .fencing(fencing);
        Ok(self.table.push(RedisLockHandle {
            lock,
            name,
            _charge: charge,
        })?)
    }

    fn redis_lock_name(&mut self, handle: &Resource<RedisLockHandle>) -> Result<String, LockError> {
        Ok(self.table.get(handle)?.name.clone())
    }

    /// Charge the acquisition (a hold, a connection, the guard's handle) and
    /// configure the lock for it.
    fn redis_lock_for(
        &mut self,
        handle: &Resource<RedisLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<(RedisLock, Charge), LockError> {
        let charge = self.ctx.budget.charge(&[
            (Kind::Held, 1),
            (Kind::RedisConnections, 1),
            (Kind::Handles, 1),
            (Kind::Bytes, HANDLE_OVERHEAD),
        ])?;
        let lock = self
            .table
            .get(handle)?
            .lock
            .clone()
            .lock_mode(mode)
            .wait(crate::ctx::waiting(timeout));
        Ok((lock, charge))
    }

    /// Take a Redis lock, blocking this thread.
    fn redis_lock_blocking(
        &mut self,
        handle: &Resource<RedisLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let (lock, charge) = self.redis_lock_for(handle, mode, timeout)?;
        let guard = lock.acquire().map_err(|e| {
            self.table
                .get(handle)
                .map_or_else(LockError::from, |h| h.error(e))
        })?;
        self.push_redis_guard(guard, charge)
    }

    /// Take a Redis lock without blocking the executor. Cancel-safe: a
    /// dropped call lets go of everything at once.
    async fn redis_lock_waiting(
        &mut self,
        handle: &Resource<RedisLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let (lock, charge) = self.redis_lock_for(handle, mode, timeout)?;
        let guard = lock.acquire_async().await.map_err(|e| {
            self.table
                .get(handle)
                .map_or_else(LockError::from, |h| h.error(e))
        })?;
        self.push_redis_guard(guard, charge)
    }

    fn push_redis_guard(
        &mut self,
        guard: RedisLockGuard,
        charge: Charge,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        Ok(self.table.push(RedisGuardHandle {
            guard: Some(guard),
            _charge: charge,
        })?)
    }

    fn release_redis_guard(&mut self, guard: Resource<RedisGuardHandle>) -> Result<(), LockError> {
        let mut handle = self.table.delete(guard)?;
        match handle.guard.take() {
            Some(guard) => guard.release().map_err(|e| match e {
                portalocker::Error::Lost { .. } => ErrorCode::Lost.into(),
                other => LockError::from_core("the Redis lock", other),
            }),
            None => Ok(()),
        }
    }
}

/// The guard's calls, the same in both flavours.
macro_rules! guard_impl {
    ($gen:ident) => {
        impl $gen::portalocker::locks::redis_lock::HostRedisLockGuard for LocksCtxView<'_> {
            fn fencing_token(
                &mut self,
                self_: Resource<RedisGuardHandle>,
            ) -> wasmtime::Result<Option<u64>> {
                let handle = self
                    .table
                    .get(&self_)
                    .map_err(LockError::from)
                    .map_err(trap)?;
                Ok(handle
                    .guard
                    .as_ref()
                    .and_then(RedisLockGuard::fencing_token))
            }

            fn is_lost(&mut self, self_: Resource<RedisGuardHandle>) -> wasmtime::Result<bool> {
                let handle = self
                    .table
                    .get(&self_)
                    .map_err(LockError::from)
                    .map_err(trap)?;
                Ok(handle.guard.as_ref().is_none_or(RedisLockGuard::is_lost))
            }

            fn release(&mut self, guard: Resource<RedisGuardHandle>) -> Result<(), LockError> {
                self.release_redis_guard(guard)
            }

            fn drop(&mut self, rep: Resource<RedisGuardHandle>) -> wasmtime::Result<()> {
                self.table.delete(rep)?;
                Ok(())
            }
        }
    };
}

guard_impl!(sync_);
guard_impl!(async_);

/// `HostRedisLock` for `$gen`: the calls that never wait are the same in
/// both flavours; the ones that talk to Redis are given.
macro_rules! redis_lock_impl {
    ($gen:ident, $($waiting:tt)*) => {
        impl $gen::portalocker::locks::redis_lock::HostRedisLock for LocksCtxView<'_> {
            fn open(
                &mut self,
                name: String,
                fencing: bool,
            ) -> Result<Resource<RedisLockHandle>, LockError> {
                self.open_redis_lock(name, fencing)
            }

            fn name(&mut self, self_: Resource<RedisLockHandle>) -> wasmtime::Result<String> {
                self.redis_lock_name(&self_).map_err(trap)
            }

            fn drop(&mut self, rep: Resource<RedisLockHandle>) -> wasmtime::Result<()> {
                self.table.delete(rep)?;
                Ok(())
            }

            $($waiting)*
        }
    };
}

redis_lock_impl! {
    sync_,
    fn lock(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: sync_::portalocker::locks::types::LockMode,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.redis_lock_blocking(&self_, mode.into(), timeout)
    }
    fn try_lock(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: sync_::portalocker::locks::types::LockMode,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        self.redis_lock_blocking(&self_, mode.into(), Some(Duration::ZERO))
    }
    fn lock_for(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: sync_::portalocker::locks::types::LockMode,
        timeout: u64,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(Duration::from_nanos(timeout)))?;
        self.redis_lock_blocking(&self_, mode.into(), timeout)
    }
}

redis_lock_impl! {
    async_,
    async fn lock(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: async_::portalocker::locks::types::LockMode,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.redis_lock_waiting(&self_, mode.into(), timeout).await
    }
    async fn try_lock(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: async_::portalocker::locks::types::LockMode,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        self.redis_lock_waiting(&self_, mode.into(), Some(Duration::ZERO))
            .await
    }
    async fn lock_for(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: async_::portalocker::locks::types::LockMode,
        timeout: u64,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(Duration::from_nanos(timeout)))?;
        self.redis_lock_waiting(&self_, mode.into(), timeout).await
    }
}
