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
/// while holding the exclusive lock the counter belongs to (see
/// [`advance_fence_if`], which also checks that lock is still yours).
///
/// # Errors
///
/// As [`advance_fence_if`].
pub fn advance_fence(counter: &File) -> io::Result<u64> {
    advance_fence_if(counter, || Ok(true))?
        .ok_or_else(|| io::Error::other("the fencing counter was not advanced"))
}

/// Advance the counter in `counter` if `still_held` says the lock it
/// belongs to is still yours, and return the new value (`None`, and the
/// counter untouched, when it is not).
///
/// The read, the check and the write happen under an exclusive lock on the
/// counter file itself: the lock file's own lock does not serialise a
/// holder whose lock file was unlinked or replaced with a holder of the new
/// file, so without it a stale holder could write back an older value. With
/// the check inside, a stale holder never advances the counter, and a token
/// returned is above every token drawn before it.
///
/// The counter is not synced to disk: after a power loss it may come back
/// older, and a protected resource that kept a higher token then rejects
/// the next holders (it never admits a stale one) until the counter passes
/// it.
///
/// # Errors
///
/// An I/O error (of the counter or of `still_held`), or `InvalidData`
/// when the file holds anything but a counter in canonical decimal (it is
/// never reset: a reset would break the order).
pub fn advance_fence_if(
    counter: &File,
    still_held: impl FnOnce() -> io::Result<bool>,
) -> io::Result<Option<u64>> {
    if !counter.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a fencing counter must be a regular file",
        ));
    }
    crate::sys::lock_blocking(counter, crate::LockMode::Exclusive)?;
    let advanced = advance_locked(counter, still_held);
    let unlocked = crate::sys::unlock(counter);
    let advanced = advanced?;
    unlocked?;
    Ok(advanced)
}

/// [`advance_fence_if`]'s work, with the counter file locked.
fn advance_locked(
    counter: &File,
    still_held: impl FnOnce() -> io::Result<bool>,
) -> io::Result<Option<u64>> {
    let mut buf = [0u8; MAX_COUNTER_LEN + 1];
    let len = read_at(counter, &mut buf)?;
    let last = parse_counter(&buf[..len])?;
    if !still_held()? {
        return Ok(None);
    }
    let next = last.checked_add(1).ok_or_else(corrupt)?;
    // The new value is never shorter than the old one (which is canonical):
    // writing it over the start replaces the whole content.
    write_at(counter, format!("{next}\n").as_bytes())?;
    Ok(Some(next))
}

/// The counter in `bytes`: nothing (0), or canonical decimal digits (no
/// leading zero) and an optional newline.
fn parse_counter(bytes: &[u8]) -> io::Result<u64> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let digits = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let canonical = !digits.is_empty()
        && digits.len() < MAX_COUNTER_LEN
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1);
    if !canonical {
        return Err(corrupt());
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(corrupt)
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
            "\n",
            "\n\n",
            "0005\n",
            "5\n\n",
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
    fn a_holder_that_no_longer_holds_leaves_the_counter_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = counter(dir.path(), "7\n");
        assert_eq!(advance_fence_if(&file, || Ok(false)).unwrap(), None);
        assert_eq!(advance_fence_if(&file, || Ok(true)).unwrap(), Some(8));
        let text = std::fs::read_to_string(dir.path().join("c.lock.fence")).unwrap();
        assert_eq!(text, "8\n");
    }

    #[cfg(unix)]
    #[test]
    fn a_holder_whose_lock_file_was_replaced_draws_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lock");
        let lock = crate::Lock::new(&path).flags(crate::LockFlags::EXCLUSIVE);
        let stale = lock.acquire().unwrap();
        assert_eq!(stale.draw_fencing_token().unwrap(), 1);
        std::fs::remove_file(&path).unwrap();
        let newer = lock.acquire().unwrap();
        assert!(matches!(
            stale.draw_fencing_token(),
            Err(crate::Error::Compromised { .. })
        ));
        assert_eq!(newer.draw_fencing_token().unwrap(), 2);
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
