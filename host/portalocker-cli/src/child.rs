//! Running the command while the lock is held.

use std::ffi::OsString;
use std::io;
use std::process::Command;

use crate::failure::{Failure, exit};

/// How the command's life is tied to the lock's.
#[derive(Debug, Clone, Copy)]
pub enum Tie {
    /// The command inherits the locked descriptor (file locks and semaphore
    /// slots): the lock lives as long as the command, even if `portalocker`
    /// is killed, as with flock(1).
    #[cfg(unix)]
    Inherit(std::os::fd::RawFd),
    /// The command is sent SIGTERM when `portalocker` dies (Redis locks,
    /// whose connection dies with it). Linux only (a parent-death signal);
    /// elsewhere nothing stops an orphaned command.
    DieWithParent,
}

impl Tie {
    /// The command inherits `file`, the locked descriptor.
    pub fn inherit(file: &std::fs::File) -> Self {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            Tie::Inherit(file.as_raw_fd())
        }
        #[cfg(not(unix))]
        {
            let _ = file;
            Tie::DieWithParent
        }
    }
}

/// Run `command` with `env` added, wait for it, and turn its end into an
/// exit status: its own code, or 128+N when signal N killed it.
///
/// While it runs, SIGTERM and SIGHUP sent to us are passed on to it, and
/// SIGINT and SIGQUIT (which a terminal sends to both) are caught and
/// dropped here, so the lock is not released before the command ends; the
/// command starts with every signal at its default.
///
/// # Errors
///
/// A [`Failure`] with status 127 when the command does not exist, 126 when
/// it cannot be run.
pub fn run(command: &[OsString], env: &[(&str, String)], tie: Tie) -> Result<u8, Failure> {
    run_with(command, env, tie, |_| {})
}

/// [`run`], calling `started` with the command's PID once it runs.
///
/// # Errors
///
/// As [`run`].
pub fn run_with(
    command: &[OsString],
    env: &[(&str, String)],
    tie: Tie,
    started: impl FnOnce(u32),
) -> Result<u8, Failure> {
    let Some((program, args)) = command.split_first() else {
        return Err(Failure::usage("no command to run was given"));
    };
    // Forward from before the spawn: a signal that arrives while the child
    // starts is held and passed on once its PID is known.
    let forwarding = signals::Forwarding::install();
    let mut command = Command::new(program);
    tie_to(&mut command, tie)
        .map_err(|e| Failure::because(exit::CANNOT_RUN, "handing the lock to the command", e))?;
    let mut child = command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .map_err(|e| {
            let code = if e.kind() == io::ErrorKind::NotFound {
                exit::NOT_FOUND
            } else {
                exit::CANNOT_RUN
            };
            Failure::new(
                code,
                format!("cannot run {}: {e}", program.to_string_lossy()),
            )
        })?;
    forwarding.to(child.id());
    started(child.id());
    let status = child.wait();
    drop(forwarding);
    let status = status.map_err(|e| Failure::because(exit::IO, "waiting for the command", e))?;
    if let Some(code) = status.code() {
        return Ok(u8::try_from(code & 0xff).unwrap_or(1));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return Ok(u8::try_from(128 + (signal & 0x7f)).unwrap_or(255));
        }
    }
    Ok(1)
}

/// Arrange `tie` for the child.
fn tie_to(command: &mut Command, tie: Tie) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        match tie {
            Tie::Inherit(fd) => {
                // Cleared here, not between fork and exec: without a
                // pre-exec step the command is started with posix_spawn (a
                // vfork), not a copy of this large process, which is most
                // of a whole `portalocker lock` call. Nothing else is
                // started from this process, and the descriptor is only
                // ever meant for the command.
                // SAFETY: fcntl on a descriptor we own.
                let cleared = unsafe {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    flags >= 0 && libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) >= 0
                };
                if !cleared {
                    return Err(io::Error::last_os_error());
                }
            }
            Tie::DieWithParent => {
                #[cfg(target_os = "linux")]
                {
                    // SAFETY: getpid is async-signal-safe and runs here, in
                    // the parent.
                    let parent = unsafe { libc::getpid() };
                    // SAFETY: prctl, getppid and kill are async-signal-safe.
                    unsafe {
                        command.pre_exec(move || {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                                return Err(io::Error::last_os_error());
                            }
                            // The parent may have died before the signal was
                            // armed.
                            if libc::getppid() != parent {
                                libc::kill(libc::getpid(), libc::SIGTERM);
                            }
                            Ok(())
                        });
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (command, tie);
    Ok(())
}

/// Ask the command to stop (SIGTERM), as when its lock was lost.
pub fn terminate(pid: u32) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    #[cfg(not(unix))]
    let _ = pid;
}

#[cfg(unix)]
mod signals {
    use std::sync::atomic::{AtomicI32, Ordering};

    static CHILD: AtomicI32 = AtomicI32::new(0);
    static PENDING: AtomicI32 = AtomicI32::new(0);
    const FORWARDED: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGHUP];
    const OUTLASTED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGQUIT];

    /// Catches SIGINT and SIGQUIT and does nothing: caught, not ignored
    /// (`SIG_IGN`), because an ignored signal stays ignored across exec,
    /// and the command must get a terminal's Ctrl-C as usual.
    extern "C" fn outlast(_signal: libc::c_int) {}

    extern "C" fn forward(signal: libc::c_int) {
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(child, signal) };
        } else {
            PENDING.store(signal, Ordering::SeqCst);
        }
    }

    /// Forwards SIGTERM and SIGHUP to the child and outlasts SIGINT and
    /// SIGQUIT (the command gets them from the terminal and decides) until
    /// dropped, then restores the defaults.
    pub struct Forwarding;

    impl Forwarding {
        pub fn install() -> Self {
            CHILD.store(0, Ordering::SeqCst);
            PENDING.store(0, Ordering::SeqCst);
            // SAFETY: installs handlers that only call kill, store an
            // atomic, or do nothing.
            unsafe {
                for signal in FORWARDED {
                    libc::signal(
                        signal,
                        forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
                    );
                }
                for signal in OUTLASTED {
                    libc::signal(
                        signal,
                        outlast as extern "C" fn(libc::c_int) as libc::sighandler_t,
                    );
                }
            }
            Forwarding
        }

        /// The child is `pid`: pass on what arrived meanwhile.
        pub fn to(&self, pid: u32) {
            let pid = i32::try_from(pid).unwrap_or(0);
            CHILD.store(pid, Ordering::SeqCst);
            let pending = PENDING.swap(0, Ordering::SeqCst);
            if pending != 0 && pid > 0 {
                // SAFETY: plain kill(2) on our child.
                unsafe { libc::kill(pid, pending) };
            }
        }
    }

    impl Drop for Forwarding {
        fn drop(&mut self) {
            // SAFETY: restores the default dispositions.
            unsafe {
                for signal in FORWARDED.iter().chain(OUTLASTED.iter()) {
                    libc::signal(*signal, libc::SIG_DFL);
                }
            }
            CHILD.store(0, Ordering::SeqCst);
        }
    }
}

#[cfg(not(unix))]
mod signals {
    /// Nothing is forwarded where there are no signals.
    pub struct Forwarding;

    impl Forwarding {
        pub fn install() -> Self {
            Forwarding
        }

        pub fn to(&self, _pid: u32) {}
    }

    impl Drop for Forwarding {
        /// Nothing was installed, so nothing is restored (as on Unix, the
        /// forwarding ends where it is dropped).
        fn drop(&mut self) {}
    }
}
