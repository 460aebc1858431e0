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
    let (program, args) = command.split_first().expect("clap requires a command");
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
    let forwarding = signals::forward_to(child.id());
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

#[cfg(unix)]
mod signals {
    use std::sync::atomic::{AtomicI32, Ordering};

    static CHILD: AtomicI32 = AtomicI32::new(0);
    const FORWARDED: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGHUP];
    const IGNORED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGQUIT];

    extern "C" fn forward(signal: libc::c_int) {
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(child, signal) };
        }
    }

    /// Restores the default dispositions on drop.
    pub struct Forwarding;

    pub fn forward_to(pid: u32) -> Forwarding {
        CHILD.store(i32::try_from(pid).unwrap_or(0), Ordering::SeqCst);
        // SAFETY: installs a handler that only calls kill, and SIG_IGN.
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
    /// Nothing to restore where signals are not forwarded.
    pub struct Forwarding;

    pub fn forward_to(_pid: u32) -> Forwarding {
        Forwarding
    }
}
