//! The `Host*` trait implementations, sync and async, all forwarding to the
//! shared operations in `resources`.

use wasmtime::component::Resource;

use crate::bindings::{async_, sync_};
use crate::ctx::LocksCtxView;
use crate::error::{ErrorCode, LockError};
use crate::resources::{
    FileLockGuardHandle, FileLockHandle, PermitHandle, RedisGuardHandle, RedisLockHandle,
    SemaphoreHandle, from_nanos,
};

/// Generate the parts that are the same in both flavours: error
/// conversion, mode conversion, and every call that never waits.
macro_rules! common_impls {
    ($gen:ident) => {
        impl $gen::portalocker::locks::types::Host for LocksCtxView<'_> {
            fn convert_error(
                &mut self,
                err: LockError,
            ) -> wasmtime::Result<$gen::portalocker::locks::types::Error> {
                use $gen::portalocker::locks::types::Error as E;
                Ok(match err.into_code()? {
                    ErrorCode::WouldBlock => E::WouldBlock,
                    ErrorCode::TimedOut => E::TimedOut,
                    ErrorCode::AccessDenied(m) => E::AccessDenied(m),
                    ErrorCode::InvalidArgument(m) => E::InvalidArgument(m),
                    ErrorCode::LimitExceeded(m) => E::LimitExceeded(m),
                    ErrorCode::Unsupported(m) => E::Unsupported(m),
                    ErrorCode::Lost => E::Lost,
                    ErrorCode::Other(m) => E::Other(m),
                })
            }
        }

        impl From<$gen::portalocker::locks::file_lock::LockMode> for portalocker::LockMode {
            fn from(mode: $gen::portalocker::locks::file_lock::LockMode) -> Self {
                match mode {
                    $gen::portalocker::locks::file_lock::LockMode::Exclusive => {
                        portalocker::LockMode::Exclusive
                    }
                    $gen::portalocker::locks::file_lock::LockMode::Shared => {
                        portalocker::LockMode::Shared
                    }
                }
            }
        }

        impl From<portalocker::LockMode> for $gen::portalocker::locks::file_lock::LockMode {
            fn from(mode: portalocker::LockMode) -> Self {
                match mode {
                    portalocker::LockMode::Exclusive => {
                        $gen::portalocker::locks::file_lock::LockMode::Exclusive
                    }
                    portalocker::LockMode::Shared => {
                        $gen::portalocker::locks::file_lock::LockMode::Shared
                    }
                }
            }
        }

        impl $gen::portalocker::locks::file_lock::Host for LocksCtxView<'_> {}
        impl $gen::portalocker::locks::redis_lock::Host for LocksCtxView<'_> {}

        impl $gen::portalocker::locks::redis_lock::HostRedisLockGuard for LocksCtxView<'_> {
            fn fencing_token(
                &mut self,
                self_: Resource<RedisGuardHandle>,
            ) -> wasmtime::Result<Option<u64>> {
                self.redis_fencing_token(&self_).map_err(trap)
            }

            fn is_lost(&mut self, self_: Resource<RedisGuardHandle>) -> wasmtime::Result<bool> {
                self.redis_is_lost(&self_).map_err(trap)
            }

            fn release(&mut self, guard: Resource<RedisGuardHandle>) -> Result<(), LockError> {
                self.release_redis_guard(guard)
            }

            fn drop(&mut self, rep: Resource<RedisGuardHandle>) -> wasmtime::Result<()> {
                self.table.delete(rep)?;
                Ok(())
            }
        }
        impl $gen::portalocker::locks::semaphore::Host for LocksCtxView<'_> {}

        impl $gen::portalocker::locks::file_lock::HostFileLockGuard for LocksCtxView<'_> {
            fn mode(
                &mut self,
                self_: Resource<FileLockGuardHandle>,
            ) -> wasmtime::Result<$gen::portalocker::locks::file_lock::LockMode> {
                Ok(self.guard_mode(&self_).map_err(trap)?.into())
            }

            fn release(&mut self, guard: Resource<FileLockGuardHandle>) -> Result<(), LockError> {
                self.release_guard(guard)
            }

            fn drop(&mut self, rep: Resource<FileLockGuardHandle>) -> wasmtime::Result<()> {
                self.table.delete(rep)?;
                Ok(())
            }
        }

        impl $gen::portalocker::locks::semaphore::HostSemaphorePermit for LocksCtxView<'_> {
            fn slot(&mut self, self_: Resource<PermitHandle>) -> wasmtime::Result<u32> {
                self.permit_slot(&self_).map_err(trap)
            }

            fn release(&mut self, permit: Resource<PermitHandle>) -> Result<(), LockError> {
                self.release_permit(permit)
            }

            fn drop(&mut self, rep: Resource<PermitHandle>) -> wasmtime::Result<()> {
                self.table.delete(rep)?;
                Ok(())
            }
        }
    };
}

