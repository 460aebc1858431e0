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

use crate::bindings::{async_, sync_, v0_2};
use crate::budget::{Charge, HANDLE_OVERHEAD, Kind};
use crate::ctx::LocksCtxView;
use crate::error::{ErrorCode, LockError, trap};
use crate::loss::RedisLoss;

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

/// A Redis lock being taken: the configured lock and its charge, owned, so
/// that the wait runs without the store. Dropping it at any point leaves
/// nothing: the core's acquisition is cancel-safe (no subscription, no
/// connection; a grant that raced the drop is released at once) and the
/// charge is refunded.
pub(crate) struct PreparedRedis {
    lock: RedisLock,
    name: String,
    charge: Charge,
}

/// A Redis lock taken and not yet in the table.
pub(crate) struct AcquiredRedis {
    guard: RedisLockGuard,
    charge: Charge,
}

impl PreparedRedis {
    /// Take the lock without blocking the executor.
    pub(crate) async fn acquire(self) -> Result<AcquiredRedis, LockError> {
        match self.lock.acquire_async().await {
            Ok(guard) => Ok(AcquiredRedis {
                guard,
                charge: self.charge,
            }),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Take the lock, blocking this thread.
    fn acquire_blocking(self) -> Result<AcquiredRedis, LockError> {
        match self.lock.acquire() {
            Ok(guard) => Ok(AcquiredRedis {
                guard,
                charge: self.charge,
            }),
            Err(e) => Err(self.error(e)),
        }
    }

    /// A core error about this lock, told with the guest's name.
    fn error(&self, error: portalocker::Error) -> LockError {
        LockError::from_core(&self.name, error).renamed(self.lock.channel(), &self.name)
    }
}

impl LocksCtxView<'_> {
    pub(crate) fn open_redis_lock(
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

    pub(crate) fn redis_lock_name(
        &mut self,
        handle: &Resource<RedisLockHandle>,
    ) -> Result<String, LockError> {
        Ok(self.table.get(handle)?.name.clone())
    }

    /// Charge the acquisition (a hold, a connection, the guard's handle) and
    /// configure the lock for it.
    pub(crate) fn prepare_redis(
        &mut self,
        handle: &Resource<RedisLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<PreparedRedis, LockError> {
        let charge = self.ctx.budget.charge(&[
            (Kind::Held, 1),
            (Kind::RedisConnections, 1),
            (Kind::Handles, 1),
            (Kind::Bytes, HANDLE_OVERHEAD),
        ])?;
        let handle = self.table.get(handle)?;
        let lock = handle
            .lock
            .clone()
            .lock_mode(mode)
            .wait(crate::ctx::waiting(timeout));
        Ok(PreparedRedis {
            lock,
            name: handle.name.clone(),
            charge,
        })
    }

    /// Take a Redis lock, blocking this thread.
    fn redis_lock_blocking(
        &mut self,
        handle: &Resource<RedisLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let acquired = self
            .prepare_redis(handle, mode, timeout)?
            .acquire_blocking()?;
        self.push_redis_guard(acquired)
    }

    /// Take a Redis lock without blocking the executor. Cancel-safe: a
    /// dropped call lets go of everything at once.
    async fn redis_lock_waiting(
        &mut self,
        handle: &Resource<RedisLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let acquired = self.prepare_redis(handle, mode, timeout)?.acquire().await?;
        self.push_redis_guard(acquired)
    }

    /// Put a taken lock in the table. Call it in the same poll as the
    /// acquisition: nothing may cancel between the two.
    pub(crate) fn push_redis_guard(
        &mut self,
        acquired: AcquiredRedis,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        Ok(self.table.push(RedisGuardHandle {
            guard: Some(acquired.guard),
            _charge: acquired.charge,
        })?)
    }

    /// A watch of a held lock's loss, charged as a handle.
    pub(crate) fn redis_loss(
        &mut self,
        guard: &Resource<RedisGuardHandle>,
    ) -> Result<RedisLoss, LockError> {
        let charge = self.ctx.budget.charge_handle(HANDLE_OVERHEAD)?;
        let handle = self.table.get(guard)?;
        let watch = handle
            .guard
            .as_ref()
            .map(RedisLockGuard::loss_watch)
            .ok_or_else(|| LockError::from(ErrorCode::Lost))?;
        Ok(RedisLoss { watch, charge })
    }

    /// A held lock's fencing token.
    pub(crate) fn redis_guard_token(
        &mut self,
        guard: &Resource<RedisGuardHandle>,
    ) -> Result<Option<u64>, LockError> {
        let handle = self.table.get(guard)?;
        Ok(handle
            .guard
            .as_ref()
            .and_then(RedisLockGuard::fencing_token))
    }

    /// Whether a held lock was lost.
    pub(crate) fn redis_guard_is_lost(
        &mut self,
        guard: &Resource<RedisGuardHandle>,
    ) -> Result<bool, LockError> {
        let handle = self.table.get(guard)?;
        Ok(handle.guard.as_ref().is_none_or(RedisLockGuard::is_lost))
    }

    /// A held lock's mode.
    pub(crate) fn redis_guard_mode(
        &mut self,
        guard: &Resource<RedisGuardHandle>,
    ) -> Result<LockMode, LockError> {
        let handle = self.table.get(guard)?;
        Ok(handle
            .guard
            .as_ref()
            .map_or(LockMode::Exclusive, RedisLockGuard::mode))
    }

    pub(crate) fn release_redis_guard(
        &mut self,
        guard: Resource<RedisGuardHandle>,
    ) -> Result<(), LockError> {
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

/// The guard's calls, the same in every flavour (0.2.0 adds some: given).
macro_rules! guard_impl {
    ($gen:ident, $($more:tt)*) => {
        impl $gen::portalocker::locks::redis_lock::HostRedisLockGuard for LocksCtxView<'_> {
            fn fencing_token(
                &mut self,
                self_: Resource<RedisGuardHandle>,
            ) -> wasmtime::Result<Option<u64>> {
                self.redis_guard_token(&self_).map_err(trap)
            }

            fn is_lost(&mut self, self_: Resource<RedisGuardHandle>) -> wasmtime::Result<bool> {
                self.redis_guard_is_lost(&self_).map_err(trap)
            }

            fn release(&mut self, guard: Resource<RedisGuardHandle>) -> Result<(), LockError> {
                self.release_redis_guard(guard)
            }

            fn drop(&mut self, rep: Resource<RedisGuardHandle>) -> wasmtime::Result<()> {
                self.table.delete(rep)?;
                Ok(())
            }

            $($more)*
        }
    };
}

guard_impl!(sync_,);
guard_impl!(async_,);
guard_impl! {
    v0_2,
    fn mode(
        &mut self,
        self_: Resource<RedisGuardHandle>,
    ) -> wasmtime::Result<v0_2::portalocker::locks::types::LockMode> {
        Ok(self.redis_guard_mode(&self_).map_err(trap)?.into())
    }
}

/// `HostRedisLock` for `$gen`: the calls that never wait are the same in
/// every flavour; the 0.1.0 flavours' calls that talk to Redis are given.
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

// In 0.2.0 every call that talks to Redis is concurrent (below).
redis_lock_impl!(v0_2,);

/// `portalocker:locks@0.2.0`'s concurrent calls: `lock`, `try-lock` and
/// `lock-for` (see [`concurrent_lock`]), and the loss watch. The calls that
/// never talk to Redis are the macros' above.
mod concurrent {
    use std::time::Duration;

    use wasmtime::component::{Access, Accessor, FutureReader, Resource};

    use super::{RedisGuardHandle, RedisLockHandle};
    use crate::bindings::v0_2::portalocker::locks::redis_lock as wit;
    use crate::bindings::v0_2::portalocker::locks::types::LockMode;
    use crate::ctx::Locks;
    use crate::error::LockError;

    impl<T: Send + 'static> wit::HostRedisLockWithStore<T> for Locks {
        async fn lock(
            accessor: &Accessor<T, Self>,
            self_: Resource<RedisLockHandle>,
            mode: LockMode,
        ) -> Result<Resource<RedisGuardHandle>, LockError> {
            super::concurrent_lock(accessor, &self_, mode.into(), Wait::Host).await
        }

        async fn try_lock(
            accessor: &Accessor<T, Self>,
            self_: Resource<RedisLockHandle>,
            mode: LockMode,
        ) -> Result<Resource<RedisGuardHandle>, LockError> {
            super::concurrent_lock(accessor, &self_, mode.into(), Wait::Not).await
        }

        async fn lock_for(
            accessor: &Accessor<T, Self>,
            self_: Resource<RedisLockHandle>,
            mode: LockMode,
            timeout: u64,
        ) -> Result<Resource<RedisGuardHandle>, LockError> {
            let timeout = Duration::from_nanos(timeout);
            super::concurrent_lock(accessor, &self_, mode.into(), Wait::For(timeout)).await
        }
    }

    impl<T: Send + 'static> wit::HostRedisLockGuardWithStore<T> for Locks {
        fn lost(
            mut host: Access<'_, T, Self>,
            self_: Resource<RedisGuardHandle>,
        ) -> Result<FutureReader<String>, LockError> {
            let watch = host.get().redis_loss(&self_)?;
            FutureReader::new(&mut host, async move {
                Ok::<_, wasmtime::Error>(watch.lost().await)
            })
            .map_err(LockError::Trap)
        }
    }

    /// How long a concurrent call may wait.
    pub(super) enum Wait {
        /// As long as the host allows.
        Host,
        /// Not at all (`try-lock`).
        Not,
        /// At most this long (within what the host allows).
        For(Duration),
    }
}

/// Take a Redis lock for a concurrent (0.2.0) call: prepare with the store,
/// wait without it, and put the guard in the table in the same poll as the
/// acquisition (see `file_lock::concurrent_lock`).
async fn concurrent_lock<T: Send + 'static>(
    accessor: &wasmtime::component::Accessor<T, crate::ctx::Locks>,
    handle: &Resource<RedisLockHandle>,
    mode: LockMode,
    wait: concurrent::Wait,
) -> Result<Resource<RedisGuardHandle>, LockError> {
    let prepared = accessor.with(|mut access| {
        let mut view = access.get();
        let timeout = match wait {
            concurrent::Wait::Host => view.ctx.wait_limit(None)?,
            concurrent::Wait::Not => Some(Duration::ZERO),
            concurrent::Wait::For(t) => view.ctx.wait_limit(Some(t))?,
        };
        view.prepare_redis(handle, mode, timeout)
    })?;
    let acquired = prepared.acquire().await?;
    accessor.with(|mut access| access.get().push_redis_guard(acquired))
}
