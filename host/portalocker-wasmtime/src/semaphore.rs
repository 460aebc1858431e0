//! The `semaphore` interface: portalocker's named bounded semaphores, whose
//! slots are lock files in a granted directory, and their permits.
//!
//! A `semaphore` handle keeps its resolved directory and no descriptor: each
//! sweep opens the slot files through the grant, so a plugin opening
//! semaphores in a loop pins nothing.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use portalocker::{BoundedSemaphore, SemaphorePermit};
use wasmtime::component::Resource;

use crate::bindings::{async_, sync_};
use crate::budget::{Charge, HANDLE_OVERHEAD, Kind};
use crate::ctx::LocksCtxView;
use crate::ctx::waiting;
use crate::error::{LockError, trap};
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
    _charge: Charge,
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

impl SemaphoreHandle {
    /// The guest path of slot file `name`, for messages.
    fn slot_path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir.guest.trim_end_matches('/'))
    }

    /// Open slot file `name` through the grant.
    fn open_slot(&self, name: &str) -> std::io::Result<File> {
        self.dir.open_lock_file_in(name)
    }

    /// A core error about one of the slots, told with the slot's guest path.
    fn error(&self, error: portalocker::Error) -> LockError {
        let slot = error
            .path()
            .and_then(Path::file_name)
            .map(|name| self.slot_path(&name.to_string_lossy()));
        LockError::from_core(slot.as_deref().unwrap_or(&self.dir.guest), error)
    }
}

impl LocksCtxView<'_> {
    fn open_semaphore(
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

    fn semaphore_slots(&mut self, handle: &Resource<SemaphoreHandle>) -> Result<u32, LockError> {
        let slots = self.table.get(handle)?.semaphore.maximum();
        Ok(u32::try_from(slots).unwrap_or(u32::MAX))
    }

    /// Charge a permit: a hold and its handle.
    fn charge_permit(&self) -> Result<Charge, LockError> {
        self.ctx.budget.charge(&[
            (Kind::Held, 1),
            (Kind::Handles, 1),
            (Kind::Bytes, HANDLE_OVERHEAD),
        ])
    }

    /// Take a slot, blocking this thread up to `timeout`.
    fn acquire_blocking(
        &mut self,
        handle: &Resource<SemaphoreHandle>,
        timeout: Option<Duration>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let charge = self.charge_permit()?;
        let sem = self.table.get(handle)?;
        let permit = sem
            .semaphore
            .acquire_with_opener(waiting(timeout), &|name| sem.open_slot(name))
            .map_err(|e| sem.error(e))?;
        self.push_permit(permit, charge)
    }

    /// Take a slot without blocking the executor.
    async fn acquire_waiting(
        &mut self,
        handle: &Resource<SemaphoreHandle>,
        timeout: Option<Duration>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let charge = self.charge_permit()?;
        let sem = self.table.get(handle)?;
        let permit = sem
            .semaphore
            .acquire_with_opener_async(waiting(timeout), &|name| sem.open_slot(name))
            .await
            .map_err(|e| sem.error(e))?;
        self.push_permit(permit, charge)
    }

    fn push_permit(
        &mut self,
        permit: SemaphorePermit,
        charge: Charge,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let slot = u32::try_from(permit.slot()).unwrap_or(u32::MAX);
        Ok(self.table.push(PermitHandle {
            permit: Some(permit),
            slot,
            _charge: charge,
        })?)
    }

    fn release_permit(&mut self, permit: Resource<PermitHandle>) -> Result<(), LockError> {
        let mut handle = self.table.delete(permit)?;
        handle
            .release()
            .map_err(|e| LockError::from_core("permit", e))
    }
}

/// The permit's calls, the same in both flavours.
macro_rules! permit_impl {
    ($gen:ident) => {
        impl $gen::portalocker::locks::semaphore::HostSemaphorePermit for LocksCtxView<'_> {
            fn slot(&mut self, self_: Resource<PermitHandle>) -> wasmtime::Result<u32> {
                Ok(self
                    .table
                    .get(&self_)
                    .map_err(LockError::from)
                    .map_err(trap)?
                    .slot)
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

/// `HostSemaphore` for `$gen`: the calls that never wait are the same in
/// both flavours; the waiting ones, `acquire` and `acquire-for`, are given.
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
