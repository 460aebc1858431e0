//! The async side, for `portalocker:locks@0.2.0` (feature `async`): locks a
//! component awaits while its other tasks run.
//!
//! A 0.2.0 plugin is a `cdylib` built for `wasm32-wasip2` whose entry point
//! is an `async fn`, exported as WASI 0.3's `wasi:cli/run` with [`run!`](crate::run!). A
//! waiting call ([`FileLock::lock`], [`Semaphore::acquire`],
//! [`RedisLock::lock`] and their `_for` forms) is a future: the host waits
//! for the lock without holding a thread, the component's other tasks run
//! meanwhile, and dropping the future (a timeout in a `select!`, a task
//! dropped) cancels the wait and leaves nothing held. Guards release on
//! drop, and every guard's `lost()` is a future that resolves when its
//! ownership is revoked.
//!
//! ```no_run
//! use std::time::Duration;
//! use portalocker_guest::aio::{self, FileLock, LockMode};
//!
//! async fn main() -> Result<(), aio::Error> {
//!     let journal = FileLock::open("/jobs/journal.lock", true)?;
//!     // Two tasks in one component: one holds the lock...
//!     let holder = aio::spawn(async move {
//!         let guard = journal.lock().await?;
//!         println!("writing as token {:?}", guard.fencing_token());
//!         Ok::<_, aio::Error>(())
//!     });
//!     // ...and one waits for it, at most five seconds.
//!     let other = FileLock::open("/jobs/journal.lock", true)?;
//!     let guard = other.lock_for(Duration::from_secs(5)).await?;
//!     holder.await.expect("the task ran")?;
//!     drop(guard);
//!     Ok(())
//! }
//!
//! portalocker_guest::run!(main);
//! ```
//!
//! Locks taken here and through the 0.1.0 side, by native programs or by
//! Python's portalocker are the same locks.

mod error;
mod file;
mod redis;
mod semaphore;

/// The generated bindings of `portalocker:locks@0.2.0` and the export of
/// `wasi:cli/run@0.3.0`. Not part of the API: use the wrappers and
/// [`run!`](crate::run!).
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "wit/v0.2",
        world: "portalocker:locks/command",
        pub_export_macro: true,
        export_macro_name: "__export_command",
        default_bindings_module: "portalocker_guest::aio::wit",
        generate_all,
    });
}

pub use error::{Error, Result};
pub use file::{FileLock, FileLockGuard, LockMode};
pub use redis::{RedisLock, RedisLockGuard};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use wit_bindgen::JoinHandle;

/// Run `future` as a task of this component, beside the one that spawned
/// it; the handle is a future of its output (`None` if the task was
/// cancelled).
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> JoinHandle<T> {
    wit_bindgen::spawn_local(future)
}

/// Let the component's other tasks (and the host) run before going on.
pub async fn yield_now() {
    wit_bindgen::yield_async().await;
}

/// The exit status of `run`: an error is printed to stderr and fails the
/// run (status 1).
#[doc(hidden)]
#[expect(
    clippy::result_unit_err,
    reason = "the result of wasi:cli/run has no error payload"
)]
pub fn report<E: std::fmt::Display>(
    outcome: std::result::Result<(), E>,
) -> std::result::Result<(), ()> {
    outcome.map_err(|error| eprintln!("error: {error}"))
}

/// Export `main`, an `async fn() -> Result<(), E>` with `E: Display`, as the
/// plugin's entry point (`wasi:cli/run@0.3.0`). An `Err` is printed to
/// stderr and the plugin exits with status 1.
#[macro_export]
macro_rules! run {
    ($main:path) => {
        struct __PortalockerRun;

        impl $crate::aio::wit::exports::wasi::cli::run::Guest for __PortalockerRun {
            async fn run() -> ::core::result::Result<(), ()> {
                $crate::aio::report($main().await)
            }
        }

        $crate::aio::wit::__export_command!(__PortalockerRun with_types_in $crate::aio::wit);
    };
}
