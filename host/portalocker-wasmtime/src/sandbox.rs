//! Confining guest paths to the directories the host granted, and resolving
//! them exactly as the plugin's own file calls do.
//!
//! A guest path reaches `wasi:filesystem` as a grant (a preopen) and a path
//! relative to it, chosen inside the plugin by its C library (wasi-libc, for
//! Rust, C and Python plugins): leading `/` and `./` are stripped from both
//! the path and the grant names, the grant whose name is the longest whole-
//! component prefix wins (the later grant on a tie), and the rest of the
//! path, `..` and all, is resolved by the host through that grant's
//! directory. The lock host does the same: the same string matches the same
//! grant, and the rest is opened with cap-std through the grant's directory
//! handle, which follows `..` and symlinks inside the grant and refuses any
//! that leads out of it. A final symlink is never followed.
//!
//! A path that wasi-libc resolves differently depending on whether the
//! plugin links `chdir` (`./data/x` when `.` and `/data` are both granted)
//! is refused: its file could not be known.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

use crate::error::LockError;

/// The longest guest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Identifies a lock file: device and inode.
pub(crate) type FileKey = (u64, u64);

/// A directory the host granted, seen by the guest at `name`.
#[derive(Debug)]
pub(crate) struct Grant {
    /// The name with leading `/` and `./` stripped, as wasi-libc keeps it.
    prefix: String,
    /// The guest-side name as given.
    name: String,
    /// The directory handle everything is opened through.
    dir: Dir,
}

impl Grant {
    /// Open `host` as a grant seen by the guest at `guest`.
    pub(crate) fn open(host: &Path, guest: &str) -> io::Result<Self> {
        if guest.is_empty() || guest.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a grant's guest name must be a non-empty path: {guest:?}"),
            ));
        }
        let dir = Dir::open_ambient_dir(host, ambient_authority())?;
        Ok(Self {
            prefix: strip_prefixes(guest).to_owned(),
            name: guest.to_owned(),
            dir,
        })
    }

    /// The guest-side name.
    pub(crate) fn guest_name(&self) -> &str {
        &self.name
    }
}

/// wasi-libc's `strip_prefixes`: leading `/`, `./` and a lone `.`.
fn strip_prefixes(mut path: &str) -> &str {
    loop {
        if let Some(rest) = path.strip_prefix('/') {
            path = rest;
        } else if let Some(rest) = path.strip_prefix("./") {
            path = rest;
        } else if path == "." {
            path = "";
        } else {
            return path;
        }
    }
}

/// wasi-libc's `prefix_matches`: `prefix` is a whole-component prefix of
/// `path` (the empty prefix matches every relative path).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() && !path.starts_with('/') {
        return true;
    }
    if !path.as_bytes().starts_with(prefix.as_bytes()) {
        return false;
    }
    let trimmed = prefix.trim_end_matches('/').len();
    matches!(path.as_bytes().get(trimmed), None | Some(b'/'))
}

/// wasi-libc's `__wasilibc_find_abspath`: the grant and the relative path
/// the plugin's file calls use for `path`.
fn find<'g>(grants: &'g [Arc<Grant>], path: &str) -> Option<(&'g Arc<Grant>, String)> {
    let path = path.trim_start_matches('/');
    let mut best: Option<&Arc<Grant>> = None;
    // Later grants win ties, as wasi-libc searches from the last one.
    for grant in grants.iter().rev() {
        let longer = best.is_none_or(|b| grant.prefix.len() > b.prefix.len());
        if longer && prefix_matches(&grant.prefix, path) {
            best = Some(grant);
        }
    }
    let grant = best?;
    let rest = path[grant.prefix.len()..].trim_start_matches('/');
    Some((
        grant,
        if rest.is_empty() {
            ".".into()
        } else {
            rest.into()
        },
    ))
}

/// wasi-libc's `make_absolute` with the working directory at `/` (where a
/// plugin starts): what `find` sees when the plugin links `chdir`.
fn from_root(path: &str) -> String {
    if path.starts_with('/') {
        return path.to_owned();
    }
    if path.is_empty() || path == "." || path == "./" {
        return "/".to_owned();
    }
    format!("/{}", path.strip_prefix("./").unwrap_or(path))
}

