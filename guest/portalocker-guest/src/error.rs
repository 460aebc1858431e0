//! The error every lock call returns.

use std::io;

#[doc(inline)]
/// (The generated type implements `Display` and `std::error::Error`.)
pub use crate::wit::portalocker::locks::types::Error;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether someone else holds the lock ([`Error::WouldBlock`] or
    /// [`Error::TimedOut`]).
    pub fn is_contention(&self) -> bool {
        matches!(self, Error::WouldBlock | Error::TimedOut)
    }
}

impl From<Error> for io::Error {
    /// Contention maps to [`io::ErrorKind::WouldBlock`] /
    /// [`io::ErrorKind::TimedOut`], refusals to
    /// [`io::ErrorKind::PermissionDenied`] and bad input to
    /// [`io::ErrorKind::InvalidInput`].
    fn from(error: Error) -> Self {
        let kind = match &error {
            Error::WouldBlock => io::ErrorKind::WouldBlock,
            Error::TimedOut => io::ErrorKind::TimedOut,
            Error::AccessDenied(_) => io::ErrorKind::PermissionDenied,
            Error::InvalidArgument(_) => io::ErrorKind::InvalidInput,
            Error::LimitExceeded(_) => io::ErrorKind::QuotaExceeded,
            Error::Unsupported(_) => io::ErrorKind::Unsupported,
            Error::Lost | Error::Other(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}
