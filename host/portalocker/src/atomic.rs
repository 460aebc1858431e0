//! portalocker's `open_atomic`: write a new file under a temporary name and
//! publish it in one step, never replacing an existing file.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;

/// How many random temporary names are tried before giving up.
const NAME_ATTEMPTS: usize = 10_000;

/// A new file being written under a temporary name beside its destination.
///
/// [`AtomicFile::commit`] flushes, syncs and publishes it with a hard link,
/// which fails if the destination appeared meanwhile (the winner's file is
/// left untouched). Dropping it without committing removes the temporary
/// file. The published file gets `0o666 & !umask`, like a plain `open()`.
///
/// ```
/// use std::io::Write;
/// use portalocker::AtomicFile;
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("config.json");
/// let mut file = AtomicFile::create(&path)?;
/// file.write_all(b"{}")?;
/// file.commit()?;
/// assert_eq!(std::fs::read(&path)?, b"{}");
/// assert!(AtomicFile::create(&path).is_err()); // never replaces
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    destination: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Start writing a new file that will be published at `path`. Creates
    /// missing parent directories.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`io::ErrorKind::AlreadyExists`] when `path`
    /// exists (a dangling symlink counts), or when the directory cannot be
    /// created or written.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let destination =
            std::path::absolute(path).map_err(|e| Error::io("resolve", path.to_path_buf(), e))?;
        if std::fs::symlink_metadata(&destination).is_ok() {
            return Err(exists(&destination));
        }
        let parent = destination.parent().ok_or_else(|| {
            Error::invalid(format!(
                "'{}' has no parent directory",
                destination.display()
            ))
        })?;
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io("create directory", parent.to_path_buf(), e))?;
        for _ in 0..NAME_ATTEMPTS {
            let temp = parent.join(format!(".portalocker.{:016x}.tmp", fastrand::u64(..)));
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            match sys::open_no_follow(&temp, &mut options) {
                Ok(file) => {
                    return Ok(Self {
                        destination,
                        temp,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create", temp, e)),
            }
        }
        Err(Error::io(
            "create a temporary file beside",
            destination,
            io::Error::other(format!(
                "no free temporary name after {NAME_ATTEMPTS} attempts"
            )),
        ))
    }

    /// Where the file will be published.
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Flush, sync and publish the file at its destination.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when syncing or publishing fails, including
    /// [`io::ErrorKind::AlreadyExists`] when the destination appeared in the
    /// meantime. The temporary file is then kept, and the error names it
    /// ("payload preserved at ...").
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("the file is open until commit");
        let synced = (|| {
            match file.sync_all() {
                Err(e) if !sys::fsync_unsupported(&e) => return Err(e),
                _ => {}
            }
            sys::close(file)
        })();
        if let Err(e) = synced {
            return Err(self.preserve("sync", e));
        }
        match publish(&self.temp, &self.destination) {
            Ok(()) => {
                if let Err(e) = std::fs::remove_file(&self.temp) {
                    log::warn!(
                        "published, but could not remove '{}': {e}",
                        self.temp.display()
                    );
                }
                self.temp = PathBuf::new();
                Ok(())
            }
            Err(e) => Err(self.preserve("publish", e)),
        }
    }

    /// Keep the temporary file and name it in the error.
    fn preserve(&mut self, op: &'static str, error: io::Error) -> Error {
        let temp = std::mem::take(&mut self.temp);
        let message = format!("{error}; payload preserved at {}", temp.display());
        Error::io(
            op,
            self.destination.clone(),
            io::Error::new(error.kind(), message),
        )
    }
}

/// Publish without replacing: a hard link, or where the filesystem has none,
/// an existence check followed by a rename (atomic for the content, racy
/// between publishers).
fn publish(temp: &Path, destination: &Path) -> io::Result<()> {
    match std::fs::hard_link(temp, destination) {
        Ok(()) => Ok(()),
        Err(e) if sys::hard_links_unsupported(&e) => {
            if std::fs::symlink_metadata(destination).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the destination exists",
                ));
            }
            std::fs::rename(temp, destination)
        }
        Err(e) => Err(e),
    }
}

fn exists(path: &Path) -> Error {
    Error::io(
        "create",
        path.to_path_buf(),
        io::Error::new(io::ErrorKind::AlreadyExists, "the destination exists"),
    )
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl Deref for AtomicFile {
    type Target = File;
    fn deref(&self) -> &File {
        self.file.as_ref().expect("the file is open until commit")
    }
}

impl DerefMut for AtomicFile {
    fn deref_mut(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is open until commit")
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.deref_mut().write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.deref_mut().write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.deref_mut().flush()
    }
}

/// portalocker's `open_atomic`: run `body` on a new temporary file and
/// publish it at `path` if `body` succeeds; remove it if `body` fails.
///
/// ```
/// use std::io::Write;
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("out.txt");
/// portalocker::open_atomic(&path, |file| file.write_all(b"hello"))?;
/// assert_eq!(std::fs::read_to_string(&path)?, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`AtomicFile::create`] and [`AtomicFile::commit`]; an error from
/// `body` is returned as [`Error::Io`] with nothing published.
pub fn open_atomic<T>(
    path: impl AsRef<Path>,
    body: impl FnOnce(&mut File) -> io::Result<T>,
) -> Result<T> {
    let mut file = AtomicFile::create(path)?;
    let value = body(&mut file).map_err(|e| Error::io("write", file.temp.clone(), e))?;
    file.commit()?;
    Ok(value)
}
