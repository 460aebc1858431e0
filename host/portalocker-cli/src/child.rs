//! Running the command while the lock is held.

use std::ffi::OsString;
use std::io;
use std::process::Command;

use crate::commands::Failure;

/// Run `command` with `env` added, wait for it, and turn its end into an
/// exit status: its own code, or 128+N when signal N killed it.
///
/// While it runs, SIGTERM and SIGHUP sent to us are passed on to it, and
/// SIGINT and SIGQUIT (which a terminal sends to both) are ignored here, so
/// the lock is not released before the command ends.
///
/// # Errors
///
/// A [`Failure`] with status 127 when the command does not exist, 126 when
/// it cannot be run.
pub fn run(command: &[OsString], env: &[(&str, String)]) -> Result<u8, Failure> {
    run_with(command, env, |_| {})
}

/// [`run`], calling `started` with the command's PID once it runs.
///
/// # Errors
///
/// As [`run`].
pub fn run_with(
    command: &[OsString],
    env: &[(&str, String)],
    started: impl FnOnce(u32),
) -> Result<u8, Failure> {
    let (program, args) = command.split_first().expect("clap requires a command");
    // Forward from before the spawn: a signal that arrives while the child
    // starts is held and passed on once its PID is known.
    let forwarding = signals::Forwarding::install();
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .map_err(|e| {
            let code = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            Failure {
                code,
                message: format!("cannot run {}: {e}", program.to_string_lossy()),
            }
        })?;
    forwarding.to(child.id());
    started(child.id());
    let status = child.wait();
    drop(forwarding);
    let status = status.map_err(|e| Failure {
        code: 74,
        message: format!("waiting for the command failed: {e}"),
    })?;
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
    const IGNORED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGQUIT];

    extern "C" fn forward(signal: libc::c_int) {
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(child, signal) };
        } else {
            PENDING.store(signal, Ordering::SeqCst);
        }
    }

    /// Forwards SIGTERM and SIGHUP to the child and ignores SIGINT and
    /// SIGQUIT until dropped, then restores the defaults.
    pub struct Forwarding;

    impl Forwarding {
        pub fn install() -> Self {
            CHILD.store(0, Ordering::SeqCst);
            PENDING.store(0, Ordering::SeqCst);
            // SAFETY: installs a handler that only calls kill or stores an
            // atomic, and SIG_IGN.
            unsafe {
                for signal in FORWARDED {
                    libc::signal(
                        signal,
                        forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
                    );
                }
                for signal in IGNORED {
                    libc::signal(signal, libc::SIG_IGN);
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
                for signal in FORWARDED.iter().chain(IGNORED.iter()) {
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
}
