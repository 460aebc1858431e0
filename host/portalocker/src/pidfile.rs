//! portalocker's `PidFileLock`: single-instance daemons that can say who
//! holds the lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::guard::{LockGuard, release_file};
use crate::lock::Lock;
use crate::mode::FileMode;
use crate::sys;
use crate::temporary::{acquire_verified, unlink_if_current, verify_current};
use crate::wait::Wait;

/// A PID file guarded by a sidecar lock: `path` holds the holder's decimal
/// PID and `path.lock` carries the OS lock (exclusive, non-blocking, as in
/// portalocker whatever flags are given). Both are removed on release.
///
/// The PID is published atomically (a temporary file renamed into place),
/// so a reader sees the old PID or the new one, never a partial one.
///
/// ```
/// use portalocker::{PidFileLock, PidLock};
/// # let dir = tempfile::tempdir()?;
/// let lock = PidFileLock::new(dir.path().join("daemon.pid"));
/// match lock.acquire_or_holder()? {
///     PidLock::Acquired(guard) => {
///         assert_eq!(lock.read_pid(), Some(std::process::id()));
///         drop(guard);
///     }
///     PidLock::HeldBy(pid) => println!("already running as PID {pid}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PidFileLock {
    path: PathBuf,
    sidecar: Lock,
}

/// The outcome of [`PidFileLock::acquire_or_holder`].
#[derive(Debug)]
pub enum PidLock {
    /// This process now holds the lock.
    Acquired(PidLockGuard),
    /// Another process holds it; this is the PID it published.
    HeldBy(u32),
}

impl PidFileLock {
    /// A PID-file lock at `path` (made absolute now); nothing is created
    /// until acquire.
    pub fn new(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Self {
            sidecar: Lock::new(sidecar_path(&path))
                .mode(FileMode::Append)
                .wait(Wait::NONE),
            path,
        }
    }

    /// How [`PidFileLock::acquire`] waits (default [`Wait::NONE`]:
    /// portalocker's `fail_when_locked`).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.sidecar = self.sidecar.wait(wait);
        self
    }

    /// The PID file's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sidecar lock file's path (`path` + `.lock`).
    pub fn sidecar_path(&self) -> &Path {
        self.sidecar.path()
    }

    /// Take the lock and publish this process's PID.
    ///
    /// Waits as configured (by default not at all).
    /// This is portalocker's `fail_closed()`: contention is an error that
    /// carries the holder's PID when it could be read.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] / [`Error::TimedOut`] on contention, with
    /// [`Error::holder_pid`] set when readable; [`Error::Io`] when a file
    /// cannot be opened, locked or published (the lock is rolled back).
    pub fn acquire(&self) -> Result<PidLockGuard> {
        self.acquire_waiting(self.sidecar.waits())
    }

    /// One attempt; never blocks.
    ///
    /// # Errors
    ///
    /// As [`PidFileLock::acquire`].
    pub fn try_acquire(&self) -> Result<PidLockGuard> {
        self.acquire_waiting(Wait::NONE)
    }

    /// Wait at most `timeout`, whatever the configured wait.
    ///
    /// # Errors
    ///
    /// As [`PidFileLock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<PidLockGuard> {
        self.acquire_waiting(self.sidecar.waits().for_up_to(timeout))
    }

    /// [`PidFileLock::acquire`] without blocking an executor (see
    /// [`Lock::acquire_async`]).
    ///
    /// # Errors
    ///
    /// As [`PidFileLock::acquire`].
    #[cfg(feature = "async")]
    pub async fn acquire_async(&self) -> Result<PidLockGuard> {
        let sidecar =
            crate::temporary::acquire_verified_async(&self.sidecar, self.sidecar.waits()).await;
        self.published(sidecar)
    }

    fn acquire_waiting(&self, wait: Wait) -> Result<PidLockGuard> {
        self.published(acquire_verified(&self.sidecar, wait))
    }

    /// With the sidecar locked, publish our PID (rolling back on failure).
    fn published(&self, sidecar: Result<LockGuard>) -> Result<PidLockGuard> {
        let sidecar = match sidecar {
            Ok(sidecar) => sidecar,
            Err(e) if e.is_contention() => {
                return Err(e.with_context(&self.path, self.read_pid()));
            }
            Err(e) => return Err(e),
        };
        if let Err(e) = publish_pid(&self.path) {
            // Roll the sidecar back: whoever comes next must not find it held.
            let mut sidecar = sidecar;
            if let Some(file) = sidecar.take_file()
                && let Err(rollback) = release_file(file, self.sidecar.path())
            {
                log::warn!("rollback after failed PID publication also failed: {rollback}");
            }
            return Err(e);
        }
        Ok(PidLockGuard {
            sidecar,
            pid_path: self.path.clone(),
        })
    }

    /// Take the lock, or learn who holds it: portalocker's
    /// `with PidFileLock(...) as holder_pid`.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] / [`Error::TimedOut`] when the lock is held but
    /// the holder's PID cannot be read (this never reports the caller as the
    /// holder); other errors as [`PidFileLock::acquire`].
    pub fn acquire_or_holder(&self) -> Result<PidLock> {
        match self.acquire() {
            Ok(guard) => Ok(PidLock::Acquired(guard)),
            Err(e) if e.is_contention() => match e.holder_pid() {
                Some(pid) => Ok(PidLock::HeldBy(pid)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The PID in the PID file, parsed strictly: ASCII digits only (at most
    /// 20, surrounding whitespace allowed), greater than zero. Missing,
    /// unreadable or malformed files give `None`, as does anything but a
    /// regular file (a FIFO there is never waited on). The PID says who
    /// wrote the file, not that the process is alive.
    pub fn read_pid(&self) -> Option<u32> {
        parse_pid(&read_head(&self.path).ok()?)
    }
}

/// The longest PID file read; a longer one is malformed.
const MAX_PID_FILE: u64 = 4096;

/// The bytes of the regular file at `path`, opened without following a
/// symlink or blocking; an over-long file is refused unread.
fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    let mut options = OpenOptions::new();
    options.read(true);
    let file = sys::open_no_follow(path, &mut options)?;
    let mut bytes = Vec::new();
    file.take(MAX_PID_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PID_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the PID file is too long",
        ));
    }
    Ok(bytes)
}

/// Parse a PID file's bytes as [`PidFileLock::read_pid`] describes.
pub(crate) fn parse_pid(bytes: &[u8]) -> Option<u32> {
    let text = bytes.trim_ascii();
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    u32::try_from(value).ok().filter(|pid| *pid > 0)
}

/// Write our PID to `<path>.<pid>.tmp`, sync it, and rename it onto `path`.
fn publish_pid(path: &Path) -> Result<()> {
    let pid = std::process::id();
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{pid}.tmp"));
    let temp = PathBuf::from(temp);
    let io_err = |op, e| Error::io(op, path.to_path_buf(), e);
    // A leftover from a crashed run of a process with our PID: remove it
    // (unlink never follows a symlink) and create ours exclusively.
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove stale PID temp file", e)),
    }
    let written = (|| -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let mut file: File = sys::open_no_follow(&temp, &mut options)?;
        file.write_all(pid.to_string().as_bytes())?;
        match file.sync_all() {
            Err(e) if !sys::fsync_unsupported(&e) => return Err(e),
            _ => {}
        }
        sys::close(file)?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io_err("publish PID to", e));
    }
    Ok(())
}

