//! wasmtime host bindings for `portalocker:locks`: sandboxed wasm plugins
//! take real operating-system file locks and semaphores (the ones native
//! programs and Python's portalocker take), confined to the directories and
//! limits the embedder grants.
//!
//! ```no_run
//! use portalocker_wasmtime::{LocksCtx, LocksCtxView, LocksView};
//! use wasmtime::component::{Component, Linker, ResourceTable};
//! use wasmtime::{Engine, Store};
//! use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
//!
//! struct State {
//!     wasi: WasiCtx,
//!     locks: LocksCtx,
//!     table: ResourceTable,
//! }
//! impl WasiView for State {
//!     fn ctx(&mut self) -> WasiCtxView<'_> {
//!         WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
//!     }
//! }
//! impl LocksView for State {
//!     fn locks(&mut self) -> LocksCtxView<'_> {
//!         LocksCtxView { ctx: &mut self.locks, table: &mut self.table }
//!     }
//! }
//!
//! # fn main() -> wasmtime::Result<()> {
//! let engine = Engine::default();
//! let mut linker = Linker::<State>::new(&engine);
//! wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
//! portalocker_wasmtime::add_to_linker_sync(&mut linker)?;
//!
//! let state = State {
//!     // Grant the same directory to WASI and to the locks.
//!     wasi: WasiCtx::builder()
//!         .preopened_dir("/srv/jobs", "/jobs", wasmtime_wasi::FsPerms::ReadWrite)?
//!         .build(),
//!     locks: LocksCtx::builder().preopened_dir("/srv/jobs", "/jobs")?.build(),
//!     table: ResourceTable::new(),
//! };
//! let mut store = Store::new(&engine, state);
//! let component = Component::from_file(&engine, "plugin.wasm")?;
//! let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)?;
//! let _ = command.wasi_cli_run().call_run(&mut store)?;
//! // Dropping the store releases every lock the plugin still held.
//! # Ok(())
//! # }
//! ```
//!
//! # Sync and async
//!
//! [`add_to_linker_sync`] blocks the calling thread while a guest waits for
//! a lock (parked in the kernel). [`add_to_linker_async`] never blocks the
//! executor: a waiting guest's fiber sleeps (the native library's
//! `acquire_async` waits) until a release in this process wakes it, or polls
//! after a short pause (growing to 10 ms) for releases by other processes,
//! so many waiting instances need no thread each. It needs a tokio runtime,
//! as `wasmtime_wasi` does.
//!
//! # `portalocker:locks@0.2.0`
//!
//! [`add_to_linker_concurrent`] adds the async interface (`wit/v0.2`) for
//! components built for component-model async: its waiting calls are
//! `async func`s run concurrently (a component's tasks wait on different
//! locks at once; a waiting task holds no thread and no store borrow), its
//! guards report loss as a `future`, and exclusive file and Redis guards
//! can carry fencing tokens. It needs an engine with
//! `Config::concurrency_support` (the default with wasmtime's
//! `component-model-async` feature). Link it beside 0.1.0 and old and new
//! plugins take the same locks through one [`LocksCtx`]; since
//! concurrency makes every host call dearer, an embedder running only
//! 0.1.0 plugins turns it off, as `portalocker run` does for them. A 0.2.0
//! plugin exports WASI 0.3's async `wasi:cli/run@0.3.0`; call it with
//! `TypedFunc::call_async` or inside `Store::run_concurrent`.
//!
//! # The sandbox
//!
//! Guest paths resolve through the grants of [`LocksCtxBuilder::preopened_dir`]
//! exactly as the plugin's own file calls resolve them (the same grant
//! matching as wasi-libc, `..` and symlinks followed through the grant's
//! directory, never lexically), so a path names the same file to the lock and
//! to `wasi:filesystem`. A path outside the grants, or leading out of them
//! through `..` or a symlink, is refused (`access-denied`), as is a lock file
//! that is a symlink, a FIFO, a device or anything but a regular file (opened
//! without blocking); malformed paths and names are `invalid-argument`.
//!
//! # Budgets
//!
//! A plugin is a tenant: every handle, held lock, kept descriptor, Redis
//! connection and byte of name or path it makes the host hold is counted
//! against its [`Limits`] (set on the builder, with safe defaults), and past a
//! limit it gets `limit-exceeded`. Opening a lock or a semaphore pins no
//! descriptor; only held locks do, plus a few kept between locks. Instances
//! granted the same Redis server share one connection pool, and each Redis
//! lock being taken or held uses one connection of it. Running out of
//! descriptors is an error value too, never a panic.
//!
//! Everything a plugin holds lives in its store's resource table, so it is
//! released when the store is dropped, whatever ended the plugin. A wait
//! that is cancelled (an async call dropped by a timeout, a trap, a dropped
//! store) leaves nothing behind. A bad handle traps; bad input is an error
//! value.

mod bindings;
mod budget;
mod ctx;
mod error;
mod file_lock;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod loss;
mod redis_lock;
mod sandbox;
mod semaphore;

pub use budget::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_HANDLES, DEFAULT_MAX_HELD, DEFAULT_MAX_IDLE_DESCRIPTORS,
    DEFAULT_MAX_REDIS_CONNECTIONS, Limits, Usage,
};
pub use ctx::{Locks, LocksCtx, LocksCtxBuilder, LocksCtxView, LocksView};
pub use error::{ErrorCode, LockError};
#[doc(hidden)]
pub use file_lock::{FileLockGuardHandle, FileLockHandle};
#[doc(hidden)]
pub use redis_lock::{MAX_REDIS_NAME_LEN, RedisGuardHandle, RedisLockHandle};
pub use sandbox::MAX_PATH_LEN;
#[doc(hidden)]
pub use semaphore::{PermitHandle, SemaphoreHandle};

use wasmtime::component::Linker;

/// Add `portalocker:locks` to a linker whose guests are called
/// synchronously. A guest waiting for a lock blocks the calling thread.
///
/// # Errors
///
/// When the interfaces are already defined in `linker`.
pub fn add_to_linker_sync<T: LocksView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::sync_::Plugin::add_to_linker::<T, Locks>(linker, |t| t.locks())
}

/// Add `portalocker:locks` to a linker whose guests are called with
/// `call_async`. Waiting never blocks the executor (see the crate docs).
///
/// # Errors
///
/// When the interfaces are already defined in `linker`.
pub fn add_to_linker_async<T: LocksView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::async_::Plugin::add_to_linker::<T, Locks>(linker, |t| t.locks())
}

/// Add `portalocker:locks@0.2.0` to a linker whose engine has component-model
/// concurrency (wasmtime's default with the `component-model-async`
/// feature), beside 0.1.0 from [`add_to_linker_sync`] or
/// [`add_to_linker_async`] if old plugins run too: both versions take the
/// same locks through one [`LocksCtx`].
///
/// Its `async func`s run concurrently: a component's tasks wait on
/// different locks at once, each woken on its own, and a waiting task holds
/// no thread and no store borrow. Call the plugin's async `run` export with
/// `Store::run_concurrent` (or `call_async`). A cancelled call (the guest
/// dropped its future, the store was dropped) is dropped by wasmtime and
/// leaves nothing behind.
///
/// # Errors
///
/// When the interfaces are already defined in `linker`.
pub fn add_to_linker_concurrent<T: LocksView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    bindings::v0_2::Plugin::add_to_linker::<T, Locks>(linker, |t| t.locks())
}
