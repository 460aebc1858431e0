//! `portalocker redis-lock`: run a command holding a Redis lock, stopping
//! it if the lock is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use portalocker::redis::RedisLock;

use crate::args::RedisLockArgs;
use crate::child::{self, Tie};
use crate::failure::{Failure, exit};
use crate::wait::{announced, failure};

/// The Redis server: `url` if given, else `$REDIS_URL`, else the local
/// server on the default port; with `cluster`, as a cluster's node (a
/// `redis://` URL becomes `redis+cluster://`).
///
/// # Errors
///
/// `cluster` with a URL that names no cluster node (Sentinel, a socket).
pub fn server_url(url: Option<String>, cluster: bool) -> Result<String, String> {
    let url = url
        .or_else(|| std::env::var("REDIS_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".to_owned());
    if !cluster || url.starts_with("redis+cluster://") {
        return Ok(url);
    }
    match url.strip_prefix("redis://") {
        Some(rest) => Ok(format!("redis+cluster://{rest}")),
        None => Err(format!(
            "--cluster needs a redis:// or redis+cluster:// URL, not {}",
            redacted(&url)
        )),
    }
}

/// `url` without its password, for messages: `redis://user:***@host/`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

/// Take the lock (waiting as asked), run the command with the fencing token
/// in `PORTALOCKER_FENCING_TOKEN`; if the lock is lost meanwhile, send the
/// command SIGTERM and fail with [`exit::LOST`].
///
/// # Errors
///
/// A [`Failure`] when the lock cannot be taken, is lost, or the command
/// cannot run.
pub fn run(args: RedisLockArgs) -> Result<u8, Failure> {
    let url =
        server_url(args.url.clone(), args.cluster).map_err(|e| Failure::new(exit::USAGE, e))?;
    let mut lock = RedisLock::open(&url, &args.name)
        .map_err(|e| failure(&args.wait, e))?
        .fencing(args.fencing);
    if args.shared {
        lock = lock.shared();
    }
    let kind = if args.shared { "shared" } else { "exclusive" };
    let what = format!("{kind} Redis lock {:?} on {}", args.name, redacted(&url));
    let guard = announced(
        &args.wait,
        &what,
        |wait| lock.clone().wait(wait).acquire(),
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
        .map_err(|e| Failure::because(exit::SOFTWARE, "cannot watch the lock", e))?;
    // Never start a command on a lock that is already gone.
    if let Err(e) = guard.ensure_held() {
        return Err(Failure::new(
            exit::LOST,
            format!("{e}; the command was not started"),
        ));
    }
    let status = child::run_with(&args.command, &env, Tie::DieWithParent, |pid| {
        let _ = started.send(pid);
    });
    if lost.load(Ordering::SeqCst) {
        let reason = guard
            .ensure_held()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Err(Failure::new(
            exit::LOST,
            format!("{reason}; the command was sent SIGTERM"),
        ));
    }
    drop(guard);
    status
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redacted("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(
            redacted("redis://app:s3cret@db:6379/0"),
            "redis://app:***@db:6379/0"
        );
        assert_eq!(redacted("redis://:s3cret@db/"), "redis://:***@db/");
        assert_eq!(redacted("unix:///run/redis.sock"), "unix:///run/redis.sock");
    }
}