common_impls!(sync_);
common_impls!(async_);

/// A failure in a call whose WIT result has no error case can only be a
/// bad handle: trap.
fn trap(error: LockError) -> wasmtime::Error {
    match error {
        LockError::Trap(trap) => trap,
        LockError::Code(code) => wasmtime::Error::msg(code.to_string()),
    }
}

impl sync_::portalocker::locks::file_lock::HostFileLock for LocksCtxView<'_> {
    fn open(&mut self, path: String) -> Result<Resource<FileLockHandle>, LockError> {
        self.open_file_lock(path)
    }

    fn lock(
        &mut self,
        self_: Resource<FileLockHandle>,
        mode: sync_::portalocker::locks::file_lock::LockMode,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.lock_blocking(&self_, mode.into(), timeout)
    }

    fn try_lock(
        &mut self,
        self_: Resource<FileLockHandle>,
        mode: sync_::portalocker::locks::file_lock::LockMode,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        self.lock_blocking(&self_, mode.into(), Some(std::time::Duration::ZERO))
    }

    fn lock_for(
        &mut self,
        self_: Resource<FileLockHandle>,
        mode: sync_::portalocker::locks::file_lock::LockMode,
        timeout: u64,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(from_nanos(timeout)))?;
        self.lock_blocking(&self_, mode.into(), timeout)
    }

    fn path(&mut self, self_: Resource<FileLockHandle>) -> wasmtime::Result<String> {
        self.file_lock_path(&self_).map_err(trap)
    }

    fn drop(&mut self, rep: Resource<FileLockHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl async_::portalocker::locks::file_lock::HostFileLock for LocksCtxView<'_> {
    fn open(&mut self, path: String) -> Result<Resource<FileLockHandle>, LockError> {
        self.open_file_lock(path)
    }

    async fn lock(
        &mut self,
        self_: Resource<FileLockHandle>,
        mode: async_::portalocker::locks::file_lock::LockMode,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.lock_waiting(&self_, mode.into(), timeout).await
    }

    fn try_lock(
        &mut self,
        self_: Resource<FileLockHandle>,
        mode: async_::portalocker::locks::file_lock::LockMode,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        self.lock_blocking(&self_, mode.into(), Some(std::time::Duration::ZERO))
    }

    async fn lock_for(
        &mut self,
        self_: Resource<FileLockHandle>,
        mode: async_::portalocker::locks::file_lock::LockMode,
        timeout: u64,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(from_nanos(timeout)))?;
        self.lock_waiting(&self_, mode.into(), timeout).await
    }

    fn path(&mut self, self_: Resource<FileLockHandle>) -> wasmtime::Result<String> {
        self.file_lock_path(&self_).map_err(trap)
    }

    fn drop(&mut self, rep: Resource<FileLockHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl sync_::portalocker::locks::semaphore::HostSemaphore for LocksCtxView<'_> {
    fn open(
        &mut self,
        name: String,
        slots: u32,
        directory: String,
    ) -> Result<Resource<SemaphoreHandle>, LockError> {
        self.open_semaphore(name, slots, directory)
    }

    fn acquire(
        &mut self,
        self_: Resource<SemaphoreHandle>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.acquire_blocking(&self_, timeout)
    }

    fn try_acquire(
        &mut self,
        self_: Resource<SemaphoreHandle>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        self.acquire_blocking(&self_, Some(std::time::Duration::ZERO))
    }

    fn acquire_for(
        &mut self,
        self_: Resource<SemaphoreHandle>,
        timeout: u64,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(from_nanos(timeout)))?;
        self.acquire_blocking(&self_, timeout)
    }

    fn slots(&mut self, self_: Resource<SemaphoreHandle>) -> wasmtime::Result<u32> {
        self.semaphore_slots(&self_).map_err(trap)
    }

    fn drop(&mut self, rep: Resource<SemaphoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl async_::portalocker::locks::semaphore::HostSemaphore for LocksCtxView<'_> {
    fn open(
        &mut self,
        name: String,
        slots: u32,
        directory: String,
    ) -> Result<Resource<SemaphoreHandle>, LockError> {
        self.open_semaphore(name, slots, directory)
    }

    async fn acquire(
        &mut self,
        self_: Resource<SemaphoreHandle>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.acquire_waiting(&self_, timeout).await
    }

    fn try_acquire(
        &mut self,
        self_: Resource<SemaphoreHandle>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        self.acquire_blocking(&self_, Some(std::time::Duration::ZERO))
    }

    async fn acquire_for(
        &mut self,
        self_: Resource<SemaphoreHandle>,
        timeout: u64,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(from_nanos(timeout)))?;
        self.acquire_waiting(&self_, timeout).await
    }

    fn slots(&mut self, self_: Resource<SemaphoreHandle>) -> wasmtime::Result<u32> {
        self.semaphore_slots(&self_).map_err(trap)
    }

    fn drop(&mut self, rep: Resource<SemaphoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl sync_::portalocker::locks::redis_lock::HostRedisLock for LocksCtxView<'_> {
    fn open(
        &mut self,
        name: String,
        fencing: bool,
    ) -> Result<Resource<RedisLockHandle>, LockError> {
        self.open_redis_lock(name, fencing)
    }

    fn lock(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: sync_::portalocker::locks::file_lock::LockMode,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.redis_lock_blocking(&self_, mode.into(), timeout)
    }

    fn try_lock(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: sync_::portalocker::locks::file_lock::LockMode,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        self.redis_lock_blocking(&self_, mode.into(), Some(std::time::Duration::ZERO))
    }

    fn lock_for(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: sync_::portalocker::locks::file_lock::LockMode,
        timeout: u64,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(from_nanos(timeout)))?;
        self.redis_lock_blocking(&self_, mode.into(), timeout)
    }

    fn name(&mut self, self_: Resource<RedisLockHandle>) -> wasmtime::Result<String> {
        self.redis_lock_name(&self_).map_err(trap)
    }

    fn drop(&mut self, rep: Resource<RedisLockHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl async_::portalocker::locks::redis_lock::HostRedisLock for LocksCtxView<'_> {
    fn open(
        &mut self,
        name: String,
        fencing: bool,
    ) -> Result<Resource<RedisLockHandle>, LockError> {
        self.open_redis_lock(name, fencing)
    }

    async fn lock(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: async_::portalocker::locks::file_lock::LockMode,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.redis_lock_waiting(&self_, mode.into(), timeout).await
    }

    async fn try_lock(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: async_::portalocker::locks::file_lock::LockMode,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        self.redis_lock_waiting(&self_, mode.into(), Some(std::time::Duration::ZERO))
            .await
    }

    async fn lock_for(
        &mut self,
        self_: Resource<RedisLockHandle>,
        mode: async_::portalocker::locks::file_lock::LockMode,
        timeout: u64,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(from_nanos(timeout)))?;
        self.redis_lock_waiting(&self_, mode.into(), timeout).await
    }

    fn name(&mut self, self_: Resource<RedisLockHandle>) -> wasmtime::Result<String> {
        self.redis_lock_name(&self_).map_err(trap)
    }

    fn drop(&mut self, rep: Resource<RedisLockHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}
