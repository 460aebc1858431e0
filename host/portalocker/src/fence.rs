//! Fencing tokens for file locks: a counter kept beside the lock file and
//! advanced under the lock.
//!
//! A holder that stalls (a paused process, a lock file unlinked under it)
//! may write after someone else took the lock. A fencing token lets the
//! protected resource tell: every fenced exclusive holder draws the next
//! value of a counter that lives in `{lock path}.fence`, so a resource that
//! remembers the highest token it has seen rejects a smaller one.
//!
//! This is portalocker-rs's extension. Python's portalocker has no file
//! fencing: it neither draws nor checks these tokens, though its holders
//! still exclude ours. The counter file holds the last token drawn as
//! decimal ASCII and a newline, so any language can read it.
//!
//! ```
//! use portalocker::{Lock, LockFlags};
//! # let dir = tempfile::tempdir()?;
//! let lock = Lock::new(dir.path().join("job.lock")).flags(LockFlags::EXCLUSIVE);
//! let first = lock.acquire()?.draw_fencing_token()?;
//! let second = lock.acquire()?.draw_fencing_token()?;
//! assert!(second > first);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// What a lock file's fencing counter file name adds to the lock file's.
pub const FENCE_SUFFIX: &str = ".fence";

/// The longest counter file content read: a `u64` in decimal and a newline.
const MAX_COUNTER_LEN: usize = 21;

/// The counter file beside the lock file at `lock_path`.
pub fn fence_path(lock_path: &Path) -> PathBuf {
    let mut name = lock_path.as_os_str().to_owned();
    name.push(FENCE_SUFFIX);
    PathBuf::from(name)
}

/// The options a counter file is opened with: read and write, created
/// `0o666 & !umask`, never through a final symlink, never blocking.
pub fn fence_open_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    options
}

/// Advance the counter in `counter` (a file opened read-write, not
/// appending) and return the new value: 1 for an empty file. Call it only
/// while holding the exclusive lock the counter belongs to; that lock is
/// what makes the read and the write one step.
///
/// # Errors
///
/// An I/O error, or `InvalidData` when the file holds anything but a
/// counter (it is never reset: a reset would break the order).
pub fn advance_fence(counter: &File) -> io::Result<u64> {
    if !counter.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a fencing counter must be a regular file",
        ));
    }
    let mut buf = [0u8; MAX_COUNTER_LEN + 1];
    let len = read_at(counter, &mut buf)?;
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| corrupt())?;
    let text = text.trim_end_matches('\n');
    let last = if text.is_empty() {
        0
    } else if len > MAX_COUNTER_LEN || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(corrupt());
    } else {
        text.parse::<u64>().map_err(|_| corrupt())?
    };
    let next = last.checked_add(1).ok_or_else(corrupt)?;
    // The new value is never shorter than the old one: writing it over the
    // start replaces the whole content.
    write_at(counter, format!("{next}\n").as_bytes())?;
    Ok(next)
}

/// The error for a counter file holding something else.
fn corrupt() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the fencing counter file holds no counter (or one at its maximum)",
    )
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut len = 0;
    while len < buf.len() {
        match file.read_at(&mut buf[len..], len as u64)? {
            0 => break,
            n => len += n,
        }
    }
    Ok(len)
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, 0)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::windows::fs::FileExt;
    let mut len = 0;
    while len < buf.len() {
        match file.seek_read(&mut buf[len..], len as u64)? {
            0 => break,
            n => len += n,
        }
    }
    Ok(len)
}

#[cfg(windows)]
fn write_at(file: &File, bytes: &[u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    let mut done = 0;
    while done < bytes.len() {
        done += file.seek_write(&bytes[done..], done as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(dir: &Path, content: &str) -> File {
        let path = dir.join("c.lock.fence");
        std::fs::write(&path, content).unwrap();
        fence_open_options().open(path).unwrap()
    }

    #[test]
    fn an_empty_counter_starts_at_one_and_grows_across_digit_counts() {
        let dir = tempfile::tempdir().unwrap();
        let file = counter(dir.path(), "");
        assert_eq!(advance_fence(&file).unwrap(), 1);
        let file = counter(dir.path(), "9\n");
        assert_eq!(advance_fence(&file).unwrap(), 10);
        assert_eq!(advance_fence(&file).unwrap(), 11);
        let text = std::fs::read_to_string(dir.path().join("c.lock.fence")).unwrap();
        assert_eq!(text, "11\n");
    }

    #[test]
    fn a_corrupt_or_exhausted_counter_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        for content in [
            "x\n",
            "12a\n",
            "-1\n",
            "18446744073709551615\n",
            "1234567890123456789012\n",
        ] {
            let file = counter(dir.path(), content);
            let error = advance_fence(&file).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{content:?}");
            let text = std::fs::read_to_string(dir.path().join("c.lock.fence")).unwrap();
            assert_eq!(text, content);
        }
    }

    #[test]
    fn the_counter_file_sits_beside_the_lock_file() {
        assert_eq!(
            fence_path(Path::new("/srv/jobs/a.lock")),
            Path::new("/srv/jobs/a.lock.fence")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_counter_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target"), "").unwrap();
        std::os::unix::fs::symlink("target", dir.path().join("a.lock.fence")).unwrap();
        assert!(
            fence_open_options()
                .open(dir.path().join("a.lock.fence"))
                .is_err()
        );
    }
}