/// Where a guest path lives: a grant and a path relative to it.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) grant: Arc<Grant>,
    /// The path relative to the grant, as the plugin's file calls pass it.
    pub(crate) relative: String,
    /// The path as the guest gave it, for messages.
    pub(crate) guest: String,
}

/// Check `path` and find the grant it lies in.
pub(crate) fn resolve(grants: &[Arc<Grant>], path: &str) -> Result<Resolved, LockError> {
    if path.is_empty() {
        return Err(LockError::invalid("the path is empty"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(LockError::invalid(format!(
            "the path is {} bytes long; the limit is {MAX_PATH_LEN}",
            path.len()
        )));
    }
    if path.contains('\0') {
        return Err(LockError::invalid("the path contains a NUL byte"));
    }
    let outside = || {
        LockError::access_denied(format!(
            "{path:?} is not inside a directory the host granted"
        ))
    };
    let plain = find(grants, path);
    let rooted = find(grants, &from_root(path));
    let same = match (&plain, &rooted) {
        (Some((a, ra)), Some((b, rb))) => {
            Arc::ptr_eq(a, b) && strip_prefixes(ra) == strip_prefixes(rb)
        }
        (None, None) => true,
        _ => false,
    };
    if !same {
        return Err(LockError::invalid(format!(
            "{path:?} names different files depending on whether the plugin can change \
             directory; write it without the leading './'"
        )));
    }
    let (grant, relative) = rooted.ok_or_else(outside)?;
    Ok(Resolved {
        grant: Arc::clone(grant),
        relative,
        guest: path.to_owned(),
    })
}

/// The OS options a lock file is opened with: append, create, `0o666 &
/// !umask`, never following a final symlink, never blocking (a FIFO), never
/// taking a controlling terminal.
fn lock_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.append(true).create(true).follow(FollowSymlinks::No);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt;
        options
            .mode(0o666)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    options
}

impl Resolved {
    /// Whether this names the grant itself.
    fn is_grant(&self) -> bool {
        strip_prefixes(&self.relative).is_empty()
    }

    /// Refuse a path that names a granted directory itself.
    pub(crate) fn check_lock_file(&self) -> Result<(), LockError> {
        if self.is_grant() {
            return Err(LockError::invalid(format!(
                "{:?} names a granted directory, not a lock file in it",
                self.guest
            )));
        }
        Ok(())
    }

    /// Open (creating it) the lock file this names: a regular file, never
    /// reached through a symlink out of the grant or a final symlink.
    pub(crate) fn open_lock_file(&self) -> io::Result<File> {
        open_in(&self.grant.dir, &self.relative)
    }

    /// Open the lock file `name` in the directory this names.
    pub(crate) fn open_lock_file_in(&self, name: &str) -> io::Result<File> {
        open_in(&self.grant.dir, &format!("{}/{name}", self.relative))
    }

    /// Open (creating it) the fencing counter beside the lock file this
    /// names (`{path}.fence`, see [`portalocker::fence`]): read-write, never
    /// through a final symlink, never blocking.
    pub(crate) fn open_fence_file(&self) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options
            .read(true)
            .write(true)
            .create(true)
            .follow(FollowSymlinks::No);
        #[cfg(unix)]
        {
            use cap_std::fs::OpenOptionsExt;
            options
                .mode(0o666)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        }
        let name = format!("{}{}", self.relative, portalocker::fence::FENCE_SUFFIX);
        Ok(self.grant.dir.open_with(name, &options)?.into_std())
    }

    /// The file `name` in the directory this names (a semaphore's slot).
    pub(crate) fn child(&self, name: &str) -> Resolved {
        Resolved {
            grant: Arc::clone(&self.grant),
            relative: format!("{}/{name}", self.relative.trim_end_matches('/')),
            guest: format!("{}/{name}", self.guest.trim_end_matches('/')),
        }
    }

    /// Check that this names a directory (through the grant).
    pub(crate) fn check_dir(&self) -> Result<(), LockError> {
        let meta = self
            .grant
            .dir
            .metadata(&self.relative)
            .map_err(|e| LockError::from_io(&self.guest, e))?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(LockError::invalid(format!(
                "{:?} is not a directory",
                self.guest
            )))
        }
    }

    /// Whether this path still names the file whose identity is `key` (not
    /// following a final symlink): `Ok(false)` when it names another file or
    /// nothing (a missing path or a component that is no directory). One
    /// `fstatat` for a name in the grant itself; a longer path is walked
    /// through the grant.
    ///
    /// # Errors
    ///
    /// Any other failure to look (no descriptors left, a directory made
    /// unreadable): it says nothing about the file's name.
    pub(crate) fn names(&self, key: FileKey) -> io::Result<bool> {
        #[cfg(unix)]
        {
            let gone = |e: io::Error| {
                if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) {
                    Ok(false)
                } else {
                    Err(e)
                }
            };
            if self.is_single_name() {
                return fstatat_key(&self.grant.dir, &self.relative)
                    .map_or_else(gone, |named| Ok(named == key));
            }
            use cap_std::fs::MetadataExt;
            match self.grant.dir.symlink_metadata(&self.relative) {
                Ok(meta) => Ok((meta.dev(), meta.ino()) == key),
                Err(e) => gone(e),
            }
        }
        #[cfg(not(unix))]
        {
            // A locked file cannot be unlinked on Windows.
            let _ = key;
            Ok(true)
        }
    }

    /// Whether this is one name in the grant's directory itself (no
    /// directory above it that could be renamed).
    pub(crate) fn is_single_name(&self) -> bool {
        !self.relative.contains('/') && self.relative != "." && self.relative != ".."
    }
}

