//! The error type shared by every lock kind.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a lock operation failed.
///
/// Contention is split in two: [`Error::WouldBlock`] when the caller did not
/// allow waiting (non-blocking flags, fail-when-locked, a zero timeout) and
/// [`Error::TimedOut`] when it waited and the deadline passed. Both answer
/// `true` to [`Error::is_contention`]; they are portalocker's `AlreadyLocked`.
/// Every other variant is a terminal failure (portalocker's plain
/// `LockException` or the `OSError` it lets through) and is never retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Someone else holds the lock and the caller asked not to wait.
    #[error("{} is locked by another holder{}", describe(.path.as_deref()), holder(*.holder_pid))]
    WouldBlock {
        /// The lock file, when the lock has one.
        path: Option<PathBuf>,
        /// The PID of the holder, where it is known (PID-file locks).
        holder_pid: Option<u32>,
    },
    /// The lock was still held by someone else when the timeout ran out.
    #[error("timed out after {:?} waiting for the lock on {}{}", .timeout, describe(.path.as_deref()), holder(*.holder_pid))]
    TimedOut {
        /// The lock file, when the lock has one.
        path: Option<PathBuf>,
        /// The timeout that ran out.
        timeout: Duration,
        /// The PID of the holder, where it is known (PID-file locks).
        holder_pid: Option<u32>,
    },
    /// An argument was rejected before anything was touched: an invalid flag
    /// combination, a zero slot count, a malformed name.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The lock file was unlinked or replaced by someone else while it was
    /// held or being locked: holding it no longer excludes anyone.
    #[error("the lock on {} is compromised: {reason}", .path.display())]
    Compromised {
        /// The lock file.
        path: PathBuf,
        /// What was seen.
        reason: String,
    },
    /// A held lock was lost: its Redis subscription connection died (a
    /// reaper killed it, the server restarted, the link broke). Someone
    /// else may hold the lock now.
    #[error("the lock {channel:?} was lost: {reason}")]
    Lost {
        /// The lock name.
        channel: String,
        /// What happened.
        reason: String,
    },
    /// The setup cannot give what a lock promises (a Redis Cluster node or
    /// a replica, which cannot give mutual exclusion).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The Redis server refused a command for good (authentication, ACL
    /// permissions, a key of the wrong type) or answered what the protocol
    /// does not allow.
    #[error("redis: {0}")]
    Redis(String),
    /// The Redis server could not be reached or did not answer in time: it
    /// is down, restarting, loading, paused, or the link is cut. An
    /// acquisition retries this until its deadline and reports it only if
    /// the server stayed away that long.
    #[error("redis unavailable: {0}")]
    RedisUnavailable(String),
    /// An operating-system call failed.
    #[error("{op} {}: {source}", describe(.path.as_deref()))]
    Io {
        /// What was being done (`"open"`, `"lock"`, `"unlink"`, ...).
        op: &'static str,
        /// The file concerned, when known.
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// `true` for [`Error::WouldBlock`] and [`Error::TimedOut`]: someone else
    /// holds the lock. This is portalocker's `AlreadyLocked`.
    ///
    /// ```
    /// use portalocker::Error;
    /// let e = Error::WouldBlock { path: None, holder_pid: None };
    /// assert!(e.is_contention());
    /// ```
    pub fn is_contention(&self) -> bool {
        matches!(self, Error::WouldBlock { .. } | Error::TimedOut { .. })
    }

    /// The PID of the process holding the lock, when the error is contention
    /// and the holder is known.
    pub fn holder_pid(&self) -> Option<u32> {
        match self {
            Error::WouldBlock { holder_pid, .. } | Error::TimedOut { holder_pid, .. } => {
                *holder_pid
            }
            _ => None,
        }
    }

    /// The file the error is about, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::WouldBlock { path, .. }
            | Error::TimedOut { path, .. }
            | Error::Io { path, .. } => path.as_deref(),
            Error::Compromised { path, .. } => Some(path),
            Error::InvalidArgument(_)
            | Error::Lost { .. }
            | Error::Unsupported(_)
            | Error::Redis(_)
            | Error::RedisUnavailable(_) => None,
        }
    }

    /// The underlying operating-system error, for [`Error::Io`].
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<Option<PathBuf>>,
        source: io::Error,
    ) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// Attach a path and holder to a contention error that has none.
    pub(crate) fn with_context(mut self, lock_path: &Path, pid: Option<u32>) -> Self {
        match &mut self {
            Error::WouldBlock { path, holder_pid }
            | Error::TimedOut {
                path, holder_pid, ..
            } => {
                if path.is_none() {
                    *path = Some(lock_path.to_path_buf());
                }
                if holder_pid.is_none() {
                    *holder_pid = pid;
                }
            }
            Error::Io { path, .. } if path.is_none() => *path = Some(lock_path.to_path_buf()),
            _ => {}
        }
        self
    }
}

impl From<Error> for io::Error {
    /// Contention becomes [`io::ErrorKind::WouldBlock`] or
    /// [`io::ErrorKind::TimedOut`], invalid arguments
    /// [`io::ErrorKind::InvalidInput`]; an OS error is returned as it was.
    fn from(error: Error) -> Self {
        let kind = match &error {
            Error::WouldBlock { .. } => io::ErrorKind::WouldBlock,
            Error::TimedOut { .. } => io::ErrorKind::TimedOut,
            Error::InvalidArgument(_) => io::ErrorKind::InvalidInput,
            Error::Compromised { .. } | Error::Lost { .. } | Error::Redis(_) => {
                io::ErrorKind::Other
            }
            Error::RedisUnavailable(_) => io::ErrorKind::ConnectionAborted,
            Error::Unsupported(_) => io::ErrorKind::Unsupported,
            Error::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, error)
    }
}

fn describe(path: Option<&Path>) -> String {
    match path {
        Some(path) => format!("'{}'", path.display()),
        None => "the file".to_owned(),
    }
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!(" (held by PID {pid})"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contention_is_classified() {
        let would_block = Error::WouldBlock {
            path: Some("/tmp/x.lock".into()),
            holder_pid: Some(42),
        };
        assert!(would_block.is_contention());
        assert_eq!(would_block.holder_pid(), Some(42));
        assert_eq!(
            would_block.to_string(),
            "'/tmp/x.lock' is locked by another holder (held by PID 42)"
        );
        let invalid = Error::invalid("bad");
        assert!(!invalid.is_contention());
        assert_eq!(invalid.holder_pid(), None);
    }

    #[test]
    fn converts_to_io_error_kinds() {
        let e: io::Error = Error::WouldBlock {
            path: None,
            holder_pid: None,
        }
        .into();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let e: io::Error = Error::TimedOut {
            path: None,
            timeout: Duration::from_millis(5),
            holder_pid: None,
        }
        .into();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let e: io::Error = Error::io("open", None, io::Error::from(io::ErrorKind::NotFound)).into();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
