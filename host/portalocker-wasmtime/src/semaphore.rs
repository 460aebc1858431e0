//! The `semaphore` interface: portalocker's named bounded semaphores, whose
//! slots are lock files in a granted directory, and their permits.
//!
//! A `semaphore` handle keeps its resolved directory and no descriptor: each
//! sweep opens the slot files through the grant, so a plugin opening
//! semaphores in a loop pins nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portalocker::{BoundedSemaphore, SemaphorePermit};
use wasmtime::component::Resource;

use crate::bindings::{async_, sync_, v0_2};
use crate::budget::{Charge, HANDLE_OVERHEAD, Kind};
use crate::ctx::LocksCtxView;
use crate::ctx::waiting;
use crate::error::{LockError, trap};
use crate::loss::{FileLoss, Released};
use crate::sandbox::{self, Resolved};

/// A semaphore the guest named (`semaphore`).
#[doc(hidden)]
#[derive(Debug)]
pub struct SemaphoreHandle {
    semaphore: BoundedSemaphore,
    dir: Resolved,
    _charge: Charge,
}

/// A held slot (`semaphore-permit`): dropping it frees the slot.
#[doc(hidden)]
#[derive(Debug)]
pub struct PermitHandle {
    permit: Option<SemaphorePermit>,
    slot: u32,
    /// The slot file, for loss watches.
    path: Arc<Resolved>,
    released: Released,
    _charge: Charge,
}

/// A slot being taken: what the wait needs, owned, so that it runs without
/// the store and dropping it at any point leaves nothing (its charge is
/// refunded, its descriptors closed).
pub(crate) struct PreparedPermit {
    semaphore: BoundedSemaphore,
    dir: Resolved,
    charge: Charge,
}

/// A slot taken and not yet in the table.
pub(crate) struct AcquiredPermit {
    permit: SemaphorePermit,
    prepared: PreparedPermit,
}

impl PreparedPermit {
    /// Take a slot without blocking the executor (cancel-safe).
    pub(crate) async fn acquire(
        self,
        timeout: Option<Duration>,
    ) -> Result<AcquiredPermit, LockError> {
        let permit = self
            .semaphore
            .acquire_with_opener_async(waiting(timeout), &|name| self.dir.open_lock_file_in(name))
            .await
            .map_err(|e| slot_error(&self.dir, e))?;
        Ok(AcquiredPermit {
            permit,
            prepared: self,
        })
    }

    /// Take a slot, blocking this thread.
    fn acquire_blocking(self, timeout: Option<Duration>) -> Result<AcquiredPermit, LockError> {
        let permit = self
            .semaphore
            .acquire_with_opener(waiting(timeout), &|name| self.dir.open_lock_file_in(name))
            .map_err(|e| slot_error(&self.dir, e))?;
        Ok(AcquiredPermit {
            permit,
            prepared: self,
        })
    }
}