/// The identity of `name` in `dir` (one component: nothing to escape
/// through), not following a symlink.
#[cfg(unix)]
fn fstatat_key(dir: &Dir, name: &str) -> io::Result<FileKey> {
    use std::os::fd::AsRawFd;
    let name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the name"))?;
    // SAFETY: all-zero bytes are a valid `stat`.
    let mut named: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `named` is a valid out-buffer; the directory descriptor and
    // the C string outlive the call.
    let status = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut named,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(
        clippy::unnecessary_cast,
        reason = "st_dev and st_ino differ in width across platforms"
    )]
    Ok((named.st_dev as u64, named.st_ino as u64))
}

/// Open `relative` in `dir` for locking (see [`lock_file_options`]) and
/// refuse anything but a regular file.
pub(crate) fn open_in(dir: &Dir, relative: &str) -> io::Result<File> {
    let opened = dir.open_with(relative, &lock_file_options());
    match opened {
        Ok(file) => {
            let file = file.into_std();
            let kind = file.metadata()?.file_type();
            if !kind.is_file() {
                return Err(not_regular(&kind));
            }
            Ok(file)
        }
        Err(e) => match dir.symlink_metadata(relative) {
            Ok(meta) if meta.file_type().is_symlink() => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the path is a symbolic link; lock files are never opened through a symlink",
            )),
            Ok(meta) if !meta.is_file() => Err(not_regular(&meta.file_type())),
            _ => Err(e),
        },
    }
}

/// A file type that can say which kind of special file it is.
trait Special {
    /// (directory, FIFO, socket, device)
    fn kinds(&self) -> (bool, bool, bool, bool);
}

impl Special for std::fs::FileType {
    fn kinds(&self) -> (bool, bool, bool, bool) {
        #[cfg(unix)]
        use std::os::unix::fs::FileTypeExt;
        #[cfg(unix)]
        return (
            self.is_dir(),
            self.is_fifo(),
            self.is_socket(),
            self.is_char_device() || self.is_block_device(),
        );
        #[cfg(not(unix))]
        return (self.is_dir(), false, false, false);
    }
}

