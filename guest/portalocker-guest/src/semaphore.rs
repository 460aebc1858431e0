//! Bounded semaphores shared with other processes.

use std::marker::PhantomData;
use std::time::Duration;

use crate::error::Result;
use crate::wit::portalocker::locks::semaphore as wit;

/// portalocker's named bounded semaphore: `slots` slot files
/// `{name}.{NN}.lock` in a granted directory, shared with every process
/// (native, Python or plugin) using the same name and directory.
///
/// ```no_run
/// use portalocker_guest::Semaphore;
/// let encoders = Semaphore::open("encoders", 4, "/jobs")?;
/// let permit = encoders.acquire()?;
/// println!("running in slot {}", permit.slot());
/// # Ok::<(), portalocker_guest::Error>(())
/// ```
#[derive(Debug)]
pub struct Semaphore(wit::Semaphore);

impl Semaphore {
    /// Name the semaphore. Never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a name
    /// that is not a plain file name or zero (or too many) slots;
    /// [`Error::AccessDenied`](crate::Error::AccessDenied) for a directory
    /// outside the grants.
    pub fn open(name: impl AsRef<str>, slots: u32, directory: impl AsRef<str>) -> Result<Self> {
        Ok(Self(wit::Semaphore::open(
            name.as_ref(),
            slots,
            directory.as_ref(),
        )?))
    }

    /// Take a free slot, blocking until one frees (the host may bound the
    /// wait: then [`Error::TimedOut`](crate::Error::TimedOut)).
    ///
    /// # Errors
    ///
    /// Contention past the host's maximum wait, too many permits held.
    pub fn acquire(&self) -> Result<SemaphorePermit<'_>> {
        self.0.acquire().map(SemaphorePermit::new)
    }

    /// Sweep the slots once; never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) when all are taken.
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>> {
        self.0.try_acquire().map(SemaphorePermit::new)
    }

    /// Take a free slot, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`](crate::Error::TimedOut) when none freed in time.
    pub fn acquire_for(&self, timeout: Duration) -> Result<SemaphorePermit<'_>> {
        self.0
            .acquire_for(crate::nanos(timeout))
            .map(SemaphorePermit::new)
    }

    /// The number of slots.
    pub fn slots(&self) -> u32 {
        self.0.slots()
    }
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "if unused the slot is released immediately"]
pub struct SemaphorePermit<'a> {
    inner: wit::SemaphorePermit,
    _semaphore: PhantomData<&'a Semaphore>,
}

impl SemaphorePermit<'_> {
    fn new(inner: wit::SemaphorePermit) -> Self {
        Self {
            inner,
            _semaphore: PhantomData,
        }
    }

    /// The slot number held, from 0.
    pub fn slot(&self) -> u32 {
        self.inner.slot()
    }

    /// Free the slot now and report any failure.
    ///
    /// # Errors
    ///
    /// When the host failed to unlock or close the slot file.
    pub fn release(self) -> Result<()> {
        wit::SemaphorePermit::release(self.inner)
    }
}