impl PermitHandle {
    /// Free the slot now, reporting failures.
    fn release(&mut self) -> Result<(), portalocker::Error> {
        self.permit.take().map_or(Ok(()), SemaphorePermit::release)
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl PermitHandle {
    /// The held slot file's identity, for the fuzzer's checks.
    pub(crate) fn held(&self) -> Option<sandbox::FileKey> {
        self.permit
            .as_ref()
            .map(|permit| sandbox::key_of(permit.file()))
    }
}

impl Drop for PermitHandle {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// A core error about one of the slots of the semaphore in `dir`, told
/// with the slot's guest path.
fn slot_error(dir: &Resolved, error: portalocker::Error) -> LockError {
    let slot = error
        .path()
        .and_then(Path::file_name)
        .map(|name| dir.child(&name.to_string_lossy()).guest);
    LockError::from_core(slot.as_deref().unwrap_or(&dir.guest), error)
}

impl LocksCtxView<'_> {
    pub(crate) fn open_semaphore(
        &mut self,
        name: String,
        slots: u32,
        directory: String,
    ) -> Result<Resource<SemaphoreHandle>, LockError> {
        let charge = self
            .ctx
            .budget
            .charge_handle(2 * (name.len() + directory.len()) + HANDLE_OVERHEAD)?;
        let slots = usize::try_from(slots).map_err(|_| LockError::invalid("too many slots"))?;
        let semaphore = BoundedSemaphore::new(slots, &name)
            .map_err(|e| LockError::from_core(&name, e))?
            .directory(Path::new("/").join(directory.trim_start_matches('/')));
        let dir = sandbox::resolve(&self.ctx.grants, &directory)?;
        dir.check_dir()?;
        Ok(self.table.push(SemaphoreHandle {
            semaphore,
            dir,
            _charge: charge,
        })?)
    }

    pub(crate) fn semaphore_slots(
        &mut self,
        handle: &Resource<SemaphoreHandle>,
    ) -> Result<u32, LockError> {
        let slots = self.table.get(handle)?.semaphore.maximum();
        Ok(u32::try_from(slots).unwrap_or(u32::MAX))
    }

    /// Charge a permit (a hold and its handle) and copy what the wait
    /// needs.
    pub(crate) fn prepare_permit(
        &mut self,
        handle: &Resource<SemaphoreHandle>,
    ) -> Result<PreparedPermit, LockError> {
        let sem = self.table.get(handle)?;
        let (semaphore, dir) = (sem.semaphore.clone(), sem.dir.clone());
        let charge = self.ctx.budget.charge(&[
            (Kind::Held, 1),
            (Kind::Handles, 1),
            (Kind::Bytes, HANDLE_OVERHEAD),
        ])?;
        Ok(PreparedPermit {
            semaphore,
            dir,
            charge,
        })
    }

    /// Take a slot, blocking this thread up to `timeout`.
    pub(crate) fn acquire_blocking(
        &mut self,
        handle: &Resource<SemaphoreHandle>,
        timeout: Option<Duration>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let acquired = self.prepare_permit(handle)?.acquire_blocking(timeout)?;
        self.push_permit(acquired)
    }

    /// Take a slot without blocking the executor.
    async fn acquire_waiting(
        &mut self,
        handle: &Resource<SemaphoreHandle>,
        timeout: Option<Duration>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let acquired = self.prepare_permit(handle)?.acquire(timeout).await?;
        self.push_permit(acquired)
    }

    /// Put a taken slot in the table. Call it in the same poll as the
    /// acquisition: nothing may cancel between the two.
    pub(crate) fn push_permit(
        &mut self,
        acquired: AcquiredPermit,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let AcquiredPermit { permit, prepared } = acquired;
        let slot = u32::try_from(permit.slot()).unwrap_or(u32::MAX);
        let name = permit
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(self.table.push(PermitHandle {
            permit: Some(permit),
            slot,
            path: Arc::new(prepared.dir.child(&name)),
            released: Released::default(),
            _charge: prepared.charge,
        })?)
    }

    /// A watch of a held slot's loss, charged as a handle.
    pub(crate) fn permit_loss(
        &mut self,
        permit: &Resource<PermitHandle>,
    ) -> Result<FileLoss, LockError> {
        let charge = self.ctx.budget.charge_handle(HANDLE_OVERHEAD)?;
        let handle = self.table.get_mut(permit)?;
        let key = handle
            .permit
            .as_ref()
            .map(|permit| sandbox::key_of(permit.file()))
            .unwrap_or_default();
        Ok(FileLoss {
            path: Arc::clone(&handle.path),
            key,
            released: handle.released.subscribe(),
            charge,
        })
    }

    /// The slot a permit holds.
    pub(crate) fn permit_slot(
        &mut self,
        permit: &Resource<PermitHandle>,
    ) -> Result<u32, LockError> {
        Ok(self.table.get(permit)?.slot)
    }

    pub(crate) fn release_permit(
        &mut self,
        permit: Resource<PermitHandle>,
    ) -> Result<(), LockError> {
        let mut handle = self.table.delete(permit)?;
        handle
            .release()
            .map_err(|e| LockError::from_core("permit", e))
    }
}

/// The permit's calls, the same in every flavour.
macro_rules! permit_impl {
    ($gen:ident) => {
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

permit_impl!(sync_);
permit_impl!(async_);
permit_impl!(v0_2);

/// `HostSemaphore` for `$gen`: the calls that never wait are the same in
/// every flavour; the 0.1.0 flavours' waiting calls, `acquire` and
/// `acquire-for`, are given.
macro_rules! semaphore_impl {
    ($gen:ident, $($waiting:tt)*) => {
        impl $gen::portalocker::locks::semaphore::HostSemaphore for LocksCtxView<'_> {
            fn open(
                &mut self,
                name: String,
                slots: u32,
                directory: String,
            ) -> Result<Resource<SemaphoreHandle>, LockError> {
                self.open_semaphore(name, slots, directory)
            }

            fn try_acquire(
                &mut self,
                self_: Resource<SemaphoreHandle>,
            ) -> Result<Resource<PermitHandle>, LockError> {
                self.acquire_blocking(&self_, Some(Duration::ZERO))
            }

            fn slots(&mut self, self_: Resource<SemaphoreHandle>) -> wasmtime::Result<u32> {
                self.semaphore_slots(&self_).map_err(trap)
            }

            fn drop(&mut self, rep: Resource<SemaphoreHandle>) -> wasmtime::Result<()> {
                self.table.delete(rep)?;
                Ok(())
            }

            $($waiting)*
        }
    };
}

semaphore_impl! {
    sync_,
    fn acquire(
        &mut self,
        self_: Resource<SemaphoreHandle>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.acquire_blocking(&self_, timeout)
    }
    fn acquire_for(
        &mut self,
        self_: Resource<SemaphoreHandle>,
        timeout: u64,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(Duration::from_nanos(timeout)))?;
        self.acquire_blocking(&self_, timeout)
    }
}

semaphore_impl! {
    async_,
    async fn acquire(
        &mut self,
        self_: Resource<SemaphoreHandle>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let timeout = self.ctx.wait_limit(None)?;
        self.acquire_waiting(&self_, timeout).await
    }
    async fn acquire_for(
        &mut self,
        self_: Resource<SemaphoreHandle>,
        timeout: u64,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let timeout = self.ctx.wait_limit(Some(Duration::from_nanos(timeout)))?;
        self.acquire_waiting(&self_, timeout).await
    }
}

// In 0.2.0 the waiting calls are concurrent (below).
semaphore_impl!(v0_2,);

/// `portalocker:locks@0.2.0`'s concurrent calls: `acquire` and
/// `acquire-for` (see [`concurrent_acquire`]), and the loss watch. The
/// calls that never wait are the macros' above.
mod concurrent {
    use std::time::Duration;

    use wasmtime::component::{Access, Accessor, FutureReader, Resource};

    use super::{PermitHandle, SemaphoreHandle};
    use crate::bindings::v0_2::portalocker::locks::semaphore as wit;
    use crate::ctx::Locks;
    use crate::error::LockError;

    impl<T: Send + 'static> wit::HostSemaphoreWithStore<T> for Locks {
        async fn acquire(
            accessor: &Accessor<T, Self>,
            self_: Resource<SemaphoreHandle>,
        ) -> Result<Resource<PermitHandle>, LockError> {
            super::concurrent_acquire(accessor, &self_, None).await
        }

        async fn acquire_for(
            accessor: &Accessor<T, Self>,
            self_: Resource<SemaphoreHandle>,
            timeout: u64,
        ) -> Result<Resource<PermitHandle>, LockError> {
            let timeout = Some(Duration::from_nanos(timeout));
            super::concurrent_acquire(accessor, &self_, timeout).await
        }
    }

    impl<T: Send + 'static> wit::HostSemaphorePermitWithStore<T> for Locks {
        fn lost(
            mut host: Access<'_, T, Self>,
            self_: Resource<PermitHandle>,
        ) -> Result<FutureReader<String>, LockError> {
            let watch = host.get().permit_loss(&self_)?;
            FutureReader::new(&mut host, async move {
                Ok::<_, wasmtime::Error>(watch.lost().await)
            })
            .map_err(LockError::Trap)
        }
    }
}

/// Take a slot for a concurrent (0.2.0) call: prepare with the store, wait
/// without it, and put the permit in the table in the same poll as the
/// acquisition (see `file_lock::concurrent_lock`).
async fn concurrent_acquire<T: Send + 'static>(
    accessor: &wasmtime::component::Accessor<T, crate::ctx::Locks>,
    handle: &Resource<SemaphoreHandle>,
    timeout: Option<Duration>,
) -> Result<Resource<PermitHandle>, LockError> {
    let (prepared, timeout) = accessor.with(|mut access| {
        let mut view = access.get();
        let timeout = view.ctx.wait_limit(timeout)?;
        Ok::<_, LockError>((view.prepare_permit(handle)?, timeout))
    })?;
    let acquired = prepared.acquire(timeout).await?;
    accessor.with(|mut access| access.get().push_permit(acquired))
}
