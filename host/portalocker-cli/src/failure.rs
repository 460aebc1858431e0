//! How `portalocker` fails: a message and an exit status, with the exit
//! statuses named once.

use std::fmt::Display;

/// The exit statuses `portalocker` uses besides the command's own (the BSD
/// `sysexits` names where one fits).
pub mod exit {
    /// Bad arguments (`EX_USAGE`).
    pub const USAGE: u8 = 64;
    /// A plugin that is not a valid component (`EX_DATAERR`).
    pub const DATA: u8 = 65;
    /// A plugin that cannot be read (`EX_NOINPUT`).
    pub const NO_INPUT: u8 = 66;
    /// A part of portalocker that is not installed: the plugin host
    /// (`EX_UNAVAILABLE`).
    pub const UNAVAILABLE: u8 = 69;
    /// An internal failure, or a plugin that trapped (`EX_SOFTWARE`).
    pub const SOFTWARE: u8 = 70;
    /// A lock that could not be opened or taken for another reason than
    /// contention, a Redis server that could not be used (`EX_IOERR`).
    pub const IO: u8 = 74;
    /// A Redis lock lost while the command ran (`EX_TEMPFAIL`).
    pub const LOST: u8 = 75;
    /// A plugin out of fuel or time (as `timeout(1)`).
    pub const TIMEOUT: u8 = 124;
    /// A command that cannot be run (as the shell).
    pub const CANNOT_RUN: u8 = 126;
    /// A command that does not exist (as the shell).
    pub const NOT_FOUND: u8 = 127;
}

/// A failure to report and the exit status it maps to.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: u8,
    /// What to print after `portalocker: ` (nothing when empty).
    pub message: String,
}

impl Failure {
    /// A failure with `code` saying `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Bad arguments.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }

    /// `context: error`, with `code`.
    pub fn because(code: u8, context: &str, error: impl Display) -> Self {
        Self::new(code, format!("{context}: {error}"))
    }
}
