//! portalocker's `BoundedSemaphore` / `NamedBoundedSemaphore`: at most N
//! holders across processes, one lock file per slot.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::flags::LockMode;
use crate::guard::LockGuard;
use crate::mode::FileMode;
use crate::sys;
use crate::wait::Wait;

/// The most slots a semaphore may have.
pub const MAX_SLOTS: usize = 10_000;
/// The longest semaphore name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// portalocker's slot file pattern.
pub const DEFAULT_PATTERN: &str = "{name}.{number:02d}.lock";

/// A semaphore with `maximum` slots shared by every process that uses the
/// same name and directory, Python's portalocker included.
///
/// Slot `n` is the file `{directory}/{name}.{n:02}.lock`; a holder is whoever
/// holds the exclusive lock on one of them. Acquiring sweeps the slots in
/// order and takes the first free one. Slot files are never deleted.
///
/// ```
/// use portalocker::BoundedSemaphore;
/// # let dir = tempfile::tempdir()?;
/// let sem = BoundedSemaphore::new(2, "workers")?.directory(dir.path());
/// let a = sem.try_acquire()?;
/// let b = sem.try_acquire()?;
/// assert!(sem.try_acquire().unwrap_err().is_contention());
/// assert_eq!((a.slot(), b.slot()), (0, 1));
/// assert!(a.path().ends_with("workers.00.lock"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    maximum: usize,
    name: String,
    directory: PathBuf,
    pattern: String,
    wait: Wait,
    /// Whether this semaphore's (or a clone's) last acquisition had to
    /// wait: then the next one steps back first (see [`COURTESY`]).
    contended: Arc<AtomicBool>,
}

/// How long an acquisition steps back before sweeping when the previous
/// one had to wait. A release wakes the waiters parked in the kernel, but
/// `flock` does not hand the slot over: a holder that comes straight back
/// would take it again before they run, so the same waiters would lose
/// again and again. Stepping back lets them in, and keeps the longest wait
/// near the mean (the benchmark's W4 fairness).
const COURTESY: Duration = Duration::from_micros(200);

impl BoundedSemaphore {
    /// A semaphore of `maximum` slots named `name` in the system temporary
    /// directory, with portalocker's 5 second timeout.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `maximum` is 0 or above
    /// [`MAX_SLOTS`], or `name` is empty, longer than [`MAX_NAME_LEN`],
    /// `.`/`..`, or contains a path separator or NUL.
    pub fn new(maximum: usize, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if maximum == 0 || maximum > MAX_SLOTS {
            return Err(Error::invalid(format!(
                "a semaphore needs between 1 and {MAX_SLOTS} slots, not {maximum}"
            )));
        }
        validate_name(&name)?;
        Ok(Self {
            maximum,
            name,
            directory: std::env::temp_dir(),
            pattern: DEFAULT_PATTERN.to_owned(),
            wait: Wait::DEFAULT,
            contended: Default::default(),
        })
    }

    /// portalocker's `NamedBoundedSemaphore(maximum)` without a name: a
    /// random `bounded_semaphore.<n>` name, shared only by whoever is told it.
    ///
    /// # Errors
    ///
    /// As [`BoundedSemaphore::new`].
    pub fn with_random_name(maximum: usize) -> Result<Self> {
        Self::new(
            maximum,
            format!("bounded_semaphore.{}", fastrand::u32(0..=1_000_000)),
        )
    }

    /// The directory holding the slot files (default: the system temporary
    /// directory). It must exist when acquiring.
    pub fn directory(mut self, directory: impl AsRef<Path>) -> Self {
        let directory = directory.as_ref();
        self.directory = std::path::absolute(directory).unwrap_or_else(|_| directory.to_path_buf());
        self
    }

    /// The slot file name pattern, with `{name}` and `{number}` (or
    /// `{number:0Nd}`, zero-padded to N digits) placeholders. Default
    /// [`DEFAULT_PATTERN`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the pattern has no `{number}`, has an
    /// unknown placeholder, or would make a path outside the directory.
    pub fn filename_pattern(mut self, pattern: impl Into<String>) -> Result<Self> {
        let pattern = pattern.into();
        let first = format_slot(&pattern, &self.name, 0)?;
        let second = format_slot(&pattern, &self.name, 1)?;
        if first == second {
            return Err(Error::invalid(format!(
                "the pattern {pattern:?} does not number the slots"
            )));
        }
        validate_name(&first)?;
        self.pattern = pattern;
        Ok(self)
    }

