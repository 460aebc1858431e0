//! `semaphore` passed through.

use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use crate::bindings::exports::portalocker::locks::semaphore as ex;
use crate::bindings::portalocker::locks::semaphore as next;
use crate::file::nanos;
use crate::{Error, Grant, Hold, Hooks, Kind, LockMode, Request, Target, Wait};

/// An exported `semaphore`: the next component's, opened as the hooks said.
pub struct SemaphoreOf<H: Hooks> {
    inner: next::Semaphore,
    lock: Rc<Target>,
    hooks: PhantomData<H>,
}

/// An exported `semaphore-permit`.
pub struct SemaphorePermitOf<H: Hooks>(Hold<H, next::SemaphorePermit>);

impl<H: Hooks> SemaphoreOf<H> {
    fn take(&self, wait: Wait) -> Result<ex::SemaphorePermit, Error> {
        let call = || match wait {
            Wait::Forever => self.inner.acquire(),
            Wait::Never => self.inner.try_acquire(),
            Wait::For(timeout) => self.inner.acquire_for(nanos(timeout)),
        };
        let grant = |permit: &next::SemaphorePermit| Grant {
            mode: LockMode::Exclusive,
            // Asking the slot is a call: only for hooks that read it.
            slot: H::SLOTS.then(|| permit.slot()),
            fencing_token: None,
        };
        let request = Request {
            mode: LockMode::Exclusive,
            wait,
        };
        let hold = crate::acquire::<H, _>(&self.lock, request, call, grant)?;
        Ok(ex::SemaphorePermit::new(SemaphorePermitOf(hold)))
    }
}

impl<H: Hooks> ex::GuestSemaphore for SemaphoreOf<H> {
    fn open(name: String, slots: u32, directory: String) -> Result<ex::Semaphore, Error> {
        let mut target = Target::new(Kind::Semaphore, name);
        target.directory = directory;
        target.slots = slots;
        let target = crate::open::<H>(target)?;
        let inner = next::Semaphore::open(&target.name, target.slots, &target.directory)?;
        Ok(ex::Semaphore::new(Self {
            inner,
            lock: Rc::new(target),
            hooks: PhantomData,
        }))
    }

    fn acquire(&self) -> Result<ex::SemaphorePermit, Error> {
        self.take(Wait::Forever)
    }

    fn try_acquire(&self) -> Result<ex::SemaphorePermit, Error> {
        self.take(Wait::Never)
    }

    fn acquire_for(&self, timeout: u64) -> Result<ex::SemaphorePermit, Error> {
        self.take(Wait::For(Duration::from_nanos(timeout)))
    }

    fn slots(&self) -> u32 {
        self.inner.slots()
    }
}

impl<H: Hooks> ex::GuestSemaphorePermit for SemaphorePermitOf<H> {
    fn slot(&self) -> u32 {
        match (self.0.grant().slot, self.0.guard()) {
            (Some(slot), _) => slot,
            (None, Some(permit)) => permit.slot(),
            (None, None) => u32::MAX,
        }
    }

    fn release(permit: ex::SemaphorePermit) -> Result<(), Error> {
        permit
            .into_inner::<Self>()
            .0
            .release(next::SemaphorePermit::release)
    }
}
