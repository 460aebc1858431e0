//! Confining guest paths to the directories the host granted.
//!
//! A guest path is first checked and normalised lexically (no NUL, not
//! empty, not over-long, no `..` above its root), then matched against the
//! grants the way WASI preopens are matched (the longest guest prefix wins;
//! `.` matches relative paths), and finally opened through the grant's
//! directory handle with cap-std, which refuses `..` and symlinks that lead
//! out of it. The last component is never followed if it is a symlink.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

use crate::error::LockError;
use crate::wake::FileKey;

/// The longest guest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// A directory the host granted, seen by the guest at `guest`.
#[derive(Debug)]
pub(crate) struct Grant {
    /// The guest-side prefix, normalised: components, absolute or not.
    prefix: GuestPath,
    /// The guest-side name as given.
    name: String,
    /// The directory handle everything is opened through.
    dir: Dir,
}

/// A normalised guest path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GuestPath {
    absolute: bool,
    components: Vec<String>,
}

impl GuestPath {
    /// Check and normalise `path` lexically.
    pub(crate) fn parse(path: &str) -> Result<Self, LockError> {
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
        let absolute = path.starts_with('/');
        let mut components: Vec<String> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if components.pop().is_none() {
                        return Err(LockError::access_denied(format!(
                            "{path:?} climbs out of its root with '..'"
                        )));
                    }
                }
                name => components.push(name.to_owned()),
            }
        }
        Ok(Self {
            absolute,
            components,
        })
    }

    /// If `self` lies under `prefix`, the rest of it.
    fn strip(&self, prefix: &GuestPath) -> Option<&[String]> {
        (self.absolute == prefix.absolute && self.components.starts_with(&prefix.components))
            .then(|| &self.components[prefix.components.len()..])
    }
}

impl Grant {
    /// Open `host` as a grant seen by the guest at `guest`.
    pub(crate) fn open(host: &Path, guest: &str) -> io::Result<Self> {
        let prefix = GuestPath::parse(guest)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let dir = Dir::open_ambient_dir(host, ambient_authority())?;
        Ok(Self {
            prefix,
            name: guest.to_owned(),
            dir,
        })
    }

    /// The guest-side name.
    pub(crate) fn guest_name(&self) -> &str {
        &self.name
    }
}

/// Where a guest path lives: a grant and a path relative to it.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) grant: Arc<Grant>,
    pub(crate) relative: PathBuf,
    /// The path as the guest gave it, for messages.
    pub(crate) guest: String,
    /// `relative` for system calls (`None` if it cannot be one).
    #[cfg(unix)]
    relative_c: Option<std::ffi::CString>,
}

/// Find the grant `path` lies in (the longest matching prefix).
pub(crate) fn resolve(grants: &[Arc<Grant>], path: &str) -> Result<Resolved, LockError> {
    let parsed = GuestPath::parse(path)?;
    let (grant, rest) = grants
        .iter()
        .filter_map(|grant| parsed.strip(&grant.prefix).map(|rest| (grant, rest)))
        .max_by_key(|(grant, _)| grant.prefix.components.len())
        .ok_or_else(|| {
            LockError::access_denied(format!(
                "{path:?} is not inside a directory the host granted"
            ))
        })?;
    let relative: PathBuf = rest.iter().collect();
    Ok(Resolved {
        grant: Arc::clone(grant),
        #[cfg(unix)]
        relative_c: {
            use std::os::unix::ffi::OsStrExt;
            std::ffi::CString::new(relative.as_os_str().as_bytes()).ok()
        },
        relative,
        guest: path.to_owned(),
    })
}

impl Resolved {
    /// Open (creating it) the lock file this names, never through a symlink.
    pub(crate) fn open_lock_file(&self) -> Result<File, LockError> {
        if self.relative.as_os_str().is_empty() {
            return Err(LockError::invalid(format!(
                "{:?} names a granted directory, not a lock file in it",
                self.guest
            )));
        }
        open_in(&self.grant.dir, &self.relative).map_err(|e| LockError::from_io(&self.guest, e))
    }