impl Special for cap_std::fs::FileType {
    fn kinds(&self) -> (bool, bool, bool, bool) {
        #[cfg(unix)]
        use cap_std::fs::FileTypeExt;
        #[cfg(unix)]
        return (
            self.is_dir(),
            self.is_fifo(),
            self.is_socket(),
            self.is_char_device() || self.is_block_device(),
        );
        #[cfg(not(unix))]
        return (self.is_dir(), false, false, false);
    }
}

/// The refusal of a lock file that is not a regular file.
fn not_regular(kind: &impl Special) -> io::Error {
    let what = match kind.kinds() {
        (true, ..) => "a directory",
        (_, true, ..) => "a FIFO",
        (_, _, true, _) => "a socket",
        (.., true) => "a device",
        _ => "not a regular file",
    };
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("the path is {what}; lock files must be regular files"),
    )
}

/// The identity of an open file; `(0, 0)` where the platform gives none
/// (then every release wakes every waiter, which only costs a retry).
pub(crate) fn key_of(file: &File) -> FileKey {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        file.metadata().map_or((0, 0), |m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(dir: &Path, names: &[&str]) -> Vec<Arc<Grant>> {
        names
            .iter()
            .map(|n| Arc::new(Grant::open(dir, n).unwrap()))
            .collect()
    }

    fn resolved(grants: &[Arc<Grant>], path: &str) -> (String, String) {
        let r = resolve(grants, path).unwrap();
        (r.grant.guest_name().to_owned(), r.relative)
    }

    #[test]
    fn rejects_malformed_paths() {
        let dir = tempfile::tempdir().unwrap();
        let grants = grants(dir.path(), &["."]);
        assert!(resolve(&grants, "").is_err());
        assert!(resolve(&grants, "a\0b").is_err());
        assert!(resolve(&grants, &"x".repeat(MAX_PATH_LEN + 1)).is_err());
    }

    #[test]
    fn matches_grants_as_wasi_libc_does() {
        let dir = tempfile::tempdir().unwrap();
        let grants = grants(dir.path(), &[".", "/data", "/data/deep", "./tmp/"]);
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(resolved(&grants, "x.lock"), s(".", "x.lock"));
        // A relative path matches a named grant just like an absolute one.
        assert_eq!(resolved(&grants, "data/m.txt"), s("/data", "m.txt"));
        assert_eq!(resolved(&grants, "/data/m.txt"), s("/data", "m.txt"));
        assert_eq!(resolved(&grants, "//data//m.txt"), s("/data", "m.txt"));
        assert_eq!(resolved(&grants, "/data/deep/y"), s("/data/deep", "y"));
        assert_eq!(resolved(&grants, "/tmp/t"), s("./tmp/", "t"));
        // Whole components only.
        assert_eq!(resolved(&grants, "/database/x"), s(".", "database/x"));
        // `..` is left for the directory to resolve, never lexical.
        assert_eq!(
            resolved(&grants, "/data/lnk/../m2"),
            s("/data", "lnk/../m2")
        );
        assert_eq!(resolved(&grants, "/data"), s("/data", "."));
    }

    #[test]
    fn later_grants_win_ties() {
        let dir = tempfile::tempdir().unwrap();
        let grants = grants(dir.path(), &["/a", "a"]);
        assert_eq!(resolve(&grants, "/a/x").unwrap().grant.guest_name(), "a");
    }

    #[test]
    fn paths_outside_the_grants_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let grants = grants(dir.path(), &["/data"]);
        assert!(resolve(&grants, "/etc/passwd").is_err());
        assert!(resolve(&grants, "x.lock").is_err());
        assert!(resolve(&grants, "/").is_err());
    }

    #[test]
    fn paths_that_depend_on_chdir_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let both = grants(dir.path(), &[".", "/data"]);
        let e = resolve(&both, "./data/m.txt").unwrap_err();
        assert!(e.to_string().contains("leading './'"), "{e}");
        // Unambiguous `./` paths are fine.
        assert_eq!(resolved(&both, "./x"), (".".to_owned(), "x".to_owned()));
        let dot = grants(dir.path(), &["."]);
        assert_eq!(resolved(&dot, "./x"), (".".to_owned(), "x".to_owned()));
    }
}
