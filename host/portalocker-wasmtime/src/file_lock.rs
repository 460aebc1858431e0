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

use crate::bindings::{async_, sync_};
use crate::budget::{Budget, Charge, HANDLE_OVERHEAD, Kind};
use crate::ctx::LocksCtxView;
use crate::error::{LockError, trap};
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
    /// Whether `resolved` still names `file`.
    fn still_named(&mut self, file: &File, resolved: &Resolved) -> io::Result<bool> {
        let key = self.key;
        self.watch.still_named(file, || Ok(resolved.names(key)))
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
    _charge: Charge,
}

/// A held file lock (`file-lock-guard`): dropping it releases the lock.
#[doc(hidden)]
#[derive(Debug)]
pub struct FileLockGuardHandle {
    guard: Option<LockGuard>,
    taken: Taken,
    spare: Spare,
    budget: Arc<Budget>,
    _charge: Charge,
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
    fn open_file_lock(&mut self, path: String) -> Result<Resource<FileLockHandle>, LockError> {
        let charge = self
            .ctx
            .budget
            .charge_handle(2 * path.len() + HANDLE_OVERHEAD)?;
        let resolved = sandbox::resolve(&self.ctx.grants, &path)?;
        Ok(self.table.push(FileLockHandle {
            resolved: Arc::new(resolved),
            spare: Spare::default(),
            _charge: charge,
        })?)
    }

    fn file_lock_path(&mut self, handle: &Resource<FileLockHandle>) -> Result<String, LockError> {
        Ok(self.table.get(handle)?.resolved.guest.clone())
    }

    /// Charge the hold (and its guard's handle) and find the handle's path
    /// and spare descriptor.
    fn prepare_lock(
        &mut self,
        handle: &Resource<FileLockHandle>,
    ) -> Result<(Arc<Resolved>, Spare, Charge), LockError> {
        let handle = self.table.get(handle)?;
        let (resolved, spare) = (Arc::clone(&handle.resolved), Arc::clone(&handle.spare));
        resolved.check_lock_file()?;
        let charge = self.ctx.budget.charge(&[
            (Kind::Held, 1),
            (Kind::Handles, 1),
            (Kind::Bytes, HANDLE_OVERHEAD),
        ])?;
        Ok((resolved, spare, charge))
    }

    /// Lock, blocking this thread up to `timeout` (`None`: no limit).
    fn lock_blocking(
        &mut self,
        handle: &Resource<FileLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let (resolved, spare, charge) = self.prepare_lock(handle)?;
        let taken = Mutex::default();
        let guard = portalocker::lock_opened(
            || take_or_open(&spare, &resolved, &taken),
            |file| relock(&taken).still_named(file, &resolved),
            &resolved.guest,
            mode,
            crate::ctx::waiting(timeout),
        )
        .map_err(|e| LockError::from_core(&resolved.guest, e))?;
        self.push_guard(
            guard,
            taken.into_inner().unwrap_or_else(|p| p.into_inner()),
            spare,
            charge,
        )
    }

    /// Lock without blocking the executor: the core's async wait, which
    /// sleeps until a release in this process or a short, growing pause.
    async fn lock_waiting(
        &mut self,
        handle: &Resource<FileLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let (resolved, spare, charge) = self.prepare_lock(handle)?;
        let taken = Mutex::default();
        let guard = portalocker::lock_opened_async(
            || take_or_open(&spare, &resolved, &taken),
            |file| relock(&taken).still_named(file, &resolved),
            &resolved.guest,
            mode,
            crate::ctx::waiting(timeout),
        )
        .await
        .map_err(|e| LockError::from_core(&resolved.guest, e))?;
        self.push_guard(
            guard,
            taken.into_inner().unwrap_or_else(|p| p.into_inner()),
            spare,
            charge,
        )
    }

    fn push_guard(
        &mut self,
        guard: LockGuard,
        taken: Taken,
        spare: Spare,
        charge: Charge,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        Ok(self.table.push(FileLockGuardHandle {
            guard: Some(guard),
            taken,
            spare,
            budget: Arc::clone(&self.ctx.budget),
            _charge: charge,
        })?)
    }

    fn release_guard(&mut self, guard: Resource<FileLockGuardHandle>) -> Result<(), LockError> {
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

/// The lock's descriptor state (never poisoned in a way that matters: it is
/// plain data).
fn relock(taken: &Mutex<Taken>) -> std::sync::MutexGuard<'_, Taken> {
    taken.lock().unwrap_or_else(|p| p.into_inner())
}

/// The guard's calls, the same in both flavours.
macro_rules! guard_impl {
    ($gen:ident) => {
        impl $gen::portalocker::locks::file_lock::HostFileLockGuard for LocksCtxView<'_> {
            fn mode(
                &mut self,
                self_: Resource<FileLockGuardHandle>,
            ) -> wasmtime::Result<$gen::portalocker::locks::types::LockMode> {
                let handle = self
                    .table
                    .get(&self_)
                    .map_err(LockError::from)
                    .map_err(trap)?;
                let mode = handle
                    .guard
                    .as_ref()
                    .map_or(LockMode::Exclusive, LockGuard::lock_mode);
                Ok(mode.into())
            }

            fn release(&mut self, guard: Resource<FileLockGuardHandle>) -> Result<(), LockError> {
                self.release_guard(guard)
            }

            fn drop(&mut self, rep: Resource<FileLockGuardHandle>) -> wasmtime::Result<()> {
                self.table.delete(rep)?;
                Ok(())
            }
        }
    };
}

guard_impl!(sync_);
guard_impl!(async_);

/// `HostFileLock` for `$gen`: the calls that never wait are the same in
/// both flavours; the waiting ones, `lock` and `lock-for`, are given.
macro_rules! file_lock_impl {
    ($gen:ident, $($waiting:tt)*) => {
        impl $gen::portalocker::locks::file_lock::HostFileLock for LocksCtxView<'_> {
            fn open(&mut self, path: String) -> Result<Resource<FileLockHandle>, LockError> {
                self.open_file_lock(path)
            }

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
