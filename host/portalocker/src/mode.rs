//! How a lock file is opened, with portalocker's deferred truncation.

use std::fmt;
use std::fs::OpenOptions;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How [`Lock`](crate::Lock) opens its file. The names follow Python's
/// `open()` modes, which is what portalocker takes.
///
/// The write modes (`w`, `w+`) never truncate at open: the file is
/// truncated only once the lock is held, so a waiter never wipes the
/// holder's data. Writes after that are positioned (a `seek(0)` then
/// `write` overwrites), as in portalocker 4.4.2 on POSIX.
///
/// ```
/// use portalocker::FileMode;
/// assert_eq!("w+b".parse::<FileMode>().unwrap(), FileMode::WriteRead);
/// assert_eq!(FileMode::default(), FileMode::Append);
/// assert!("q".parse::<FileMode>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FileMode {
    /// `r`: read only; the file must exist.
    Read,
    /// `r+`: read and write; the file must exist.
    ReadWrite,
    /// `w`: write, created if missing, truncated after locking.
    Write,
    /// `w+`: read and write, created if missing, truncated after locking.
    WriteRead,
    /// `a`: append, created if missing (portalocker's default).
    #[default]
    Append,
    /// `a+`: read and append, created if missing.
    AppendRead,
    /// `x`: write a file that must not exist yet.
    CreateNew,
    /// `x+`: read and write a file that must not exist yet.
    CreateNewRead,
}

impl FileMode {
    /// The options that open the file in this mode (never truncating).
    pub fn open_options(self) -> OpenOptions {
        let mut options = OpenOptions::new();
        match self {
            FileMode::Read => options.read(true),
            FileMode::ReadWrite => options.read(true).write(true),
            FileMode::Write => options.write(true).create(true),
            FileMode::WriteRead => options.read(true).write(true).create(true),
            FileMode::Append => options.append(true).create(true),
            FileMode::AppendRead => options.read(true).append(true).create(true),
            FileMode::CreateNew => options.write(true).create_new(true),
            FileMode::CreateNewRead => options.read(true).write(true).create_new(true),
        };
        options
    }

    /// Whether the file is truncated once the lock is held.
    pub fn truncates(self) -> bool {
        matches!(self, FileMode::Write | FileMode::WriteRead)
    }

    /// Whether the mode may create the file.
    pub fn creates(self) -> bool {
        !matches!(self, FileMode::Read | FileMode::ReadWrite)
    }

    /// The Python mode string (without `b`).
    pub fn as_str(self) -> &'static str {
        match self {
            FileMode::Read => "r",
            FileMode::ReadWrite => "r+",
            FileMode::Write => "w",
            FileMode::WriteRead => "w+",
            FileMode::Append => "a",
            FileMode::AppendRead => "a+",
            FileMode::CreateNew => "x",
            FileMode::CreateNewRead => "x+",
        }
    }
}

impl FromStr for FileMode {
    type Err = Error;

    /// Parse a Python `open()` mode: one of `r`, `w`, `a`, `x`, optionally
    /// `+`, optionally `b` or `t`, in any order.
    fn from_str(mode: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("invalid file mode {mode:?}"));
        let mut kind = None;
        let (mut plus, mut text_or_binary) = (false, false);
        for c in mode.chars() {
            match c {
                'r' | 'w' | 'a' | 'x' if kind.is_none() => kind = Some(c),
                '+' if !plus => plus = true,
                'b' | 't' if !text_or_binary => text_or_binary = true,
                _ => return Err(bad()),
            }
        }
        Ok(match (kind.ok_or_else(bad)?, plus) {
            ('r', false) => FileMode::Read,
            ('r', true) => FileMode::ReadWrite,
            ('w', false) => FileMode::Write,
            ('w', true) => FileMode::WriteRead,
            ('a', false) => FileMode::Append,
            ('a', true) => FileMode::AppendRead,
            ('x', false) => FileMode::CreateNew,
            (_, _) => FileMode::CreateNewRead,
        })
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_python_modes() {
        for (text, mode) in [
            ("r", FileMode::Read),
            ("rb", FileMode::Read),
            ("r+", FileMode::ReadWrite),
            ("rb+", FileMode::ReadWrite),
            ("w", FileMode::Write),
            ("wb", FileMode::Write),
            ("w+", FileMode::WriteRead),
            ("a", FileMode::Append),
            ("ab", FileMode::Append),
            ("a+", FileMode::AppendRead),
            ("x", FileMode::CreateNew),
            ("x+", FileMode::CreateNewRead),
        ] {
            assert_eq!(text.parse::<FileMode>().unwrap(), mode, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_modes() {
        for text in ["", "+", "b", "rw", "r++", "rbb", "q", "ww", "a+x"] {
            assert!(text.parse::<FileMode>().is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn only_write_modes_truncate() {
        assert!(FileMode::Write.truncates());
        assert!(FileMode::WriteRead.truncates());
        assert!(!FileMode::Append.truncates());
        assert!(!FileMode::ReadWrite.truncates());
    }
}
