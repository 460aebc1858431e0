//! The generated bindings, sync and async, kept private: no generated type
//! appears in this crate's API.

/// `bindgen!` for the `plugin` world with the given `imports` flags; the
/// resource and error mappings are the same for both flavours.
macro_rules! plugin_bindings {
    ($path:literal, $($imports:tt)*) => {
        wasmtime::component::bindgen!({
            path: $path,
            world: "portalocker:locks/plugin",
            imports: { $($imports)* },
            with: {
                "portalocker:locks/file-lock.file-lock": crate::FileLockHandle,
                "portalocker:locks/file-lock.file-lock-guard": crate::FileLockGuardHandle,
                "portalocker:locks/semaphore.semaphore": crate::SemaphoreHandle,
                "portalocker:locks/semaphore.semaphore-permit": crate::PermitHandle,
                "portalocker:locks/redis-lock.redis-lock": crate::RedisLockHandle,
                "portalocker:locks/redis-lock.redis-lock-guard": crate::RedisGuardHandle,
            },
            trappable_error_type: { "portalocker:locks/types.error" => crate::LockError },
        });
    };
}

/// Every import is synchronous: blocking calls block the calling thread.
pub(crate) mod sync_ {
    plugin_bindings!("wit", default: trappable);
}

/// Only the calls that can wait are async; they never block the executor.
pub(crate) mod async_ {
    plugin_bindings!(
        "wit",
        "portalocker:locks/file-lock.[method]file-lock.lock": async | trappable,
        "portalocker:locks/file-lock.[method]file-lock.lock-for": async | trappable,
        "portalocker:locks/semaphore.[method]semaphore.acquire": async | trappable,
        "portalocker:locks/semaphore.[method]semaphore.acquire-for": async | trappable,
        "portalocker:locks/redis-lock.[method]redis-lock.lock": async | trappable,
        "portalocker:locks/redis-lock.[method]redis-lock.try-lock": async | trappable,
        "portalocker:locks/redis-lock.[method]redis-lock.lock-for": async | trappable,
        default: trappable,
    );
}

/// `portalocker:locks@0.2.0`: its `async func`s are concurrent (they run
/// beside the guest's other tasks, with store access only between awaits),
/// and `lost` needs the store to make its `future`.
pub(crate) mod v0_2 {
    plugin_bindings!(
        "wit/v0.2",
        "portalocker:locks/file-lock.[method]file-lock-guard.lost": store | trappable,
        "portalocker:locks/semaphore.[method]semaphore-permit.lost": store | trappable,
        "portalocker:locks/redis-lock.[method]redis-lock-guard.lost": store | trappable,
        default: trappable,
    );
}

/// Implement what every flavour shares for `$gen`: the error conversion of
/// `types`, the lock-mode conversions, and the empty interface traits.
macro_rules! shared_impls {
    ($gen:ident) => {
        impl $gen::portalocker::locks::types::Host for crate::ctx::LocksCtxView<'_> {
            fn convert_error(
                &mut self,
                err: crate::LockError,
            ) -> wasmtime::Result<$gen::portalocker::locks::types::Error> {
                use crate::ErrorCode;
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

        impl From<$gen::portalocker::locks::types::LockMode> for portalocker::LockMode {
            fn from(mode: $gen::portalocker::locks::types::LockMode) -> Self {
                use $gen::portalocker::locks::types::LockMode as M;
                match mode {
                    M::Exclusive => portalocker::LockMode::Exclusive,
                    M::Shared => portalocker::LockMode::Shared,
                }
            }
        }

        impl From<portalocker::LockMode> for $gen::portalocker::locks::types::LockMode {
            fn from(mode: portalocker::LockMode) -> Self {
                use $gen::portalocker::locks::types::LockMode as M;
                match mode {
                    portalocker::LockMode::Exclusive => M::Exclusive,
                    portalocker::LockMode::Shared => M::Shared,
                }
            }
        }

        impl $gen::portalocker::locks::file_lock::Host for crate::ctx::LocksCtxView<'_> {}
        impl $gen::portalocker::locks::semaphore::Host for crate::ctx::LocksCtxView<'_> {}
        impl $gen::portalocker::locks::redis_lock::Host for crate::ctx::LocksCtxView<'_> {}
    };
}

shared_impls!(sync_);
shared_impls!(async_);
shared_impls!(v0_2);
