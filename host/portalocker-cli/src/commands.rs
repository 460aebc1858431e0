//! The subcommands: take the lock, say what we wait for, run the command.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use portalocker::redis::RedisLock;
use portalocker::{BoundedSemaphore, Error, FileMode, Lock, LockGuard, SemaphorePermit};

use crate::args::{Cli, Command, LockArgs, RedisLockArgs, SemaphoreArgs, WaitArgs};
use crate::child;

/// How long a wait stays silent before saying what it waits for.
const QUIET_WAIT: Duration = Duration::from_millis(300);

/// A failure to report and the exit status it maps to.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: u8,
    /// What to print after `portalocker: `.
    pub message: String,
}

/// Run the subcommand; `Ok` carries the command's exit status.
pub fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Lock(args) => lock(args),
        Command::Semaphore(args) => semaphore(args),
        Command::RedisLock(args) => redis_lock(args),
        Command::Run(args) => crate::plugin::run(args),
    }
}

fn lock(args: LockArgs) -> Result<u8, Failure> {
    let kind = if args.shared { "shared" } else { "exclusive" };
    let what = format!("{kind} lock on {}", args.path.display());
    let guard: LockGuard = if args.path.is_dir() {
        lock_directory(&args, &what)?
    } else {
        let mut lock = Lock::new(&args.path).mode(FileMode::Append);
        if args.shared {
            lock = lock.shared();
        }
        wait_for(
            &args.wait,
            &what,
            |patience| match patience {
                Some(timeout) => lock.acquire_timeout(timeout),
                None => lock.clone().no_timeout().acquire(),
            },
            || holder_of(lock.path()).map(|pid| pid.to_string()),
        )?
    };
    let status = child::run(&args.command, &[], inherit(guard.file()));
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
        portalocker::LockMode::Shared
    } else {
        portalocker::LockMode::Exclusive
    };
    wait_for(
        &args.wait,
        what,
        |patience| {
            let dir = options.open(&args.path).map_err(|e| Error::Io {
                op: "open",
                path: Some(args.path.clone()),
                source: e,
            })?;
            LockGuard::lock_file(dir, &args.path, mode, patience)
        },
        || holder_of(&args.path).map(|pid| pid.to_string()),
    )
}

fn semaphore(args: SemaphoreArgs) -> Result<u8, Failure> {
    let mut sem =
        BoundedSemaphore::new(args.slots, &args.name).map_err(|e| failure(&args.wait, e))?;
    if let Some(directory) = &args.directory {
        sem = sem.directory(directory);
    }
    let what = format!(
        "one of {} slots of semaphore {:?} in {}",
        sem.maximum(),
        sem.name(),
        sem.filename(0).parent().unwrap_or(Path::new("")).display()
    );
    let permit: SemaphorePermit = wait_for(
        &args.wait,
        &what,
        |patience| match patience {
            Some(timeout) => sem.clone().timeout(timeout).acquire(),
            None => sem.clone().no_timeout().acquire(),
        },
        || {
            let pids: Vec<String> = sem
                .filenames()
                .iter()
                .filter_map(|p| holder_of(p))
                .map(|p| p.to_string())
                .collect();
            (!pids.is_empty()).then(|| pids.join(", "))
        },
    )?;
    let slot = permit.slot().to_string();
    let status = child::run(
        &args.command,
        &[("PORTALOCKER_SLOT", slot)],
        inherit(permit.file()),
    );
    drop(permit);
    status
}

/// The exit status when a Redis lock is lost while the command runs.
pub const LOST_EXIT: u8 = 75;

