//! The generated bindings, sync and async, kept private: no generated type
//! appears in this crate's API.

/// Every import is synchronous: blocking calls block the calling thread.
pub(crate) mod sync_ {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "portalocker:locks/plugin",
        imports: { default: trappable },
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
}

/// Only the calls that can wait are async; they never block the executor.
pub(crate) mod async_ {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "portalocker:locks/plugin",
        imports: {
            "portalocker:locks/file-lock.[method]file-lock.lock": async | trappable,
            "portalocker:locks/file-lock.[method]file-lock.lock-for": async | trappable,
            "portalocker:locks/semaphore.[method]semaphore.acquire": async | trappable,
            "portalocker:locks/semaphore.[method]semaphore.acquire-for": async | trappable,
            "portalocker:locks/redis-lock.[method]redis-lock.lock": async | trappable,
            "portalocker:locks/redis-lock.[method]redis-lock.try-lock": async | trappable,
            "portalocker:locks/redis-lock.[method]redis-lock.lock-for": async | trappable,
            default: trappable,
        },
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
}
