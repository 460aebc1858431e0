//! Cheap re-checks that a path still names an open lock file.
//!
//! A lock taken through a descriptor kept from an earlier lock is only worth
//! something if the path still names that file: had the file been unlinked,
//! renamed or replaced meanwhile, another process opening the path would
//! lock a different file. Checking with a path lookup costs about a
//! microsecond on a virtual machine, more than the lock itself. On Linux a
//! [`NameWatch`] asks inotify to report anything that changes the file's
//! names (its link count, a rename of it, a rename over it), so once a full
//! lookup has said "still named", later checks cost one `FIONREAD` on a
//! process-wide inotify descriptor for as long as nothing happened. The
//! kernel queues those events before the call that caused them returns, so
//! a check made after taking the lock sees every change made before it.

use std::fs::File;
use std::io;

/// Watches one open lock file so that re-checking "does the path still name
/// it?" costs one cheap system call while nothing touches the file's names.
///
/// Hand [`NameWatch::still_named`] the full check (a path lookup comparing
/// identities); it runs it only when it must: at the first two checks, and
/// after any event on the file (an unlink, a rename of or over it, a
/// `chmod`), an overflow of the event queue, or where the platform cannot
/// watch (not Linux, no `/proc`, the user's inotify limits reached). Watching
/// starts at the second check, so a descriptor used for one lock costs no
/// watch. The watch covers the file itself, not the directories above it:
/// use it for a file named directly in a directory you hold open, and check
/// longer paths in full.
///
/// ```
/// # #[cfg(unix)] {
/// use std::os::unix::fs::MetadataExt;
/// use portalocker::NameWatch;
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("watched.lock");
/// let file = std::fs::File::create(&path)?;
/// let identity = |m: std::fs::Metadata| (m.dev(), m.ino());
/// let full = || match std::fs::symlink_metadata(&path) {
///     Ok(named) => Ok(identity(named) == identity(file.metadata()?)),
///     Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
///     Err(e) => Err(e),
/// };
/// let mut watch = NameWatch::new();
/// assert!(watch.still_named(&file, full)?);
/// assert!(watch.still_named(&file, full)?); // now watched
/// assert!(watch.still_named(&file, full)?); // one FIONREAD on Linux
/// std::fs::remove_file(&path)?;
/// assert!(!watch.still_named(&file, full)?);
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct NameWatch {
    checks: u32,
    #[cfg(target_os = "linux")]
    watch: Option<linux::Registered>,
}

impl NameWatch {
    /// A watch that has not looked at any file yet (no system call).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the path still names `file`: `Ok(true)` at once when nothing
    /// has happened to the file's names since `full` last said so, else the
    /// answer of `full`. Always pass the same `file`.
    ///
    /// # Errors
    ///
    /// What `full` returns, or a failure to read the inotify queue.
    pub fn still_named(
        &mut self,
        file: &File,
        full: impl FnOnce() -> io::Result<bool>,
    ) -> io::Result<bool> {
        self.checks = self.checks.saturating_add(1);
        #[cfg(target_os = "linux")]
        {
            if self.watch.is_none() && self.checks >= 2 {
                self.watch = linux::Registered::new(file);
            }
            if let Some(watch) = &mut self.watch {
                return watch.still_named(full);
            }
        }
        let _ = file;
        full()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::ffi::CString;
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::{Mutex, MutexGuard, OnceLock};

    /// The events that change what names a file: its link count (an unlink,
    /// a rename over it; also `chmod` and the like, which only cost a full
    /// check), a rename of it, its deletion.
    const MASK: u32 = libc::IN_ATTRIB | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF;

    /// The process-wide inotify instance (users get 128 by default, so one
    /// per process, not one per plugin).
    struct Inotify {
        fd: OwnedFd,
        watches: Mutex<HashMap<RawFd, Watch>>,
    }

    /// One watched inode: how many [`Registered`] share it and how many
    /// events it had.
    struct Watch {
        refs: usize,
        events: u64,
        /// False once the kernel dropped the watch (`IN_IGNORED`).
        alive: bool,
    }

    /// Set in a child forked after the instance was made: the child shares
    /// the parent's inotify queue, so neither could trust its reading of it.
    /// The child checks in full and leaves the parent's watches alone.
    static FORKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    extern "C" fn forked() {
        FORKED.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn inotify() -> Option<&'static Inotify> {
        static INOTIFY: OnceLock<Option<Inotify>> = OnceLock::new();
        if FORKED.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        INOTIFY
            .get_or_init(|| {
                // SAFETY: registers a child handler that only stores an
                // atomic; `forked` lives as long as the program.
                if unsafe { libc::pthread_atfork(None, None, Some(forked)) } != 0 {
                    return None;
                }
                // SAFETY: no pointers; the result is checked.
                let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
                (fd >= 0).then(|| Inotify {
                    // SAFETY: a descriptor we just opened and own.
                    fd: unsafe { OwnedFd::from_raw_fd(fd) },
                    watches: Mutex::new(HashMap::new()),
                })
            })
            .as_ref()
    }

    impl Inotify {
        fn watches(&self) -> MutexGuard<'_, HashMap<RawFd, Watch>> {
            self.watches.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Whether events are queued.
        fn pending(&self) -> io::Result<bool> {
            let mut bytes: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int through the valid pointer.
            let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::FIONREAD, &mut bytes) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(bytes > 0)
        }

        /// Read every queued event and count it against its watch.
        fn drain(&self, watches: &mut HashMap<RawFd, Watch>) -> io::Result<()> {
            #[repr(C, align(8))]
            struct Buffer([u8; 4096]);
            let mut buffer = Buffer([0; 4096]);
            loop {
                // SAFETY: reads at most the buffer's length into it.
                let n = unsafe {
                    libc::read(
                        self.fd.as_raw_fd(),
                        buffer.0.as_mut_ptr().cast(),
                        buffer.0.len(),
                    )
                };
                if n < 0 {
                    let error = io::Error::last_os_error();
                    match error.kind() {
                        io::ErrorKind::WouldBlock => return Ok(()),
                        io::ErrorKind::Interrupted => continue,
                        _ => return Err(error),
                    }
                }
                let n = usize::try_from(n).unwrap_or(0);
                let header = std::mem::size_of::<libc::inotify_event>();
                let mut at = 0;
                while at + header <= n {
                    // SAFETY: the kernel wrote a whole event header here;
                    // read_unaligned needs no alignment.
                    let event: libc::inotify_event =
                        unsafe { std::ptr::read_unaligned(buffer.0.as_ptr().add(at).cast()) };
                    at += header + event.len as usize;
                    if event.mask & libc::IN_Q_OVERFLOW != 0 {
                        // Events were lost: distrust every watch once.
                        for watch in watches.values_mut() {
                            watch.events += 1;
                        }
                    } else if let Some(watch) = watches.get_mut(&event.wd) {
                        watch.events += 1;
                        if event.mask & libc::IN_IGNORED != 0 {
                            watch.alive = false;
                        }
                    }
                }
            }
        }
    }

