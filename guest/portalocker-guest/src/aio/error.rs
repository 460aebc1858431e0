//! The error every 0.2.0 lock call returns.

#[doc(inline)]
/// (The generated type implements `Display` and `std::error::Error`; it has
/// the same cases as [`crate::Error`].)
pub use super::wit::portalocker::locks::types::Error;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

crate::error::error_helpers!(Error);
