//! `portalocker status`: who holds a lock file, a semaphore's slots or a
//! Redis lock, as text or JSON; exit 0 when free, 1 when held.

#[cfg(target_os = "linux")]
mod procfs;

mod file;
mod redis;
mod report;

use std::path::Path;

use portalocker::BoundedSemaphore;

use crate::args::StatusArgs;
use crate::failure::{Failure, exit};

pub use report::Report;

/// The exit status of a held lock (a semaphore with no free slot).
pub const HELD: u8 = 1;

/// Inspect what `args` names and print it (unless `--quiet`).
///
/// # Errors
///
/// A [`Failure`] when the lock cannot be inspected (74) or the arguments
/// make no sense (64).
pub fn run(args: StatusArgs) -> Result<u8, Failure> {
    let report = if let Some(name) = &args.redis {
        redis::inspect(name, args.url.clone(), args.cluster)?
    } else if let Some(name) = &args.semaphore {
        semaphore(name, args.directory.as_deref(), args.slots)?
    } else {
        let path = args.path.as_deref().ok_or_else(|| {
            Failure::usage("status needs a PATH, --semaphore NAME or --redis NAME")
        })?;
        let found = file::inspect(path).map_err(|e| cannot_inspect(path, e))?;
        report::file(&found)
    };
    if !args.quiet {
        if args.json {
            println!("{}", report.json);
        } else {
            print!("{}", report.text);
        }
    }
    Ok(if report.held { HELD } else { 0 })
}

/// Every slot of a semaphore: `slots` of them, or the slot files that exist.
fn semaphore(
    name: &str,
    directory: Option<&Path>,
    slots: Option<usize>,
) -> Result<Report, Failure> {
    let size = slots.unwrap_or(portalocker::MAX_SLOTS);
    let mut sem = BoundedSemaphore::new(size, name).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(directory) = directory {
        sem = sem.directory(directory);
    }
    let mut files = Vec::new();
    for slot in 0..size {
        let path = sem.filename(slot);
        let meta = file::look(&path).map_err(|e| cannot_inspect(&path, e))?;
        // Without --slots, the semaphore is the slot files in a row.
        if slots.is_none() && meta.is_none() {
            break;
        }
        files.push((path, meta));
    }
    let found =
        file::inspect_each(files).map_err(|failed| cannot_inspect(&failed.path, failed.error))?;
    Ok(report::semaphore(&sem, slots.is_some(), &found))
}

/// The failure of a file that could not be inspected.
fn cannot_inspect(path: &Path, error: std::io::Error) -> Failure {
    Failure::because(
        exit::IO,
        &format!("cannot inspect {}", path.display()),
        error,
    )
}