    /// A reference to the watch on one file, dropped with its last user.
    #[derive(Debug)]
    pub(super) struct Registered {
        wd: RawFd,
        /// The watch's event count when a full check last said "named",
        /// or `u64::MAX` before the first.
        seen: u64,
    }

    impl Registered {
        /// Watch `file` (through `/proc/self/fd`, so the open file itself,
        /// whatever its path is now); `None` where that is impossible.
        pub(super) fn new(file: &File) -> Option<Self> {
            let inotify = inotify()?;
            let path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
            let mut watches = inotify.watches();
            // SAFETY: a valid C string and our descriptor.
            let wd =
                unsafe { libc::inotify_add_watch(inotify.fd.as_raw_fd(), path.as_ptr(), MASK) };
            if wd < 0 {
                return None;
            }
            let watch = watches.entry(wd).or_insert(Watch {
                refs: 0,
                events: 0,
                alive: true,
            });
            watch.refs += 1;
            Some(Self { wd, seen: u64::MAX })
        }

        pub(super) fn still_named(
            &mut self,
            full: impl FnOnce() -> io::Result<bool>,
        ) -> io::Result<bool> {
            let Some(inotify) = inotify() else {
                return full();
            };
            let pending = inotify.pending()?;
            let events = {
                let mut watches = inotify.watches();
                if pending {
                    inotify.drain(&mut watches)?;
                }
                match watches.get(&self.wd) {
                    Some(watch) if watch.alive => watch.events,
                    _ => return full(),
                }
            };
            if events == self.seen {
                return Ok(true);
            }
            // Events counted after `events` was read make the next check
            // a full one again.
            let named = full()?;
            if named {
                self.seen = events;
            }
            Ok(named)
        }
    }

    impl Drop for Registered {
        fn drop(&mut self) {
            let Some(inotify) = inotify() else {
                return;
            };
            let mut watches = inotify.watches();
            let Some(watch) = watches.get_mut(&self.wd) else {
                return;
            };
            watch.refs -= 1;
            if watch.refs == 0 {
                watches.remove(&self.wd);
                // SAFETY: plain integers; an already dropped watch only
                // gives EINVAL.
                unsafe { libc::inotify_rm_watch(inotify.fd.as_raw_fd(), self.wd) };
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::cell::Cell;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use super::*;

    /// A full check of `path` against `file` that counts its calls.
    fn full<'a>(
        file: &'a File,
        path: &'a Path,
        calls: &'a Cell<u32>,
    ) -> impl FnOnce() -> io::Result<bool> + 'a {
        move || {
            calls.set(calls.get() + 1);
            let ours = file.metadata()?;
            Ok(std::fs::symlink_metadata(path)
                .is_ok_and(|m| (m.dev(), m.ino()) == (ours.dev(), ours.ino())))
        }
    }

