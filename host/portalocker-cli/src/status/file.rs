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
    let meta = look(path)?;
    inspect_each(vec![(path.to_owned(), meta)])
        .map(|mut reports| reports.remove(0))
        .map_err(|failed| failed.error)
}

/// The metadata of the lock file at `path`, never following a symlink:
/// `None` when there is no such file.
///
/// # Errors
///
/// When the path is not a regular file, or cannot be inspected.
pub fn look(path: &Path) -> io::Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(meta)),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (lock files are regular files; symlinks are never followed)",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A file that could not be inspected, and why.
#[derive(Debug)]
pub struct Failed {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub error: io::Error,
}

/// Inspect each file [`look`] found (its path and its metadata, `None`
/// where it does not exist), in order. On Linux the lock table and the
/// processes' descriptors are read once for all of them, so a semaphore's
/// thousand slots cost one reading of `/proc`, not a thousand.
///
/// # Errors
///
/// When `/proc/locks` cannot be read (Linux), or a file cannot be opened
/// to try its lock (elsewhere): the first such file.
pub fn inspect_each(
    files: Vec<(PathBuf, Option<fs::Metadata>)>,
) -> Result<Vec<FileReport>, Failed> {
    let mut reports = Vec::with_capacity(files.len());
    let mut present = Vec::new();
    for (path, meta) in files {
        let exists = meta.is_some();
        if let Some(meta) = meta {
            present.push((reports.len(), meta));
        }
        reports.push(FileReport {
            path,
            exists,
            locks: Vec::new(),
            holders: Vec::new(),
            waiting: Vec::new(),
        });
    }
    let found = inspect_present(&reports, &present)?;
    for ((index, _), (locks, holders, waiting)) in present.iter().zip(found) {
        let report = &mut reports[*index];
        report.locks = locks;
        report.holders = holders;
        report.waiting = waiting;
    }
    Ok(reports)
}

type Found = (Vec<LockEntry>, Vec<Process>, Vec<Process>);

/// What holds each present file (`present`: an index into `reports` and
/// the file's metadata), in the order of `present`.
#[cfg(target_os = "linux")]
fn inspect_present(
    reports: &[FileReport],
    present: &[(usize, fs::Metadata)],
) -> Result<Vec<Found>, Failed> {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;

    use super::procfs;

    let Some((first, _)) = present.first() else {
        return Ok(Vec::new());
    };
    let table = procfs::lock_table().map_err(|error| Failed {
        path: reports[*first].path.clone(),
        error,
    })?;
    let locks: Vec<procfs::FileLocks> = present
        .iter()
        .map(|(_, meta)| {
            table
                .get(&procfs::lock_id(meta))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let held: HashSet<(u64, u64)> = present
        .iter()
        .zip(&locks)
        .filter(|(_, found)| !found.held.is_empty())
        .map(|((_, meta), _)| (meta.dev(), meta.ino()))
        .collect();
    let holding = procfs::holding_processes(&held);
    Ok(present
        .iter()
        .zip(locks)
        .map(|((_, meta), found)| {
            let mut pids = holding
                .get(&(meta.dev(), meta.ino()))
                .cloned()
                .unwrap_or_default();
            // A POSIX lock's owner, or a flock holder whose /proc this user
            // may not read: named by /proc/locks itself.
            for pid in found.held.iter().filter_map(|l| l.pid) {
                if !pids.contains(&pid) && fs::metadata(format!("/proc/{pid}")).is_ok() {
                    pids.push(pid);
                }
            }
            pids.sort_unstable();
            let holders = pids.into_iter().map(procfs::process).collect();
            let waiting = found.waiting.into_iter().map(procfs::process).collect();
            (found.held, holders, waiting)
        })
        .collect())
}

/// Whether each present file is held, found by trying its lock without
/// waiting: no PIDs are told.
#[cfg(not(target_os = "linux"))]
fn inspect_present(
    reports: &[FileReport],
    present: &[(usize, fs::Metadata)],
) -> Result<Vec<Found>, Failed> {
    present
        .iter()
        .map(|(index, _)| {
            let path = &reports[*index].path;
            probe(path).map_err(|error| Failed {
                path: path.clone(),
                error,
            })
        })
        .collect()
}

/// Try the lock on `path` without waiting: exclusive, then shared.
#[cfg(not(target_os = "linux"))]
fn probe(path: &Path) -> io::Result<Found> {
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
