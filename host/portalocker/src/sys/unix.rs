//! Unix: `flock(2)` through fs4, `O_NOFOLLOW` opens, and deadline waits that
//! park in the kernel and are cut short by a signal at the deadline.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use crate::flags::LockMode;

/// portalocker treats `EACCES` and `EAGAIN` from the lock call as contention.
pub(super) fn contention_errno(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EACCES) | Some(libc::EAGAIN)
    )
}

/// `flock(LOCK_UN)` without a lock succeeds: there is no such error.
pub(super) fn nothing_to_unlock(_error: &io::Error) -> bool {
    false
}

/// Open `path` with `options`, refusing to follow a symlink in the last
/// component and refusing anything but a regular file. New files get
/// `0o666 & !umask`, as `open()` in Python does.
///
/// The open never blocks and never makes a terminal the controlling one
/// (`O_NONBLOCK | O_NOCTTY`): a FIFO or a device planted where a lock file
/// should be is opened without waiting for a peer, found by `fstat` and
/// refused. The returned file is blocking again.
pub(crate) fn open_no_follow(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    options
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .mode(0o666);
    let file = options.open(path).map_err(|error| {
        // Say why when what is there is a symlink or not a regular file (a
        // FIFO without a reader and a socket answer `ENXIO`, a directory
        // `EISDIR`).
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => symlink_refused(),
            Ok(meta) => not_regular(meta.file_type()).unwrap_or(error),
            Err(_) => error,
        }
    })?;
    if let Some(refusal) = not_regular(file.metadata()?.file_type()) {
        return Err(refusal);
    }
    set_blocking(&file)?;
    Ok(file)
}

/// The error for a lock path that is a symlink.
pub(crate) fn symlink_refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the path is a symbolic link; lock files are never opened through a symlink",
    )
}

/// The refusal of a file that is not a regular file (a FIFO, a device, a
/// socket, a directory): locking one could block or touch a device.
pub(crate) fn not_regular(kind: std::fs::FileType) -> Option<io::Error> {
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_file() {
        return None;
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    Some(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("the path is {what}; lock files must be regular files"),
    ))
}

/// Clear `O_NONBLOCK` (set only so the open could not block).
fn set_blocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `path` (not following a final symlink) names the same file as
/// the open handle. A missing path is `false`.
pub(crate) fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let held = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(named) => Ok(held.dev() == named.dev() && held.ino() == named.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a failed `link(2)` means "this filesystem has no hard links".
pub(crate) fn hard_links_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EPERM) | Some(libc::ENOTSUP) | Some(libc::EMLINK)
    ) || error.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// Whether an `fsync` failure only says the file cannot be synced.
pub(crate) fn fsync_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOTSUP)
    )
}

/// The PID holding an exclusive or shared `flock` on `file`, read from
/// `/proc/locks` on Linux. `None` when unknown or not held.
pub(crate) fn holder_pid(file: &File) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let meta = file.metadata().ok()?;
        let id = format!(
            "{:02x}:{:02x}:{}",
            libc::major(meta.dev()),
            libc::minor(meta.dev()),
            meta.ino()
        );
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        let own = std::process::id();
        locks
            .lines()
            .filter(|line| !line.contains("->"))
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id.as_str()))
                    .then(|| fields.get(4)?.parse::<u32>().ok())
                    .flatten()
            })
            .find(|pid| *pid != 0 && *pid != own)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
    }
}