    /// Watch `path` until checks are cheap; returns the file, the watch and
    /// the full-check counter.
    fn watched(path: &Path) -> (File, NameWatch, Cell<u32>) {
        let file = File::create(path).unwrap();
        let mut watch = NameWatch::new();
        let calls = Cell::new(0);
        for _ in 0..3 {
            assert!(watch.still_named(&file, full(&file, path, &calls)).unwrap());
        }
        (file, watch, calls)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn quiet_files_are_checked_without_a_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quiet.lock");
        let (file, mut watch, calls) = watched(&path);
        assert_eq!(calls.get(), 2, "the first two checks are full ones");
        for _ in 0..100 {
            assert!(
                watch
                    .still_named(&file, full(&file, &path, &calls))
                    .unwrap()
            );
        }
        assert_eq!(calls.get(), 2, "then nothing happened: no lookup");
        // Writing to the file is not a change of its names.
        std::io::Write::write_all(&mut &file, b"12345\n").unwrap();
        assert!(
            watch
                .still_named(&file, full(&file, &path, &calls))
                .unwrap()
        );
        assert_eq!(calls.get(), 2);
    }

    /// A forked child shares the parent's inotify queue: it must check in
    /// full (its reading of the queue would steal the parent's events), and
    /// leave the parent's watches in place.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_forked_child_checks_in_full_and_leaves_the_parent_watching() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forked.lock");
        let (file, mut watch, calls) = watched(&path);
        // SAFETY: the child only runs still_named (no lock is taken on the
        // path it uses once forked) and exits without unwinding.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            // The full check answers "not named": only it can say so.
            let answer = watch.still_named(&file, || Ok(false));
            drop(watch);
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(i32::from(!matches!(answer, Ok(false)))) };
        }
        let mut status = 0;
        // SAFETY: waits for the child we forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child trusted the shared queue (status {status})"
        );
        let before = calls.get();
        assert!(
            watch
                .still_named(&file, full(&file, &path, &calls))
                .unwrap()
        );
        assert_eq!(calls.get(), before, "the parent still watches");
        std::fs::remove_file(&path).unwrap();
        assert!(
            !watch
                .still_named(&file, full(&file, &path, &calls))
                .unwrap()
        );
    }

    #[test]
    fn every_change_of_names_is_seen() {
        type Change = fn(&Path, &Path);
        let changes: [(&str, Change, bool); 6] = [
            ("unlinked", |p, _| std::fs::remove_file(p).unwrap(), false),
            (
                "renamed away",
                |p, other| std::fs::rename(p, other).unwrap(),
                false,
            ),
            (
                "replaced by a rename over it",
                |p, other| {
                    std::fs::write(other, b"").unwrap();
                    std::fs::rename(other, p).unwrap();
                },
                false,
            ),
            (
                "unlinked and created again",
                |p, _| {
                    std::fs::remove_file(p).unwrap();
                    File::create(p).unwrap();
                },
                false,
            ),
            (
                "given a second name",
                |p, other| std::fs::hard_link(p, other).unwrap(),
                true,
            ),
            (
                "chmodded",
                |p, _| {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
                },
                true,
            ),
        ];
        for (what, change, named) in changes {
            let dir = tempfile::tempdir().unwrap();
            let (path, other) = (dir.path().join("x.lock"), dir.path().join("other"));
            let (file, mut watch, calls) = watched(&path);
            let before = calls.get();
            change(&path, &other);
            assert_eq!(
                watch
                    .still_named(&file, full(&file, &path, &calls))
                    .unwrap(),
                named,
                "{what}"
            );
            assert_eq!(calls.get(), before + 1, "{what}: checked in full");
            if named {
                // Verified again: quiet checks are cheap once more.
                assert!(
                    watch
                        .still_named(&file, full(&file, &path, &calls))
                        .unwrap()
                );
                #[cfg(target_os = "linux")]
                assert_eq!(calls.get(), before + 1, "{what}");
            }
        }
    }

    #[test]
    fn watches_on_one_file_are_shared_and_outlive_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.lock");
        let (file, mut first, calls) = watched(&path);
        let again = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let other_calls = Cell::new(0);
        let mut second = NameWatch::new();
        for _ in 0..3 {
            assert!(
                second
                    .still_named(&again, full(&again, &path, &other_calls))
                    .unwrap()
            );
        }
        // Dropping one watch leaves the other watching.
        drop(second);
        drop(again);
        let before = calls.get();
        assert!(
            first
                .still_named(&file, full(&file, &path, &calls))
                .unwrap()
        );
        std::fs::remove_file(&path).unwrap();
        assert!(
            !first
                .still_named(&file, full(&file, &path, &calls))
                .unwrap()
        );
        assert!(calls.get() > before);
    }
}
