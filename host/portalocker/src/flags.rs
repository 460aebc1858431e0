//! portalocker's `LockFlags` and the rules that validate them.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use crate::error::{Error, Result};

/// Which kind of lock to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LockMode {
    /// One holder at a time (`LOCK_EX`).
    #[default]
    Exclusive,
    /// Any number of shared holders, no exclusive one (`LOCK_SH`).
    Shared,
}

/// portalocker's lock flags: a lock type, optionally non-blocking.
///
/// The values are the POSIX `flock` values portalocker uses (`SHARED = 1`,
/// `EXCLUSIVE = 2`, `NON_BLOCKING = 4`, `UNBLOCK = 8`). Prefer
/// [`LockMode`] in new code; the flags exist so portalocker programs port
/// one to one, and they are validated exactly as portalocker 4.4.2 does:
/// see [`LockFlags::validate`].
///
/// ```
/// use portalocker::{LockFlags, LockMode};
/// let flags = LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING;
/// assert_eq!(flags.validate().unwrap(), (LockMode::Exclusive, true));
/// assert!((LockFlags::SHARED | LockFlags::EXCLUSIVE).validate().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockFlags(u8);

impl LockFlags {
    /// A shared lock (`LOCK_SH`).
    pub const SHARED: Self = Self(1);
    /// An exclusive lock (`LOCK_EX`).
    pub const EXCLUSIVE: Self = Self(2);
    /// Fail instead of waiting (`LOCK_NB`).
    pub const NON_BLOCKING: Self = Self(4);
    /// Unlock (`LOCK_UN`). Never valid for locking: use [`crate::unlock`].
    pub const UNBLOCK: Self = Self(8);
    /// No flags. Not a valid lock request on its own.
    pub const EMPTY: Self = Self(0);

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Flags from raw bits, or `None` if unknown bits are set.
    ///
    /// ```
    /// use portalocker::LockFlags;
    /// assert_eq!(LockFlags::from_bits(6), Some(LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING));
    /// assert_eq!(LockFlags::from_bits(16), None);
    /// ```
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !0b1111 == 0 {
            Some(Self(bits))
        } else {
            None
        }
    }

    /// Whether every flag in `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags for `mode`, blocking or not.
    ///
    /// ```
    /// use portalocker::{LockFlags, LockMode};
    /// assert_eq!(LockFlags::new(LockMode::Shared, true), LockFlags::SHARED | LockFlags::NON_BLOCKING);
    /// ```
    pub const fn new(mode: LockMode, non_blocking: bool) -> Self {
        let kind = match mode {
            LockMode::Exclusive => Self::EXCLUSIVE.0,
            LockMode::Shared => Self::SHARED.0,
        };
        Self(
            kind | if non_blocking {
                Self::NON_BLOCKING.0
            } else {
                0
            },
        )
    }

    /// Check the flags as portalocker 4.4.2 does before any system call, and
    /// return the lock mode and whether the request is non-blocking.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the flags carry `UNBLOCK`, carry both
    /// `SHARED` and `EXCLUSIVE`, or carry no lock type (empty, or
    /// `NON_BLOCKING` alone).
    pub fn validate(self) -> Result<(LockMode, bool)> {
        if self.contains(Self::UNBLOCK) {
            return Err(Error::invalid(format!(
                "{self:?}: UNBLOCK is not a lock request; release the lock instead"
            )));
        }
        let non_blocking = self.contains(Self::NON_BLOCKING);
        match (self.contains(Self::SHARED), self.contains(Self::EXCLUSIVE)) {
            (true, true) => Err(Error::invalid(format!(
                "{self:?}: SHARED and EXCLUSIVE are mutually exclusive"
            ))),
            (false, false) => Err(Error::invalid(format!(
                "{self:?}: a lock needs SHARED or EXCLUSIVE"
            ))),
            (true, false) => Ok((LockMode::Shared, non_blocking)),
            (false, true) => Ok((LockMode::Exclusive, non_blocking)),
        }
    }
}

impl Default for LockFlags {
    /// portalocker's `LOCK_METHOD`: `EXCLUSIVE | NON_BLOCKING`.
    fn default() -> Self {
        Self::EXCLUSIVE | Self::NON_BLOCKING
    }
}

impl BitOr for LockFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for LockFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for LockFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(LockFlags, &str); 4] = [
            (LockFlags::SHARED, "SHARED"),
            (LockFlags::EXCLUSIVE, "EXCLUSIVE"),
            (LockFlags::NON_BLOCKING, "NON_BLOCKING"),
            (LockFlags::UNBLOCK, "UNBLOCK"),
        ];
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect();
        if names.is_empty() {
            f.write_str("LockFlags(0)")
        } else {
            f.write_str(&names.join(" | "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_four_valid_combinations() {
        use LockFlags as F;
        assert_eq!(
            F::EXCLUSIVE.validate().unwrap(),
            (LockMode::Exclusive, false)
        );
        assert_eq!(F::SHARED.validate().unwrap(), (LockMode::Shared, false));
        assert_eq!(
            (F::EXCLUSIVE | F::NON_BLOCKING).validate().unwrap(),
            (LockMode::Exclusive, true)
        );
        assert_eq!(
            (F::SHARED | F::NON_BLOCKING).validate().unwrap(),
            (LockMode::Shared, true)
        );
    }

    #[test]
    fn rejects_portalockers_invalid_combinations() {
        use LockFlags as F;
        for flags in [
            F::UNBLOCK,
            F::EXCLUSIVE | F::UNBLOCK,
            F::SHARED | F::UNBLOCK | F::NON_BLOCKING,
            F::SHARED | F::EXCLUSIVE,
            F::SHARED | F::EXCLUSIVE | F::NON_BLOCKING,
            F::EMPTY,
            F::NON_BLOCKING,
        ] {
            let err = flags.validate().unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{flags:?}: {err}");
        }
    }

    #[test]
    fn debug_names_the_flags() {
        assert_eq!(
            format!("{:?}", LockFlags::default()),
            "EXCLUSIVE | NON_BLOCKING"
        );
        assert_eq!(format!("{:?}", LockFlags::EMPTY), "LockFlags(0)");
    }

    #[test]
    fn values_match_posix_flock() {
        assert_eq!(LockFlags::SHARED.bits(), 1);
        assert_eq!(LockFlags::EXCLUSIVE.bits(), 2);
        assert_eq!(LockFlags::NON_BLOCKING.bits(), 4);
        assert_eq!(LockFlags::UNBLOCK.bits(), 8);
    }
}