/// Wait for the lock until `deadline`, parked in a blocking `flock` that a
/// signal interrupts at the deadline. `None` when parking is not available
/// (the signal is in use by the application, or this is a forked child).
pub(crate) fn lock_until_parked(
    file: &File,
    mode: LockMode,
    deadline: Instant,
) -> Option<io::Result<bool>> {
    let alarm = alarm::get()?;
    // Unblock first and restore last, so the signal can reach the whole wait.
    let _mask = alarm::SignalUnblocked::new();
    let _registration = alarm.register(deadline);
    loop {
        let result = match mode {
            LockMode::Exclusive => fs4::FileExt::lock(file),
            LockMode::Shared => fs4::FileExt::lock_shared(file),
        };
        match result {
            Ok(()) => return Some(Ok(true)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    return Some(Ok(false));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// A process-wide timer thread that interrupts parked lock waits at their
/// deadline with `SIGURG`.
///
/// `SIGURG` is ignored by default, so a stray one is harmless; the crate
/// installs a no-op handler without `SA_RESTART` (so `flock` returns `EINTR`)
/// only if the application left the signal at its default or ignored. The
/// timer re-sends every millisecond until the waiter deregisters, which
/// closes the window where the signal lands just before `flock` starts.
mod alarm {
    use std::sync::{Condvar, Mutex, OnceLock};
    use std::time::{Duration, Instant};

    const SIGNAL: libc::c_int = libc::SIGURG;
    const RESEND: Duration = Duration::from_millis(1);

    pub(super) struct Alarm {
        pid: u32,
        waiters: Mutex<Waiters>,
        wake: Condvar,
    }

    #[derive(Default)]
    struct Waiters {
        next_id: u64,
        entries: Vec<Entry>,
    }

    struct Entry {
        id: u64,
        thread: libc::pthread_t,
        due: Instant,
    }

    /// Deregisters the waiter on drop.
    pub(super) struct Registration<'a> {
        alarm: &'a Alarm,
        id: u64,
    }

    impl Drop for Registration<'_> {
        fn drop(&mut self) {
            let mut waiters = self.alarm.waiters.lock().unwrap_or_else(|p| p.into_inner());
            waiters.entries.retain(|entry| entry.id != self.id);
        }
    }

    impl Alarm {
        pub(super) fn register(&self, deadline: Instant) -> Registration<'_> {
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            waiters.next_id += 1;
            let id = waiters.next_id;
            // SAFETY: pthread_self has no preconditions.
            let thread = unsafe { libc::pthread_self() };
            waiters.entries.push(Entry {
                id,
                thread,
                due: deadline,
            });
            self.wake.notify_one();
            Registration { alarm: self, id }
        }

        fn run(&self) {
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let now = Instant::now();
                match waiters.entries.iter().map(|e| e.due).min() {
                    None => waiters = self.wake.wait(waiters).unwrap_or_else(|p| p.into_inner()),
                    Some(due) if due > now => {
                        waiters = self
                            .wake
                            .wait_timeout(waiters, due - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    Some(_) => {
                        for entry in waiters.entries.iter_mut().filter(|e| e.due <= now) {
                            // SAFETY: the entry's thread is alive: it removes
                            // its entry under this mutex before it returns.
                            unsafe { libc::pthread_kill(entry.thread, SIGNAL) };
                            entry.due = now + RESEND;
                        }
                    }
                }
            }
        }
    }

    extern "C" fn on_signal(_: libc::c_int) {}

    static ALARM: OnceLock<Option<&'static Alarm>> = OnceLock::new();

    /// The alarm, started on first use; `None` if the signal is taken by the
    /// application or this process is a fork of the one that started it.
    pub(super) fn get() -> Option<&'static Alarm> {
        let alarm = (*ALARM.get_or_init(start))?;
        (alarm.pid == std::process::id()).then_some(alarm)
    }

    fn start() -> Option<&'static Alarm> {
        // SAFETY: sigaction with a zeroed struct queries the current action;
        // the new action is a valid no-op handler.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(SIGNAL, std::ptr::null(), &mut old) != 0 {
                return None;
            }
            let ours = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            if old.sa_sigaction != libc::SIG_DFL
                && old.sa_sigaction != libc::SIG_IGN
                && old.sa_sigaction != ours
            {
                return None;
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = ours;
            libc::sigemptyset(&mut new.sa_mask);
            new.sa_flags = 0;
            if libc::sigaction(SIGNAL, &new, std::ptr::null_mut()) != 0 {
                return None;
            }
        }
        let alarm: &'static Alarm = Box::leak(Box::new(Alarm {
            pid: std::process::id(),
            waiters: Mutex::new(Waiters::default()),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("portalocker-alarm".into())
            .spawn(move || alarm.run())
            .ok()?;
        Some(alarm)
    }

    /// Unblocks the signal in the calling thread for its lifetime.
    pub(super) struct SignalUnblocked {
        previous: libc::sigset_t,
    }

    impl SignalUnblocked {
        pub(super) fn new() -> Self {
            // SAFETY: the sets are initialised by sigemptyset/sigaddset
            // before use and pthread_sigmask writes `previous`.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, SIGNAL);
                let mut previous: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut previous);
                SignalUnblocked { previous }
            }
        }
    }

    impl Drop for SignalUnblocked {
        fn drop(&mut self) {
            // SAFETY: restores the mask saved in `new`.
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
            }
        }
    }
}

/// Close `file`, reporting the error `close(2)` returns (std's `Drop`
/// ignores it).
pub(crate) fn close(file: File) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just taken out of the `File`, so nobody else owns it.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