    /// How [`BoundedSemaphore::acquire`] waits for a slot (default
    /// [`Wait::DEFAULT`]: up to 5 s).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// The number of slots.
    pub fn maximum(&self) -> usize {
        self.maximum
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path of slot `number`.
    pub fn filename(&self, number: usize) -> PathBuf {
        self.directory.join(self.slot_file_name(number))
    }

    /// The file name (without directory) of slot `number`.
    pub fn slot_file_name(&self, number: usize) -> String {
        format_slot(&self.pattern, &self.name, number)
            .expect("the pattern was validated when it was set")
    }

    /// The slot paths in sweep order.
    pub fn filenames(&self) -> Vec<PathBuf> {
        (0..self.maximum).map(|n| self.filename(n)).collect()
    }

    /// Take a free slot, waiting as configured.
    ///
    /// While every slot is busy it parks on one slot in the kernel (so a
    /// release of that slot hands it over at once) and re-sweeps all slots
    /// at short, growing intervals (1 ms up to 50 ms). After an acquisition
    /// that had to wait, the next steps back 200 µs first, so that waiters
    /// woken by its release are not beaten to the slot every time.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] when no slot came free in time
    /// ([`Error::WouldBlock`] for [`Wait::NONE`]); [`Error::Io`] when a slot
    /// file cannot be opened (a missing directory, a symlink) or locked.
    pub fn acquire(&self) -> Result<SemaphorePermit> {
        self.acquire_with_opener(self.wait, &|name| self.open_in_directory(name))
    }

    /// One sweep of the slots; never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when every slot is taken; [`Error::Io`] as
    /// [`BoundedSemaphore::acquire`].
    pub fn try_acquire(&self) -> Result<SemaphorePermit> {
        self.acquire_with_opener(Wait::NONE, &|name| self.open_in_directory(name))
    }

    /// Wait at most `timeout` for a slot, whatever the configured wait.
    ///
    /// # Errors
    ///
    /// As [`BoundedSemaphore::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphorePermit> {
        self.acquire_with_opener(self.wait.for_up_to(timeout), &|name| {
            self.open_in_directory(name)
        })
    }

    /// portalocker's `fail_when_locked=False`: wait as configured, then
    /// return `None` instead of an error when the semaphore is still full.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] as [`BoundedSemaphore::acquire`].
    pub fn acquire_or_none(&self) -> Result<Option<SemaphorePermit>> {
        match self.acquire() {
            Ok(permit) => Ok(Some(permit)),
            Err(e) if e.is_contention() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Take a slot waiting as `wait` says, opening each slot file through
    /// `open`, which gets the slot's file name: for hosts that confine file
    /// access to a directory handle. `open` must create missing files and
    /// must not follow symlinks.
    ///
    /// # Errors
    ///
    /// As [`BoundedSemaphore::acquire`]; an error from `open` is
    /// [`Error::Io`].
    pub fn acquire_with_opener(
        &self,
        wait: Wait,
        open: &dyn Fn(&str) -> std::io::Result<File>,
    ) -> Result<SemaphorePermit> {
        let started = wait.start();
        if !started.once() && self.contended.load(Ordering::Relaxed) {
            std::thread::sleep(COURTESY);
        }
        let mut parked = false;
        let found = crate::wait::sweep(
            &started,
            self.maximum,
            || self.sweep(open),
            |slot, until| {
                parked = true;
                self.park_on(slot, until, open)
            },
        )?;
        self.contended.store(parked, Ordering::Relaxed);
        found.ok_or_else(|| started.contention(Some(&self.filename(0))))
    }

    /// [`BoundedSemaphore::acquire`] without blocking an executor: between
    /// sweeps it sleeps until a slot is released in this process or a short
    /// pause (growing to 10 ms) passes. Cancel-safe. Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`BoundedSemaphore::acquire`].
    #[cfg(feature = "async")]
    pub async fn acquire_async(&self) -> Result<SemaphorePermit> {
        self.acquire_with_opener_async(self.wait, &|name| self.open_in_directory(name))
            .await
    }

    /// [`BoundedSemaphore::acquire_with_opener`] without blocking an
    /// executor.
    ///
    /// # Errors
    ///
    /// As [`BoundedSemaphore::acquire_with_opener`].
    #[cfg(feature = "async")]
    pub async fn acquire_with_opener_async(
        &self,
        wait: Wait,
        open: &(dyn Fn(&str) -> std::io::Result<File> + Sync),
    ) -> Result<SemaphorePermit> {
        let started = wait.start();
        let mut found = None;
        let got = crate::wait::until(None, &started, || {
            found = self.sweep(open)?;
            Ok(found.is_some())
        })
        .await?;
        found
            .filter(|_| got)
            .ok_or_else(|| started.contention(Some(&self.filename(0))))
    }

    /// Open slot file `name` in the configured directory.
    fn open_in_directory(&self, name: &str) -> std::io::Result<File> {
        let mut options = FileMode::Append.open_options();
        sys::open_no_follow(&self.directory.join(name), &mut options)
    }

    /// Try every slot once, in order.
    fn sweep(
        &self,
        open: &dyn Fn(&str) -> std::io::Result<File>,
    ) -> Result<Option<SemaphorePermit>> {
        for slot in 0..self.maximum {
            let file = self.open_slot(slot, open)?;
            if sys::try_lock(&file, LockMode::Exclusive)
                .map_err(|e| Error::io("lock", self.filename(slot), e))?
            {
                return Ok(Some(self.permit(file, slot)));
            }
        }
        Ok(None)
    }

    /// Wait until `until` in the kernel for one slot.
    fn park_on(
        &self,
        slot: usize,
        until: Instant,
        open: &dyn Fn(&str) -> std::io::Result<File>,
    ) -> Result<Option<SemaphorePermit>> {
        let file = self.open_slot(slot, open)?;
        let locked = crate::wait::lock_until(&file, LockMode::Exclusive, until)
            .map_err(|e| Error::io("lock", self.filename(slot), e))?;
        Ok(locked.then(|| self.permit(file, slot)))
    }

    fn open_slot(&self, slot: usize, open: &dyn Fn(&str) -> std::io::Result<File>) -> Result<File> {
        open(&self.slot_file_name(slot)).map_err(|e| Error::io("open", self.filename(slot), e))
    }

    fn permit(&self, file: File, slot: usize) -> SemaphorePermit {
        SemaphorePermit {
            guard: LockGuard::from_locked(file, self.filename(slot), LockMode::Exclusive),
            slot,
        }
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("maximum", &self.maximum)
            .field("name", &self.name)
            .field("directory", &self.directory)
            .field("pattern", &self.pattern)
            .field("wait", &self.wait)
            .finish()
    }
}

/// A held slot of a [`BoundedSemaphore`]. Dropping it frees the slot.
#[derive(Debug)]
#[must_use = "if unused the slot is released immediately"]
pub struct SemaphorePermit {
    guard: LockGuard,
    slot: usize,
}

impl SemaphorePermit {
    /// The slot number held.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The slot file held.
    pub fn path(&self) -> &Path {
        self.guard.path()
    }

    /// Wrap a slot file already locked (exclusively, through
    /// [`LockGuard::from_locked`]) as the permit for slot `slot`: for hosts
    /// that sweep the slots themselves.
    pub fn from_locked(guard: LockGuard, slot: usize) -> Self {
        Self { guard, slot }
    }

    /// The locked slot file.
    pub fn file(&self) -> &File {
        self.guard.file()
    }

    /// Free the slot now, reporting failures.
    ///
    /// # Errors
    ///
    /// As [`LockGuard::release`].
    pub fn release(self) -> Result<()> {
        self.guard.release()
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("a semaphore name must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "a semaphore name must be at most {MAX_NAME_LEN} bytes, not {}",
            name.len()
        )));
    }
    if name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(Error::invalid(format!(
            "a semaphore name must be a plain file name: {name:?}"
        )));
    }
    Ok(())
}

