//! The error every lock call returns.

#[doc(inline)]
/// (The generated type implements `Display` and `std::error::Error`.)
pub use crate::wit::portalocker::locks::types::Error;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `is_contention` and the conversion to `io::Error` for a generated
/// `error` type (0.1.0's and 0.2.0's are distinct types with the same cases).
macro_rules! error_helpers {
    ($error:ty) => {
        impl $error {
            /// Whether someone else holds the lock (`WouldBlock` or
            /// `TimedOut`).
            pub fn is_contention(&self) -> bool {
                matches!(self, Self::WouldBlock | Self::TimedOut)
            }
        }

        impl From<$error> for std::io::Error {
            /// Contention maps to [`std::io::ErrorKind::WouldBlock`] /
            /// [`std::io::ErrorKind::TimedOut`], refusals to
            /// [`std::io::ErrorKind::PermissionDenied`] and bad input to
            /// [`std::io::ErrorKind::InvalidInput`].
            fn from(error: $error) -> Self {
                use std::io::ErrorKind;
                type E = $error;
                let kind = match &error {
                    E::WouldBlock => ErrorKind::WouldBlock,
                    E::TimedOut => ErrorKind::TimedOut,
                    E::AccessDenied(_) => ErrorKind::PermissionDenied,
                    E::InvalidArgument(_) => ErrorKind::InvalidInput,
                    E::LimitExceeded(_) => ErrorKind::QuotaExceeded,
                    E::Unsupported(_) => ErrorKind::Unsupported,
                    E::Lost | E::Other(_) => ErrorKind::Other,
                };
                std::io::Error::new(kind, error)
            }
        }
    };
}

#[cfg(feature = "async")]
pub(crate) use error_helpers;

error_helpers!(Error);
