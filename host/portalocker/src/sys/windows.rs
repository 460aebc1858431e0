//! Windows: `LockFileEx` through fs4 (whole-file range from byte 0, for both
//! modes), reparse-point refusal, and polling deadline waits.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use crate::flags::LockMode;

const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x0000_0400;
const ERROR_LOCK_VIOLATION: i32 = 33;
const ERROR_SHARING_VIOLATION: i32 = 32;
const ERROR_NOT_LOCKED: i32 = 158;

/// `ERROR_LOCK_VIOLATION` is contention (portalocker's Win32 locker).
pub(super) fn contention_errno(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(ERROR_LOCK_VIOLATION) | Some(ERROR_SHARING_VIOLATION)
    )
}

/// Whether a failed `UnlockFile` only says this handle held no lock:
/// Windows says `ERROR_NOT_LOCKED`, Wine says `ERROR_LOCK_VIOLATION` (an
/// unlock never waits for anyone, so on unlock that error can mean nothing
/// else). portalocker ignores `ERROR_NOT_LOCKED` on unlock too.
pub(super) fn nothing_to_unlock(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(ERROR_NOT_LOCKED) | Some(ERROR_LOCK_VIOLATION)
    )
}

/// Open `path` without following a reparse point (symlink or junction) in
/// the last component; a reparse point or anything but a regular file is
/// refused.
pub(crate) fn open_no_follow(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the path is a reparse point; lock files are never opened through a symlink",
        ));
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the path is not a regular file; lock files must be regular files",
        ));
    }
    Ok(file)
}

/// Windows cannot unlink an open file, so a held handle always names its
/// path; identity checks are not needed (portalocker skips them too).
pub(crate) fn same_file(_file: &File, path: &Path) -> io::Result<bool> {
    Ok(path.exists())
}

/// Whether a failed hard link means "this filesystem has no hard links".
pub(crate) fn hard_links_unsupported(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Unsupported
}

/// Whether an `fsync` failure only says the file cannot be synced.
pub(crate) fn fsync_unsupported(_error: &io::Error) -> bool {
    false
}

/// Windows offers no way to learn a lock holder's PID.
pub(crate) fn holder_pid(_file: &File) -> Option<u32> {
    None
}

/// No interruptible kernel wait is used on Windows: fall back to polling.
pub(crate) fn lock_until_parked(
    _file: &File,
    _mode: LockMode,
    _deadline: Instant,
) -> Option<io::Result<bool>> {
    None
}

/// Close `file`. Windows reports no error from closing a handle.
pub(crate) fn close(file: File) -> io::Result<()> {
    drop(file);
    Ok(())
}
