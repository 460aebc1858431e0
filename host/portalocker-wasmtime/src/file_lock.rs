//! The `file-lock` interface: lock files named by guest paths, and their
//! guards.
//!
//! A `file-lock` handle keeps its resolved path and no descriptor: the file
//! is opened when it is locked. A released lock's descriptor is kept for the
//! next lock of the same handle while the instance's idle-descriptor budget
//! allows (then re-locking costs no open), with an identity re-check: a file
//! replaced meanwhile is locked anew. A kept descriptor's check is a
//! [`portalocker::NameWatch`]: one cheap system call while nothing touched
//! the file's names.

use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portalocker::{LockGuard, LockMode, NameWatch};
use wasmtime::component::Resource;

use crate::bindings::{async_, sync_, v0_2};
use crate::budget::{Budget, Charge, HANDLE_OVERHEAD, Kind};
use crate::ctx::LocksCtxView;
use crate::error::{LockError, trap};
use crate::loss::{FileLoss, Released};
use crate::sandbox::{self, FileKey, Resolved};

/// A descriptor kept between locks, charged to the idle-descriptor budget.
#[derive(Debug)]
struct SpareFile {
    file: File,
    taken: Taken,
    _charge: Charge,
}

/// What a lock remembers of its descriptor: the file's identity and the
/// watch that re-checks it.
#[derive(Debug, Default)]
struct Taken {
    key: FileKey,
    watch: NameWatch,
}

impl Taken {
    /// Whether `resolved` still names `file`. The watch sees only the
    /// file's own names, so a path through a directory (which could be
    /// renamed and replaced) is walked every time.
    fn still_named(&mut self, file: &File, resolved: &Resolved) -> io::Result<bool> {
        let key = self.key;
        if !resolved.is_single_name() {
            return resolved.names(key);
        }
        self.watch.still_named(file, || resolved.names(key))
    }
}

/// The descriptor a handle keeps between locks, if any.
type Spare = Arc<Mutex<Option<SpareFile>>>;

/// A lock file the guest named (`file-lock`).
#[doc(hidden)]
#[derive(Debug)]
pub struct FileLockHandle {
    resolved: Arc<Resolved>,
    spare: Spare,
    /// Whether exclusive acquisitions draw fencing tokens (0.2.0).
    fencing: bool,
    _charge: Charge,
}

/// A held file lock (`file-lock-guard`): dropping it releases the lock.
#[doc(hidden)]
#[derive(Debug)]
pub struct FileLockGuardHandle {
    guard: Option<LockGuard>,
    taken: Taken,
    spare: Spare,
    resolved: Arc<Resolved>,
    token: Option<u64>,
    released: Released,
    budget: Arc<Budget>,
    _charge: Charge,
}

/// A lock being taken: what the wait needs, owned, so that the wait runs
/// without the store and dropping it at any point leaves nothing (its
/// charge is refunded, its descriptor closed).
pub(crate) struct PreparedLock {
    resolved: Arc<Resolved>,
    spare: Spare,
    fencing: bool,
    charge: Charge,
}

/// A lock taken and not yet in the table.
pub(crate) struct AcquiredLock {
    guard: LockGuard,
    taken: Taken,
    token: Option<u64>,
    prepared: PreparedLock,
}

