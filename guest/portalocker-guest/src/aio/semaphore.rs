//! Bounded semaphores shared with other processes, awaited.

use std::marker::PhantomData;
use std::time::Duration;

use super::error::Result;
use super::wit::portalocker::locks::semaphore as wit;

/// portalocker's named bounded semaphore: `slots` slot files
/// `{name}.{NN}.lock` in a granted directory, shared with every process
/// (native, Python, 0.1.0 or 0.2.0 plugin) using the same name and
/// directory.
///
/// ```no_run
/// # async fn f() -> portalocker_guest::aio::Result<()> {
/// use portalocker_guest::aio::Semaphore;
/// let encoders = Semaphore::open("encoders", 4, "/jobs")?;
/// let permit = encoders.acquire().await?;
/// println!("running in slot {}", permit.slot());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Semaphore(wit::Semaphore);

impl Semaphore {
    /// Name the semaphore. Never waits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](super::Error::InvalidArgument) for a name
    /// that is not a plain file name or zero (or too many) slots;
    /// [`Error::AccessDenied`](super::Error::AccessDenied) for a directory
    /// outside the grants.
    pub fn open(name: impl AsRef<str>, slots: u32, directory: impl AsRef<str>) -> Result<Self> {
        Ok(Self(wit::Semaphore::open(
            name.as_ref(),
            slots,
            directory.as_ref(),
        )?))
    }

    /// Take a free slot, waiting until one frees (the host may bound the
    /// wait: then [`Error::TimedOut`](super::Error::TimedOut)). Dropping
    /// the future cancels the wait and takes no slot.
    ///
    /// # Errors
    ///
    /// Contention past the host's maximum wait, an unreachable directory,
    /// or too many permits held.
    pub async fn acquire(&self) -> Result<SemaphorePermit<'_>> {
        self.0.acquire().await.map(SemaphorePermit::new)
    }

    /// Sweep the slots once; never waits.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](super::Error::WouldBlock) when all are taken.
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>> {
        self.0.try_acquire().map(SemaphorePermit::new)
    }

    /// Take a free slot, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`](super::Error::TimedOut) when none freed in time.
    pub async fn acquire_for(&self, timeout: Duration) -> Result<SemaphorePermit<'_>> {
        self.0
            .acquire_for(crate::nanos(timeout))
            .await
            .map(SemaphorePermit::new)
    }

    /// The number of slots.
    pub fn slots(&self) -> u32 {
        self.0.slots()
    }
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "if unused the slot is freed immediately"]
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

    /// The slot held, from 0.
    pub fn slot(&self) -> u32 {
        self.inner.slot()
    }

    /// A future that resolves, with the reason, when the slot is lost (its slot file was
    /// unlinked or replaced). Each call starts a new watch.
    ///
    /// # Errors
    ///
    /// [`Error::LimitExceeded`](super::Error::LimitExceeded) when the
    /// plugin already has as many handles as the host allows (each watch
    /// is one until dropped).
    pub fn lost(&self) -> Result<impl Future<Output = String> + 'static> {
        Ok(std::future::IntoFuture::into_future(self.inner.lost()?))
    }

    /// Free the slot now.
    ///
    /// # Errors
    ///
    /// When the host failed to unlock or close the slot file.
    pub fn release(self) -> Result<()> {
        wit::SemaphorePermit::release(self.inner)
    }
}