fn redis_lock(args: RedisLockArgs) -> Result<u8, Failure> {
    let url = args
        .url
        .clone()
        .or_else(|| std::env::var("REDIS_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".to_owned());
    let mut lock = RedisLock::open(&url, &args.name)
        .map_err(|e| failure(&args.wait, e))?
        .fencing(args.fencing);
    if args.shared {
        lock = lock.shared();
    }
    let kind = if args.shared { "shared" } else { "exclusive" };
    let what = format!("{kind} Redis lock {:?} on {url}", args.name);
    let guard = wait_for(
        &args.wait,
        &what,
        |patience| match patience {
            Some(timeout) => lock.clone().timeout(timeout).acquire(),
            None => lock.clone().no_timeout().acquire(),
        },
        || None,
    )?;
    let env: Vec<(&str, String)> = guard
        .fencing_token()
        .map(|token| ("PORTALOCKER_FENCING_TOKEN", token.to_string()))
        .into_iter()
        .collect();
    // The watcher stops the command when the lock is lost, and stops
    // itself the moment the guard is released: nothing waits on it.
    let lost = Arc::new(AtomicBool::new(false));
    let (started, pid) = mpsc::channel::<u32>();
    let mut watch = guard.loss_watch();
    let flag = Arc::clone(&lost);
    std::thread::Builder::new()
        .name("portalocker-loss".into())
        .spawn(move || {
            let Ok(pid) = pid.recv() else { return };
            if watch.wait().is_some() {
                flag.store(true, Ordering::SeqCst);
                child::terminate(pid);
            }
        })
        .map_err(|e| Failure {
            code: 70,
            message: format!("cannot watch the lock: {e}"),
        })?;
    // Never start a command on a lock that is already gone.
    if let Err(e) = guard.ensure_held() {
        return Err(Failure {
            code: LOST_EXIT,
            message: format!("{e}; the command was not started"),
        });
    }
    let status = child::run_with(&args.command, &env, child::Tie::DieWithParent, |pid| {
        let _ = started.send(pid);
    });
    if lost.load(Ordering::SeqCst) {
        let reason = guard
            .ensure_held()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Err(Failure {
            code: LOST_EXIT,
            message: format!("{reason}; the command was sent SIGTERM"),
        });
    }
    drop(guard);
    status
}

/// The command inherits the locked file, so the lock lives as long as the
/// command does (flock(1)'s behaviour), even if `portalocker` is killed.
fn inherit(file: &File) -> child::Tie {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        child::Tie::Inherit(file.as_raw_fd())
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        child::Tie::DieWithParent
    }
}

/// Acquire through `attempt` (given a timeout, or `None` for no limit):
/// once silently, then, past a moment of waiting, saying on stderr what we
/// wait for and who holds it.
fn wait_for<T>(
    wait: &WaitArgs,
    what: &str,
    attempt: impl Fn(Option<Duration>) -> portalocker::Result<T>,
    holders: impl Fn() -> Option<String>,
) -> Result<T, Failure> {
    let limit = if wait.nonblock {
        Some(Duration::ZERO)
    } else {
        wait.timeout
    };
    let started = Instant::now();
    let first = limit.map_or(QUIET_WAIT, |limit| limit.min(QUIET_WAIT));
    match attempt(Some(first)) {
        Ok(held) => return Ok(held),
        Err(e) if e.is_contention() && limit.is_none_or(|limit| limit > first) => {}
        Err(e) => return Err(failure(wait, e)),
    }
    if !wait.quiet {
        let holder = holders()
            .map(|h| format!(" (held by PID {h})"))
            .unwrap_or_default();
        eprintln!("portalocker: waiting for {what}{holder}");
    }
    let rest = limit.map(|limit| limit.saturating_sub(started.elapsed()));
    attempt(rest).map_err(|e| match (e, limit) {
        // Report the whole wait, not just its last stretch.
        (
            Error::TimedOut {
                path, holder_pid, ..
            },
            Some(timeout),
        ) => failure(
            wait,
            Error::TimedOut {
                path,
                timeout,
                holder_pid,
            },
        ),
        (e, _) => failure(wait, e),
    })
}

/// The PID holding a lock on `path`, where the platform tells.
fn holder_of(path: &Path) -> Option<u32> {
    portalocker::holder_pid(&File::open(path).ok()?)
}

/// Map a library error onto an exit status and message.
fn failure(wait: &WaitArgs, error: Error) -> Failure {
    let code = match &error {
        e if e.is_contention() => wait.conflict_exit_code,
        Error::InvalidArgument(_) | Error::Unsupported(_) => 64,
        _ => 74,
    };
    let message = if error.is_contention() && wait.quiet {
        String::new()
    } else {
        error.to_string()
    };
    Failure { code, message }
}
