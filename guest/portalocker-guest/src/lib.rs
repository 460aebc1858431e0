//! portalocker for wasm plugins: real operating-system file locks and
//! semaphores, taken through the host's `portalocker:locks` imports.
//!
//! A plugin is an ordinary `fn main()` built for `wasm32-wasip2`. The locks
//! are the host's: they exclude other plugin instances, native programs and
//! Python programs using portalocker on the same files. Paths are the ones
//! the plugin sees through WASI: the host grants directories, and a lock
//! outside them is refused.
//!
//! ```no_run
//! use std::time::Duration;
//! use portalocker_guest::{FileLock, Semaphore};
//!
//! fn main() -> Result<(), portalocker_guest::Error> {
//!     // At most two plugins run a job at once...
//!     let runners = Semaphore::open("runners", 2, "/jobs")?;
//!     let _permit = runners.acquire_for(Duration::from_secs(30))?;
//!     // ...and one at a time writes the report.
//!     let report = FileLock::open("/jobs/report.lock")?;
//!     let _guard = report.lock()?;
//!     std::fs::write("/jobs/report.txt", "done\n").unwrap();
//!     Ok(())
//! } // guards dropped: the slot and the lock are released
//! ```
//!
//! With the `async` feature, [`aio`] is the same for
//! `portalocker:locks@0.2.0`: locks awaited by the tasks of an async
//! component, cancellable, with loss futures and fencing tokens.

#[cfg(feature = "async")]
pub mod aio;
mod error;
mod file;
mod redis;
mod semaphore;

/// The generated bindings. Not part of the API: use the wrappers.
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "wit",
        world: "portalocker:locks/plugin",
        generate_all,
    });
}

pub use error::{Error, Result};
pub use file::{FileLock, FileLockGuard, LockMode};
pub use redis::{RedisLock, RedisLockGuard};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use wit_bindgen;

fn nanos(timeout: std::time::Duration) -> u64 {
    u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)
}
