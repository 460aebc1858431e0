//! The state of one lock file: free, or held exclusive or shared, by which
//! processes, and who waits. On Linux from `/proc`, without touching the
//! lock; elsewhere by trying the lock without waiting (which holds it for
//! an instant, and tells no PIDs).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// How a lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `flock(2)`: portalocker's, Python's portalocker's, flock(1)'s.
    #[cfg(target_os = "linux")]
    Flock,
    /// `fcntl(2)` record lock, owned by a process.
    #[cfg(target_os = "linux")]
    Posix,
    /// `fcntl(2)` open-file-description lock, owned by no process.
    #[cfg(target_os = "linux")]
    Ofd,
    /// Found by trying the lock (no kind is told): not on Linux.
    #[cfg(not(target_os = "linux"))]
    Probed,
}

impl Kind {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            #[cfg(target_os = "linux")]
            Kind::Flock => "flock",
            #[cfg(target_os = "linux")]
            Kind::Posix => "posix",
            #[cfg(target_os = "linux")]
            Kind::Ofd => "ofd",
            #[cfg(not(target_os = "linux"))]
            Kind::Probed => "probed",
        }
    }
}

/// One granted lock on the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    /// How it was taken.
    pub kind: Kind,
    /// Exclusive (write) or shared (read).
    pub exclusive: bool,
    /// The PID that took it, where told.
    pub pid: Option<u32>,
}

/// A process that holds the lock (or waits for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Its PID.
    pub pid: u32,
    /// Its command name, while it runs.
    pub command: Option<String>,
    /// When it started (seconds since the epoch): the lock is no older.
    pub started_unix: Option<u64>,
}

/// What `status PATH` found.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The path asked about.
    pub path: PathBuf,
    /// Whether the file exists (a missing lock file is free).
    pub exists: bool,
    /// The granted locks.
    pub locks: Vec<LockEntry>,
    /// The processes holding them.
    pub holders: Vec<Process>,
    /// The processes blocked waiting for the lock.
    pub waiting: Vec<Process>,
}

impl FileReport {
    /// Whether anyone holds the lock.
    pub fn is_held(&self) -> bool {
        !self.locks.is_empty()
    }

    /// `free`, `exclusive` or `shared`.
    pub fn state(&self) -> &'static str {
        if self.locks.iter().any(|l| l.exclusive) {
            "exclusive"
        } else if self.is_held() {
            "shared"
        } else {
            "free"
        }
    }
}

/// Inspect the lock file at `path` (never following a symlink, never
/// creating it).
///
/// # Errors
///
/// When the path is not a regular file, or cannot be inspected.
pub fn inspect(path: &Path) -> io::Result<FileReport> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(FileReport {
                path: path.to_owned(),
                exists: false,
                locks: Vec::new(),
                holders: Vec::new(),
                waiting: Vec::new(),
            });
        }
        Err(e) => return Err(e),
    };
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (lock files are regular files; symlinks are never followed)",
        ));
    }
    let (locks, holders, waiting) = inspect_present(path, &meta)?;
    Ok(FileReport {
        path: path.to_owned(),
        exists: true,
        locks,
        holders,
        waiting,
    })
}

type Found = (Vec<LockEntry>, Vec<Process>, Vec<Process>);

#[cfg(target_os = "linux")]
fn inspect_present(_path: &Path, meta: &fs::Metadata) -> io::Result<Found> {
    use super::procfs;
    let (locks, waiting) = procfs::locks(meta)?;
    let mut pids = if locks.is_empty() {
        Vec::new()
    } else {
        procfs::holding_processes(meta)
    };
    // A POSIX lock's owner, or a flock holder whose /proc this user may
    // not read: named by /proc/locks itself.
    for pid in locks.iter().filter_map(|l| l.pid) {
        if !pids.contains(&pid) && fs::metadata(format!("/proc/{pid}")).is_ok() {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    let holders = pids.into_iter().map(procfs::process).collect();
    let waiting = waiting.into_iter().map(procfs::process).collect();
    Ok((locks, holders, waiting))
}

#[cfg(not(target_os = "linux"))]
fn inspect_present(path: &Path, _meta: &fs::Metadata) -> io::Result<Found> {
    use portalocker::{LockFlags, lock, unlock};
    let file = fs::File::open(path)?;
    let try_lock = |flags: LockFlags| match lock(&file, flags | LockFlags::NON_BLOCKING) {
        Ok(()) => {
            unlock(&file).map_err(io::Error::other)?;
            Ok(true)
        }
        Err(e) if e.is_contention() => Ok(false),
        Err(e) => Err(io::Error::other(e)),
    };
    let locks = if try_lock(LockFlags::EXCLUSIVE)? {
        Vec::new()
    } else {
        let exclusive = !try_lock(LockFlags::SHARED)?;
        vec![LockEntry {
            kind: Kind::Probed,
            exclusive,
            pid: None,
        }]
    };
    Ok((locks, Vec::new(), Vec::new()))
}
