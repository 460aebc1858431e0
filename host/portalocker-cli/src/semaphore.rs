//! `portalocker semaphore`: run a command holding one slot of portalocker's
//! named bounded semaphore.

use std::path::Path;

use portalocker::{BoundedSemaphore, SemaphorePermit};

use crate::args::SemaphoreArgs;
use crate::child::{self, Tie};
use crate::failure::Failure;
use crate::wait::{announced, failure, holder_of};

/// Take a slot (waiting as asked), run the command with its number in
/// `PORTALOCKER_SLOT`, free the slot.
///
/// # Errors
///
/// A [`Failure`] when no slot can be taken or the command not run.
pub fn run(args: SemaphoreArgs) -> Result<u8, Failure> {
    let mut sem =
        BoundedSemaphore::new(args.slots, &args.name).map_err(|e| failure(&args.wait, e))?;
    if let Some(directory) = &args.directory {
        sem = sem.directory(directory);
    }
    let what = format!(
        "one of {} slots of semaphore {:?} in {}",
        sem.maximum(),
        sem.name(),
        sem.filename(0).parent().unwrap_or(Path::new("")).display()
    );
    let permit: SemaphorePermit = announced(
        &args.wait,
        &what,
        |wait| sem.clone().wait(wait).acquire(),
        || {
            let pids: Vec<String> = sem
                .filenames()
                .iter()
                .filter_map(|p| holder_of(p))
                .map(|p| p.to_string())
                .collect();
            (!pids.is_empty()).then(|| pids.join(", "))
        },
    )?;
    let slot = permit.slot().to_string();
    let status = child::run(
        &args.command,
        &[("PORTALOCKER_SLOT", slot)],
        Tie::inherit(permit.file()),
    );
    drop(permit);
    status
}