/// Expand `{name}`, `{number}` and `{number:0Nd}` in `pattern`.
fn format_slot(pattern: &str, name: &str, number: usize) -> Result<String> {
    let mut out = String::with_capacity(pattern.len() + name.len());
    let mut rest = pattern;
    let mut numbered = false;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| Error::invalid(format!("unclosed '{{' in pattern {pattern:?}")))?;
        let field = &rest[open + 1..open + close];
        match field {
            "name" => out.push_str(name),
            "number" => {
                out.push_str(&number.to_string());
                numbered = true;
            }
            _ => {
                let width = field
                    .strip_prefix("number:0")
                    .and_then(|w| w.strip_suffix('d'))
                    .and_then(|w| w.parse::<usize>().ok())
                    .filter(|w| *w <= 20)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "unknown placeholder {{{field}}} in pattern {pattern:?}"
                        ))
                    })?;
                out.push_str(&format!("{number:0width$}"));
                numbered = true;
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    if !numbered {
        return Err(Error::invalid(format!(
            "the pattern {pattern:?} has no {{number}} placeholder"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_match_portalocker() {
        // The directory is made absolute: `/x` is `C:\\x` on Windows.
        let x = std::path::absolute("/x").unwrap();
        let sem = BoundedSemaphore::new(3, "jobs").unwrap().directory("/x");
        assert_eq!(sem.filename(0), x.join("jobs.00.lock"));
        assert_eq!(sem.filename(7), x.join("jobs.07.lock"));
        assert_eq!(sem.filename(123), x.join("jobs.123.lock"));
        assert_eq!(sem.filenames().len(), 3);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(BoundedSemaphore::new(0, "a").is_err());
        assert!(BoundedSemaphore::new(MAX_SLOTS + 1, "a").is_err());
        for name in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
            assert!(BoundedSemaphore::new(1, name).is_err(), "{name:?}");
        }
        assert!(BoundedSemaphore::new(1, "x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(BoundedSemaphore::new(1, "x".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn custom_patterns() {
        let sem = BoundedSemaphore::new(2, "db").unwrap().directory("/d");
        let sem = sem.filename_pattern("slot-{number:03d}-{name}").unwrap();
        let d = std::path::absolute("/d").unwrap();
        assert_eq!(sem.filename(4), d.join("slot-004-db"));
        let sem = BoundedSemaphore::new(2, "db").unwrap();
        for bad in [
            "{name}.lock",
            "{number",
            "{nope}{number}",
            "../{number}",
            "{number:0999d}",
        ] {
            assert!(sem.clone().filename_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn random_names_look_like_portalockers() {
        let sem = BoundedSemaphore::with_random_name(2).unwrap();
        assert!(sem.name().starts_with("bounded_semaphore."));
    }
}