/// A held [`PidFileLock`]. Dropping it removes the PID file and the sidecar
/// (only if the sidecar path still names the locked file), then unlocks.
#[derive(Debug)]
#[must_use = "if unused the lock is released immediately"]
pub struct PidLockGuard {
    sidecar: LockGuard,
    pid_path: PathBuf,
}

impl PidLockGuard {
    /// The PID file's path.
    pub fn path(&self) -> &Path {
        &self.pid_path
    }

    /// Check that the sidecar path still names the locked file.
    ///
    /// # Errors
    ///
    /// [`Error::Compromised`] when it was unlinked or replaced externally.
    pub fn verify(&self) -> Result<()> {
        verify_current(&self.sidecar)
    }

    /// Remove both files and unlock, reporting failures; every step runs.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]: the first failure (later ones are logged).
    pub fn release(mut self) -> Result<()> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<()> {
        let Some(file) = self.sidecar.take_file() else {
            return Ok(());
        };
        let sidecar_path = self.sidecar.path().to_path_buf();
        let mut errors = Vec::new();
        match sys::same_file(&file, &sidecar_path) {
            Ok(true) => {
                if let Err(e) = std::fs::remove_file(&self.pid_path)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    errors.push(Error::io("unlink", self.pid_path.clone(), e));
                }
                if let Err(e) = unlink_if_current(&file, &sidecar_path) {
                    errors.push(e);
                }
            }
            Ok(false) => log::warn!(
                "'{}' no longer names the held lock file; removing nothing",
                sidecar_path.display()
            ),
            Err(e) => errors.push(Error::io("stat", sidecar_path.clone(), e)),
        }
        if let Err(e) = release_file(file, &sidecar_path) {
            errors.push(e);
        }
        let mut errors = errors.into_iter();
        let first = errors.next();
        for later in errors {
            log::warn!("also failed while releasing PID lock: {later}");
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for PidLockGuard {
    fn drop(&mut self) {
        if let Err(e) = self.release_inner() {
            log::warn!("suppressed error while releasing PID lock: {e}");
        }
    }
}

/// The path a PID file's sidecar lock lives at: `path` + `.lock`.
pub(crate) fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::parse_pid;

    #[test]
    fn parses_strictly() {
        assert_eq!(parse_pid(b"12345"), Some(12345));
        assert_eq!(parse_pid(b"  42\n"), Some(42));
        for bad in [
            &b""[..],
            b"   ",
            b"-1",
            b"0",
            b"+7",
            b"1_000",
            "\u{ff11}\u{ff12}".as_bytes(),
            b"\xff\xfe",
            b"123456789012345678901",
            b"12 34",
            b"99999999999",
        ] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
    }
}