impl PreparedLock {
    /// Take the lock without blocking the executor (the core's async wait;
    /// cancel-safe) and draw its token when fenced (see [`Self::finish`]).
    pub(crate) async fn acquire(
        mut self,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<AcquiredLock, LockError> {
        let deadline = Deadline::new(timeout);
        loop {
            let taken = Mutex::default();
            let guard = portalocker::lock_opened_async(
                || take_or_open(&self.spare, &self.resolved, &taken),
                |file| relock(&taken).still_named(file, &self.resolved),
                &self.resolved.guest,
                mode,
                crate::ctx::waiting(deadline.left()),
            )
            .await
            .map_err(|e| LockError::from_core(&self.resolved.guest, e))?;
            match self.finish(guard, relock_into(taken))? {
                Ok(acquired) => return Ok(acquired),
                Err(again) => self = again,
            }
        }
    }

    /// Take the lock, blocking this thread, and draw its token when fenced.
    pub(crate) fn acquire_blocking(
        mut self,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<AcquiredLock, LockError> {
        let deadline = Deadline::new(timeout);
        loop {
            let taken = Mutex::default();
            let guard = portalocker::lock_opened(
                || take_or_open(&self.spare, &self.resolved, &taken),
                |file| relock(&taken).still_named(file, &self.resolved),
                &self.resolved.guest,
                mode,
                crate::ctx::waiting(deadline.left()),
            )
            .map_err(|e| LockError::from_core(&self.resolved.guest, e))?;
            match self.finish(guard, relock_into(taken))? {
                Ok(acquired) => return Ok(acquired),
                Err(again) => self = again,
            }
        }
    }

    /// For a fenced exclusive lock, draw the token: under the counter
    /// file's own lock, and only if the lock file still has its name (see
    /// [`portalocker::fence::advance_fence_if`]). If it was unlinked or
    /// replaced meanwhile, the lock is let go (`Err(self)`: take it again)
    /// and the counter is untouched.
    fn finish(
        self,
        guard: LockGuard,
        taken: Taken,
    ) -> Result<Result<AcquiredLock, Self>, LockError> {
        if !self.fencing || guard.lock_mode() == LockMode::Shared {
            return Ok(Ok(self.acquired(guard, taken, None)));
        }
        let drawn = self
            .resolved
            .open_fence_file()
            .and_then(|counter| {
                portalocker::fence::advance_fence_if(&counter, || self.resolved.names(taken.key))
            })
            .map_err(|e| LockError::from_io(&self.resolved.guest, e))?;
        match drawn {
            Some(token) => Ok(Ok(self.acquired(guard, taken, Some(token)))),
            None => Ok(Err(self)),
        }
    }

    fn acquired(self, guard: LockGuard, taken: Taken, token: Option<u64>) -> AcquiredLock {
        AcquiredLock {
            guard,
            taken,
            token,
            prepared: self,
        }
    }
}

/// A wait's deadline, kept across the retries of one acquisition.
struct Deadline(Option<std::time::Instant>);

impl Deadline {
    fn new(timeout: Option<Duration>) -> Self {
        Self(timeout.and_then(|t| std::time::Instant::now().checked_add(t)))
    }

    /// The time left (`None`: no limit).
    fn left(&self) -> Option<Duration> {
        self.0
            .map(|d| d.saturating_duration_since(std::time::Instant::now()))
    }
}

impl FileLockGuardHandle {
    /// Unlock, then keep the descriptor for the next lock if the budget
    /// allows (or close it).
    fn release_inner(&mut self) -> Result<(), portalocker::Error> {
        let Some(guard) = self.guard.take() else {
            return Ok(());
        };
        let file = guard.into_unlocked()?;
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.is_none()
            && let Ok(charge) = self.budget.charge(&[(Kind::IdleDescriptors, 1)])
        {
            *spare = Some(SpareFile {
                file,
                taken: std::mem::take(&mut self.taken),
                _charge: charge,
            });
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl FileLockGuardHandle {
    /// The held file's identity and mode, for the fuzzer's checks.
    pub(crate) fn held(&self) -> Option<(sandbox::FileKey, LockMode)> {
        self.guard
            .as_ref()
            .map(|guard| (sandbox::key_of(guard.file()), guard.lock_mode()))
    }
}

impl Drop for FileLockGuardHandle {
    fn drop(&mut self) {
        // The descriptor is closed (or kept) either way, which frees the lock.
        let _ = self.release_inner();
    }
}

impl LocksCtxView<'_> {
    pub(crate) fn open_file_lock(
        &mut self,
        path: String,
        fencing: bool,
    ) -> Result<Resource<FileLockHandle>, LockError> {
        let charge = self
            .ctx
            .budget
            .charge_handle(2 * path.len() + HANDLE_OVERHEAD)?;
        let resolved = sandbox::resolve(&self.ctx.grants, &path)?;
        Ok(self.table.push(FileLockHandle {
            resolved: Arc::new(resolved),
            spare: Spare::default(),
            fencing,
            _charge: charge,
        })?)
    }

    pub(crate) fn file_lock_path(
        &mut self,
        handle: &Resource<FileLockHandle>,
    ) -> Result<String, LockError> {
        Ok(self.table.get(handle)?.resolved.guest.clone())
    }

    /// Charge the hold (and its guard's handle) and find the handle's path
    /// and spare descriptor.
    pub(crate) fn prepare_lock(
        &mut self,
        handle: &Resource<FileLockHandle>,
    ) -> Result<PreparedLock, LockError> {
        let handle = self.table.get(handle)?;
        let (resolved, spare) = (Arc::clone(&handle.resolved), Arc::clone(&handle.spare));
        let fencing = handle.fencing;
        resolved.check_lock_file()?;
        let charge = self.ctx.budget.charge(&[
            (Kind::Held, 1),
            (Kind::Handles, 1),
            (Kind::Bytes, HANDLE_OVERHEAD),
        ])?;
        Ok(PreparedLock {
            resolved,
            spare,
            fencing,
            charge,
        })
    }

    /// Lock, blocking this thread up to `timeout` (`None`: no limit).
    pub(crate) fn lock_blocking(
        &mut self,
        handle: &Resource<FileLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let acquired = self.prepare_lock(handle)?.acquire_blocking(mode, timeout)?;
        self.push_guard(acquired)
    }

    /// Lock without blocking the executor: the core's async wait, which
    /// sleeps until a release in this process or a short, growing pause.
    async fn lock_waiting(
        &mut self,
        handle: &Resource<FileLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let acquired = self.prepare_lock(handle)?.acquire(mode, timeout).await?;
        self.push_guard(acquired)
    }

    /// Put a taken lock in the table. Call it in the same poll as the
    /// acquisition: nothing may cancel between the two.
    pub(crate) fn push_guard(
        &mut self,
        acquired: AcquiredLock,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let AcquiredLock {
            guard,
            taken,
            token,
            prepared,
        } = acquired;
        Ok(self.table.push(FileLockGuardHandle {
            guard: Some(guard),
            taken,
            spare: prepared.spare,
            resolved: prepared.resolved,
            token,
            released: Released::default(),
            budget: Arc::clone(&self.ctx.budget),
            _charge: prepared.charge,
        })?)
    }

    /// A watch of a held lock's loss, charged as a handle.
    pub(crate) fn file_loss(
        &mut self,
        guard: &Resource<FileLockGuardHandle>,
    ) -> Result<FileLoss, LockError> {
        let charge = self.ctx.budget.charge_handle(HANDLE_OVERHEAD)?;
        let handle = self.table.get_mut(guard)?;
        Ok(FileLoss {
            path: Arc::clone(&handle.resolved),
            key: handle.taken.key,
            released: handle.released.subscribe(),
            charge,
        })
    }

    /// A held lock's mode and fencing token.
    pub(crate) fn file_guard_info(
        &mut self,
        guard: &Resource<FileLockGuardHandle>,
    ) -> Result<(LockMode, Option<u64>), LockError> {
        let handle = self.table.get(guard)?;
        let mode = handle
            .guard
            .as_ref()
            .map_or(LockMode::Exclusive, LockGuard::lock_mode);
        Ok((mode, handle.token))
    }

    pub(crate) fn release_guard(
        &mut self,
        guard: Resource<FileLockGuardHandle>,
    ) -> Result<(), LockError> {
        let mut handle = self.table.delete(guard)?;
        handle
            .release_inner()
            .map_err(|e| LockError::from_core("lock", e))
    }
}

/// The handle's kept descriptor, or a fresh open of its path; its identity
/// and watch go to `taken`.
fn take_or_open(spare: &Spare, resolved: &Resolved, taken: &Mutex<Taken>) -> io::Result<File> {
    let kept = spare.lock().unwrap_or_else(|p| p.into_inner()).take();
    let (file, now) = match kept {
        Some(kept) => (kept.file, kept.taken),
        None => {
            let file = resolved.open_lock_file()?;
            let key = sandbox::key_of(&file);
            (
                file,
                Taken {
                    key,
                    watch: NameWatch::new(),
                },
            )
        }
    };
    *relock(taken) = now;
    Ok(file)
}

/// The descriptor state a lock attempt left.
fn relock_into(taken: Mutex<Taken>) -> Taken {
    taken.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// The lock's descriptor state (never poisoned in a way that matters: it is
/// plain data).
fn relock(taken: &Mutex<Taken>) -> std::sync::MutexGuard<'_, Taken> {
    taken.lock().unwrap_or_else(|p| p.into_inner())
}

/// The guard's calls, the same in every flavour (0.2.0 adds some: given).
macro_rules! guard_impl {
    ($gen:ident, $($more:tt)*) => {
        impl $gen::portalocker::locks::file_lock::HostFileLockGuard for LocksCtxView<'_> {
            fn mode(
                &mut self,
                self_: Resource<FileLockGuardHandle>,
            ) -> wasmtime::Result<$gen::portalocker::locks::types::LockMode> {
                let (mode, _) = self.file_guard_info(&self_).map_err(trap)?;
                Ok(mode.into())
            }

            fn release(&mut self, guard: Resource<FileLockGuardHandle>) -> Result<(), LockError> {
                self.release_guard(guard)
            }

            fn drop(&mut self, rep: Resource<FileLockGuardHandle>) -> wasmtime::Result<()> {
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
    fn fencing_token(
        &mut self,
        self_: Resource<FileLockGuardHandle>,
    ) -> wasmtime::Result<Option<u64>> {
        let (_, token) = self.file_guard_info(&self_).map_err(trap)?;
        Ok(token)
    }
}

/// `HostFileLock` for `$gen`: the calls that never wait are the same in
/// every flavour; `open` and the blocking flavours' waiting calls, `lock`
/// and `lock-for`, are given.
macro_rules! file_lock_impl {
    ($gen:ident, $($waiting:tt)*) => {
        impl $gen::portalocker::locks::file_lock::HostFileLock for LocksCtxView<'_> {
            fn try_lock(
                &mut self,
                self_: Resource<FileLockHandle>,
                mode: $gen::portalocker::locks::types::LockMode,
            ) -> Result<Resource<FileLockGuardHandle>, LockError> {
                self.lock_blocking(&self_, mode.into(), Some(Duration::ZERO))
            }

            fn path(&mut self, self_: Resource<FileLockHandle>) -> wasmtime::Result<String> {
                self.file_lock_path(&self_).map_err(trap)
            }

            fn drop(&mut self, rep: Resource<FileLockHandle>) -> wasmtime::Result<()> {
                self.table.delete(rep)?;
                Ok(())
            }

            $($waiting)*
        }
    };
}

file_lock_impl! {
    sync_,
    fn open(&mut self, path: String) -> Result<Resource<FileLockHandle>, LockError> {
        self.open_file_lock(path, false)
    }
    fn lock(
        &mut self,
        self_: Resource<FileLockHandle>,
        mode: sync_::portalocker::locks::types::LockMode,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.lock_blocking(&self_, mode.into(), timeout)
    }
    fn lock_for(
        &mut self,
        self_: Resource<FileLockHandle>,
        mode: sync_::portalocker::locks::types::LockMode,
        timeout: u64,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(Duration::from_nanos(timeout)))?;
        self.lock_blocking(&self_, mode.into(), timeout)
    }
}

file_lock_impl! {
    async_,
    fn open(&mut self, path: String) -> Result<Resource<FileLockHandle>, LockError> {
        self.open_file_lock(path, false)
    }
    async fn lock(
        &mut self,
        self_: Resource<FileLockHandle>,
        mode: async_::portalocker::locks::types::LockMode,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.lock_waiting(&self_, mode.into(), timeout).await
    }
    async fn lock_for(
        &mut self,
        self_: Resource<FileLockHandle>,
        mode: async_::portalocker::locks::types::LockMode,
        timeout: u64,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(Duration::from_nanos(timeout)))?;
        self.lock_waiting(&self_, mode.into(), timeout).await
    }
}

// In 0.2.0 `open` takes `fencing`, and the waiting calls are concurrent
// (below).
file_lock_impl! {
    v0_2,
    fn open(
        &mut self,
        path: String,
        fencing: bool,
    ) -> Result<Resource<FileLockHandle>, LockError> {
        self.open_file_lock(path, fencing)
    }
}

/// `portalocker:locks@0.2.0`'s concurrent calls: `lock` and `lock-for` (see
/// [`concurrent_lock`]), and the loss watch. The calls that never wait are
/// the macros' above.
mod concurrent {
    use std::time::Duration;

    use wasmtime::component::{Access, Accessor, FutureReader, Resource};

    use super::{FileLockGuardHandle, FileLockHandle};
    use crate::bindings::v0_2::portalocker::locks::file_lock as wit;
    use crate::bindings::v0_2::portalocker::locks::types::LockMode;
    use crate::ctx::Locks;
    use crate::error::LockError;

    impl<T: Send + 'static> wit::HostFileLockWithStore<T> for Locks {
        async fn lock(
            accessor: &Accessor<T, Self>,
            self_: Resource<FileLockHandle>,
            mode: LockMode,
        ) -> Result<Resource<FileLockGuardHandle>, LockError> {
            super::concurrent_lock(accessor, &self_, mode.into(), None).await
        }

        async fn lock_for(
            accessor: &Accessor<T, Self>,
            self_: Resource<FileLockHandle>,
            mode: LockMode,
            timeout: u64,
        ) -> Result<Resource<FileLockGuardHandle>, LockError> {
            let timeout = Duration::from_nanos(timeout);
            super::concurrent_lock(accessor, &self_, mode.into(), Some(timeout)).await
        }
    }

    impl<T: Send + 'static> wit::HostFileLockGuardWithStore<T> for Locks {
        fn lost(
            mut host: Access<'_, T, Self>,
            self_: Resource<FileLockGuardHandle>,
        ) -> Result<FutureReader<String>, LockError> {
            let watch = host.get().file_loss(&self_)?;
            FutureReader::new(&mut host, async move {
                Ok::<_, wasmtime::Error>(watch.lost().await)
            })
            .map_err(LockError::Trap)
        }
    }
}

/// Take a lock for a concurrent (0.2.0) call: prepare with the store, wait
/// without it, and put the guard in the table in the same poll as the
/// acquisition, so a cancellation either finds nothing taken (the dropped
/// wait refunds its charge and closes its descriptor) or finds the guard in
/// the table, where the guest's drop of the returned handle releases it.
async fn concurrent_lock<T: Send + 'static>(
    accessor: &wasmtime::component::Accessor<T, crate::ctx::Locks>,
    handle: &Resource<FileLockHandle>,
    mode: LockMode,
    timeout: Option<Duration>,
) -> Result<Resource<FileLockGuardHandle>, LockError> {
    let (prepared, timeout) = accessor.with(|mut access| {
        let mut view = access.get();
        let timeout = view.ctx.wait_limit(timeout)?;
        Ok::<_, LockError>((view.prepare_lock(handle)?, timeout))
    })?;
    let acquired = prepared.acquire(mode, timeout).await?;
    accessor.with(|mut access| access.get().push_guard(acquired))
}