    /// Whether this path still names the file whose identity is `key` (not
    /// following a final symlink). One `fstatat`; nothing is opened.
    pub(crate) fn names(&self, key: FileKey) -> bool {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let Some(relative) = &self.relative_c else {
                return false;
            };
            // SAFETY: all-zero bytes are a valid `stat`.
            let mut named: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: `named` is a valid out-buffer; the directory descriptor
            // and the C string outlive the call.
            let status = unsafe {
                libc::fstatat(
                    self.grant.dir.as_raw_fd(),
                    relative.as_ptr(),
                    &mut named,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            #[allow(
                clippy::unnecessary_cast,
                reason = "st_dev and st_ino differ in width across platforms"
            )]
            let named_key = (named.st_dev as u64, named.st_ino as u64);
            status == 0 && named_key == key
        }
        #[cfg(not(unix))]
        {
            // A locked file cannot be unlinked on Windows.
            let _ = key;
            true
        }
    }

    /// Open the directory this names (the grant itself when empty).
    pub(crate) fn open_dir(&self) -> Result<Dir, LockError> {
        let opened = if self.relative.as_os_str().is_empty() {
            self.grant.dir.try_clone()
        } else {
            self.grant.dir.open_dir(&self.relative)
        };
        opened.map_err(|e| LockError::from_io(&self.guest, e))
    }
}

/// Open `relative` in `dir` for locking: append, create, `0o666 & !umask`,
/// never following a final symlink.
pub(crate) fn open_in(dir: &Dir, relative: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true).follow(FollowSymlinks::No);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt;
        options.mode(0o666);
    }
    match dir.open_with(relative, &options) {
        Ok(file) => Ok(file.into_std()),
        Err(e) => {
            let is_link = dir
                .symlink_metadata(relative)
                .is_ok_and(|m| m.file_type().is_symlink());
            if is_link {
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the path is a symbolic link; lock files are never opened through a symlink",
                ))
            } else {
                Err(e)
            }
        }
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

    #[test]
    fn parses_and_normalises() {
        let p = GuestPath::parse("/a/./b//c/../d").unwrap();
        assert!(p.absolute);
        assert_eq!(p.components, ["a", "b", "d"]);
        assert!(GuestPath::parse("").is_err());
        assert!(GuestPath::parse("a\0b").is_err());
        assert!(GuestPath::parse("../x").is_err());
        assert!(GuestPath::parse("/..").is_err());
        assert!(GuestPath::parse("a/../../x").is_err());
        assert!(GuestPath::parse(&"x".repeat(MAX_PATH_LEN + 1)).is_err());
    }

    #[test]
    fn resolves_by_longest_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let grants = grants(dir.path(), &[".", "/data", "/data/deep"]);
        let r = resolve(&grants, "x.lock").unwrap();
        assert_eq!(r.grant.guest_name(), ".");
        assert_eq!(r.relative, PathBuf::from("x.lock"));
        let r = resolve(&grants, "/data/deep/y.lock").unwrap();
        assert_eq!(r.grant.guest_name(), "/data/deep");
        assert_eq!(r.relative, PathBuf::from("y.lock"));
        let r = resolve(&grants, "/data/z/../w.lock").unwrap();
        assert_eq!(r.grant.guest_name(), "/data");
        assert_eq!(r.relative, PathBuf::from("w.lock"));
        assert!(resolve(&grants, "/etc/passwd").is_err());
        assert!(resolve(&grants, "/data/../etc/passwd").is_err());
    }

    #[test]
    fn absolute_paths_need_an_absolute_grant() {
        let dir = tempfile::tempdir().unwrap();
        let grants = grants(dir.path(), &["."]);
        assert!(resolve(&grants, "/x.lock").is_err());
    }
}
