//! `portalocker lock`: run a command holding a file lock, flock(1)-style.

use portalocker::{Error, FileMode, Lock, LockGuard, LockMode};

use crate::args::LockArgs;
use crate::child::{self, Tie};
use crate::failure::Failure;
use crate::wait::{announced, holder_of};

/// Take the lock (waiting as asked), run the command, release.
///
/// # Errors
///
/// A [`Failure`] when the lock cannot be taken or the command not run.
pub fn run(args: LockArgs) -> Result<u8, Failure> {
    let kind = if args.shared { "shared" } else { "exclusive" };
    let what = format!("{kind} lock on {}", args.path.display());
    let guard: LockGuard = if args.path.is_dir() {
        lock_directory(&args, &what)?
    } else {
        let mut lock = Lock::new(&args.path).mode(FileMode::Append);
        if args.shared {
            lock = lock.shared();
        }
        announced(
            &args.wait,
            &what,
            |wait| lock.clone().wait(wait).acquire(),
            || holder_of(lock.path()).map(|pid| pid.to_string()),
        )?
    };
    let status = child::run(&args.command, &[], Tie::inherit(guard.file()));
    drop(guard);
    status
}

/// flock(1) also locks a directory: open it (only a directory, so the open
/// cannot block) and lock it like a lock file.
fn lock_directory(args: &LockArgs, what: &str) -> Result<LockGuard, Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_DIRECTORY | libc::O_NOCTTY);
    }
    let mode = if args.shared {
        LockMode::Shared
    } else {
        LockMode::Exclusive
    };
    announced(
        &args.wait,
        what,
        |wait| {
            let dir = options.open(&args.path).map_err(|e| Error::Io {
                op: "open",
                path: Some(args.path.clone()),
                source: e,
            })?;
            LockGuard::lock_file(dir, &args.path, mode, wait)
        },
        || holder_of(&args.path).map(|pid| pid.to_string()),
    )
}
