//! A held file lock: the guard every file-lock kind returns, and releasing
//! (unlock, then close).

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::flags::LockMode;
use crate::sys;

/// A held [`Lock`](crate::Lock): the locked file, open in the lock's mode.
///
/// Dropping the guard unlocks and closes the file; errors on that path are
/// logged at `warn` level (portalocker's default policy).
/// [`LockGuard::release`] does the same and reports them.
///
/// The guard derefs to the [`File`] and implements [`Read`], [`Write`] and
/// [`Seek`].
#[must_use = "if unused the lock is released immediately"]
pub struct LockGuard {
    file: Option<File>,
    path: PathBuf,
    mode: LockMode,
}

impl LockGuard {
    /// The locked file.
    pub fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("a guard holds its file until released")
    }

    /// The locked file, mutably.
    pub fn file_mut(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("a guard holds its file until released")
    }

    /// The path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock is exclusive or shared.
    pub fn lock_mode(&self) -> LockMode {
        self.mode
    }

    /// Unlock and close now, reporting failures. Both steps always run; the
    /// unlock error wins when both fail (the close error is logged).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when unlocking or closing failed. The lock is gone
    /// either way: closing the last descriptor drops it.
    pub fn release(mut self) -> Result<()> {
        match self.file.take() {
            Some(file) => release_file(file, &self.path),
            None => Ok(()),
        }
    }

    /// Draw this exclusive holder's fencing token: advance the counter in
    /// `{path}.fence` beside the lock file (see [`crate::fence`]) and return
    /// it. Tokens grow with every draw by any process, so a resource that
    /// keeps the highest token it has seen rejects a stale holder. The
    /// counter is found beside [`LockGuard::path`]: for a guard made with
    /// [`LockGuard::from_locked`], that path must name the locked file.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a shared lock (readers draw no
    /// token); [`Error::Compromised`] when the path no longer names the
    /// locked file (it was unlinked or replaced: a token drawn now could be
    /// above a newer holder's, so none is); [`Error::Io`] when the counter
    /// file cannot be opened (a symlink is refused), read or written, or
    /// holds no counter.
    pub fn draw_fencing_token(&self) -> Result<u64> {
        if self.mode != LockMode::Exclusive {
            return Err(Error::InvalidArgument(
                "only an exclusive holder draws a fencing token".into(),
            ));
        }
        let path = crate::fence::fence_path(&self.path);
        let drawn = crate::fence::fence_open_options()
            .open(&path)
            .and_then(|counter| {
                crate::fence::advance_fence_if(&counter, || sys::same_file(self.file(), &self.path))
            })
            .map_err(|e| Error::io("advance the fencing counter", path, e))?;
        drawn.ok_or_else(|| Error::Compromised {
            path: self.path.clone(),
            reason: "the lock file was unlinked or replaced; no fencing token was drawn".into(),
        })
    }

    /// Truncate the locked file (for the write modes, once locked).
    pub(crate) fn truncate(&self) -> Result<()> {
        let mut file = self.file();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(|e| Error::io("truncate", self.path.clone(), e))
    }

    /// Unlock and hand the file back, open, for reuse (the next lock of the
    /// same path then needs no open).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when unlocking fails; the file is closed then.
    pub fn into_unlocked(mut self) -> Result<File> {
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::io("unlock", self.path.clone(), io::Error::other("released")))?;
        #[cfg(feature = "async")]
        crate::wake::released(&file);
        sys::unlock(&file).map_err(|e| Error::io("unlock", self.path.clone(), e))?;
        Ok(file)
    }

    /// Guard a file already locked in `mode` with [`lock`](crate::lock): dropping the
    /// guard unlocks and closes it.
    pub fn from_locked(file: File, path: impl Into<PathBuf>, mode: LockMode) -> Self {
        let path = path.into();
        Self {
            file: Some(file),
            path,
            mode,
        }
    }

    /// Take the file out, leaving the guard inert.
    pub(crate) fn take_file(&mut self) -> Option<File> {
        self.file.take()
    }
}

/// Unlock then close, both always attempted (waking this process's async
/// waiters for the file).
pub(crate) fn release_file(file: File, path: &Path) -> Result<()> {
    #[cfg(feature = "async")]
    crate::wake::released(&file);
    let unlocked = sys::unlock(&file);
    let closed = sys::close(file);
    match (unlocked, closed) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(unlock), Ok(())) => Err(Error::io("unlock", path.to_path_buf(), unlock)),
        (Ok(()), Err(close)) => Err(Error::io("close", path.to_path_buf(), close)),
        (Err(unlock), Err(close)) => {
            log::warn!("also failed to close '{}': {close}", path.display());
            Err(Error::io("unlock", path.to_path_buf(), unlock))
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(file) = self.file.take()
            && let Err(e) = release_file(file, &self.path)
        {
            log::warn!("suppressed error while releasing lock: {e}");
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Deref for LockGuard {
    type Target = File;
    fn deref(&self) -> &File {
        self.file()
    }
}

impl DerefMut for LockGuard {
    fn deref_mut(&mut self) -> &mut File {
        self.file_mut()
    }
}

impl Read for LockGuard {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file_mut().read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.file_mut().read_vectored(bufs)
    }
}

impl Write for LockGuard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file_mut().write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.file_mut().write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file_mut().flush()
    }
}

impl Seek for LockGuard {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file_mut().seek(pos)
    }
}
