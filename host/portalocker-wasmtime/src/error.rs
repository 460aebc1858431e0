//! The error host functions return: a guest-visible `error` value, or a trap.

use std::fmt;
use std::io;

use wasmtime::component::ResourceTableError;

/// The guest-visible error cases of `portalocker:locks/types.error`, kept
/// free of generated types; the bindings convert it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// Held elsewhere; the call did not wait.
    WouldBlock,
    /// Held elsewhere at the deadline.
    TimedOut,
    /// Outside the grants, a symlink, or refused by the OS.
    AccessDenied(String),
    /// A malformed argument.
    InvalidArgument(String),
    /// A host limit was reached.
    LimitExceeded(String),
    /// Not offered by this host.
    Unsupported(String),
    /// A held lock was lost.
    Lost,
    /// Anything else.
    Other(String),
}

/// What a host function fails with: an [`ErrorCode`] for the guest, or a
/// trap (a bad handle is a host bug, not the guest's business).
pub enum LockError {
    /// Returned to the guest as an `error` value.
    Code(ErrorCode),
    /// Aborts the guest.
    Trap(wasmtime::Error),
}

impl LockError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        LockError::Code(ErrorCode::InvalidArgument(message.into()))
    }

    pub(crate) fn access_denied(message: impl Into<String>) -> Self {
        LockError::Code(ErrorCode::AccessDenied(message.into()))
    }

    pub(crate) fn limit(message: impl Into<String>) -> Self {
        LockError::Code(ErrorCode::LimitExceeded(message.into()))
    }

    /// An OS error on the guest path `guest` (host paths never reach the
    /// guest). A host out of descriptors is `limit-exceeded`.
    pub(crate) fn from_io(guest: &str, error: io::Error) -> Self {
        let message = format!("{guest:?}: {}", without_host_paths(&error));
        match error.kind() {
            io::ErrorKind::PermissionDenied => LockError::Code(ErrorCode::AccessDenied(message)),
            _ if is_symlink_loop(&error) => LockError::Code(ErrorCode::AccessDenied(message)),
            _ if is_out_of_descriptors(&error) => LockError::Code(ErrorCode::LimitExceeded(
                format!("{message} (the host is out of file descriptors)"),
            )),
            _ => LockError::Code(ErrorCode::Other(message)),
        }
    }

    /// The same error with `from` replaced by `to` in its message, as is and
    /// as quoted by `{:?}`: the host's Redis namespace never reaches the
    /// guest.
    pub(crate) fn renamed(self, from: &str, to: &str) -> Self {
        let (quoted_from, quoted_to) = (format!("{from:?}"), format!("{to:?}"));
        let rename = |m: String| {
            if from.is_empty() {
                m
            } else {
                m.replace(&quoted_from, &quoted_to).replace(from, to)
            }
        };
        match self {
            LockError::Code(code) => LockError::Code(match code {
                ErrorCode::AccessDenied(m) => ErrorCode::AccessDenied(rename(m)),
                ErrorCode::InvalidArgument(m) => ErrorCode::InvalidArgument(rename(m)),
                ErrorCode::LimitExceeded(m) => ErrorCode::LimitExceeded(rename(m)),
                ErrorCode::Unsupported(m) => ErrorCode::Unsupported(rename(m)),
                ErrorCode::Other(m) => ErrorCode::Other(rename(m)),
                other => other,
            }),
            trap => trap,
        }
    }

    /// A core error about the guest path `guest`.
    pub(crate) fn from_core(guest: &str, error: portalocker::Error) -> Self {
        use portalocker::Error as E;
        match error {
            E::WouldBlock { .. } => LockError::Code(ErrorCode::WouldBlock),
            E::TimedOut { .. } => LockError::Code(ErrorCode::TimedOut),
            E::InvalidArgument(message) => LockError::Code(ErrorCode::InvalidArgument(message)),
            E::Lost { .. } => LockError::Code(ErrorCode::Lost),
            E::Unsupported(message) => LockError::Code(ErrorCode::Unsupported(message)),
            E::Io { op, source, .. } => match LockError::from_io(guest, source) {
                LockError::Code(ErrorCode::Other(message)) => {
                    LockError::Code(ErrorCode::Other(format!("{op} {message}")))
                }
                other => other,
            },
            other => LockError::Code(ErrorCode::Other(format!("{guest:?}: {other}"))),
        }
    }

    /// The error as the guest sees it, or the trap.
    pub fn into_code(self) -> wasmtime::Result<ErrorCode> {
        match self {
            LockError::Code(code) => Ok(code),
            LockError::Trap(trap) => Err(trap),
        }
    }
}

/// `ELOOP`: what `O_NOFOLLOW` answers for a symlink.
fn is_symlink_loop(error: &io::Error) -> bool {
    const ELOOP: i32 = if cfg!(target_os = "linux") { 40 } else { 62 };
    cfg!(unix) && error.raw_os_error() == Some(ELOOP)
}

/// `EMFILE` / `ENFILE`: no descriptor left for the process or the system.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

/// A failure in a call whose WIT result has no error case can only be a
/// bad handle: trap.
pub(crate) fn trap(error: LockError) -> wasmtime::Error {
    match error {
        LockError::Trap(trap) => trap,
        LockError::Code(code) => wasmtime::Error::msg(code.to_string()),
    }
}

/// An io::Error's message without any path it may carry.
fn without_host_paths(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => error.to_string(),
    }
}

impl From<ResourceTableError> for LockError {
    fn from(error: ResourceTableError) -> Self {
        LockError::Trap(wasmtime::Error::new(error))
    }
}

impl From<ErrorCode> for LockError {
    fn from(code: ErrorCode) -> Self {
        LockError::Code(code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::WouldBlock => f.write_str("the lock is held elsewhere"),
            ErrorCode::TimedOut => f.write_str("timed out waiting for the lock"),
            ErrorCode::AccessDenied(m) => write!(f, "access denied: {m}"),
            ErrorCode::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            ErrorCode::LimitExceeded(m) => write!(f, "limit exceeded: {m}"),
            ErrorCode::Unsupported(m) => write!(f, "unsupported: {m}"),
            ErrorCode::Lost => f.write_str("the lock was lost"),
            ErrorCode::Other(m) => f.write_str(m),
        }
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Code(code) => fmt::Display::fmt(code, f),
            LockError::Trap(trap) => write!(f, "trap: {trap}"),
        }
    }
}

impl fmt::Debug for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Code(code) => f.debug_tuple("Code").field(code).finish(),
            LockError::Trap(trap) => f.debug_tuple("Trap").field(trap).finish(),
        }
    }
}

impl std::error::Error for LockError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_hides_a_name_as_is_and_quoted() {
        let from = "ns:tab\there";
        let e = LockError::invalid(format!("bad {from:?} and {from}")).renamed(from, "tab\there");
        let LockError::Code(ErrorCode::InvalidArgument(m)) = e else {
            panic!()
        };
        assert!(!m.contains("ns:"), "{m}");
    }
}
