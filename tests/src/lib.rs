//! The worker processes that the cross-process tests start: a Rust program
//! (`lockworker`) and a Python one (`python/pl_worker.py`) that speak the
//! same small protocol, so a test can mix them freely.
//!
//! Holders print `locked` (or `slot N`) on stdout once they hold the lock and
//! release it when their stdin closes. Counters take the lock, read the
//! decimal number in a data file, write it back incremented, and release.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The Python that has portalocker 4.4.2 (and redis-py, filelock):
/// `$PORTALOCKER_PYTHON`, else the virtual environment `scripts/setup.sh`
/// makes. Whether it really has them is for the caller to check.
pub fn python() -> PathBuf {
    std::env::var_os("PORTALOCKER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/portalocker-rs/venv/bin/python")
        })
}

/// Read the decimal counter in `path` (missing or empty is 0).
///
/// # Errors
///
/// When the file cannot be read or does not hold a number.
pub fn read_counter(path: &Path) -> io::Result<u64> {
    match fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(0),
        Ok(text) => text.trim().parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path:?}: {e}: {text:?}"),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Write `value` to the counter file `path`.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_counter(path: &Path, value: u64) -> io::Result<()> {
    fs::write(path, value.to_string())
}

pub mod host;
pub mod journal;
pub mod languages;

/// The guest test programs, built by `build.rs`: one `&str` path constant
/// each, and the `foreach_program!` macro.
pub mod programs {
    include!(concat!(env!("OUT_DIR"), "/programs.rs"));
}

/// The middleware components and the test provider (`guest/`), built by
/// `build.rs`: one `&str` path constant each.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));
}

pub mod proxy;
pub mod redis_server;
pub mod redis_topology;
