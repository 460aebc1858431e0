//! Waiting for a lock from the command line: once quietly, then saying on
//! stderr what we wait for and who holds it; and the exit status of a
//! library error.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use portalocker::{Error, Wait};

use crate::args::WaitArgs;
use crate::failure::{Failure, exit};

/// How long a wait stays silent before saying what it waits for.
const QUIET_WAIT: Duration = Duration::from_millis(300);

/// Acquire through `attempt`, given how long it may wait: first for a
/// moment, silently; then, still held, say what we wait for (and who holds
/// it, from `holders`) and wait the rest.
///
/// # Errors
///
/// The [`Failure`] for the error the last attempt returned (see
/// [`failure`]); a timeout is reported for the whole wait.
pub fn announced<T>(
    args: &WaitArgs,
    what: &str,
    attempt: impl Fn(Wait) -> portalocker::Result<T>,
    holders: impl Fn() -> Option<String>,
) -> Result<T, Failure> {
    let limit = if args.nonblock {
        Some(Duration::ZERO)
    } else {
        args.timeout
    };
    let started = Instant::now();
    let first = limit.map_or(QUIET_WAIT, |limit| limit.min(QUIET_WAIT));
    match attempt(Wait::up_to(first)) {
        Ok(held) => return Ok(held),
        Err(e) if e.is_contention() && limit.is_none_or(|limit| limit > first) => {}
        Err(e) => return Err(failure(args, e)),
    }
    if !args.quiet {
        let holder = holders()
            .map(|h| format!(" (held by PID {h})"))
            .unwrap_or_default();
        eprintln!("portalocker: waiting for {what}{holder}");
    }
    let rest = match limit {
        Some(limit) => Wait::up_to(limit.saturating_sub(started.elapsed())),
        None => Wait::FOREVER,
    };
    attempt(rest).map_err(|e| match (e, limit) {
        // Report the whole wait, not just its last stretch.
        (
            Error::TimedOut {
                path, holder_pid, ..
            },
            Some(timeout),
        ) => failure(
            args,
            Error::TimedOut {
                path,
                timeout,
                holder_pid,
            },
        ),
        (e, _) => failure(args, e),
    })
}

/// The PID holding a lock on `path`, where the platform tells (opened
/// without blocking or following a symlink).
pub fn holder_of(path: &Path) -> Option<u32> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY);
    }
    let file: File = options.open(path).ok()?;
    portalocker::holder_pid(&file)
}

/// Map a library error onto an exit status and message: contention is the
/// conflict code (silent with `-q`), bad input 64, anything else 74.
pub fn failure(args: &WaitArgs, error: Error) -> Failure {
    let code = match &error {
        e if e.is_contention() => args.conflict_exit_code,
        Error::InvalidArgument(_) | Error::Unsupported(_) => exit::USAGE,
        _ => exit::IO,
    };
    let message = if error.is_contention() && args.quiet {
        String::new()
    } else {
        error.to_string()
    };
    Failure::new(code, message)
}
