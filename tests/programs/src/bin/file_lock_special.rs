//! `DIR`: the host planted a FIFO at `DIR/fifo.lock`, a directory at
//! `DIR/dir.lock`, a FIFO as slot 0 of semaphore `pool` and a symlink out
//! of the grant as slot 0 of semaphore `links`. Every lock on them is
//! refused at once with `access-denied` naming what is wrong and where.
use std::time::Duration;

use portalocker_guest::{Error, FileLock, Semaphore};
use portalocker_test_programs::args;

fn denied(result: Result<(), Error>, what: &str, needle: &str) {
    match result {
        Err(Error::AccessDenied(message)) => {
            assert!(
                message.contains(needle),
                "{what}: {message:?} lacks {needle:?}"
            );
            println!("{what}: {message}");
        }
        other => panic!("{what}: expected access-denied, got {other:?}"),
    }
}

fn main() {
    let dir = &args()[0];
    let fifo = FileLock::open(format!("{dir}/fifo.lock")).unwrap();
    denied(fifo.try_lock().map(drop), "fifo try-lock", "FIFO");
    denied(
        fifo.lock_for(Duration::from_secs(30)).map(drop),
        "fifo lock-for",
        "FIFO",
    );
    denied(fifo.lock().map(drop), "fifo lock", "FIFO");
    let directory = FileLock::open(format!("{dir}/dir.lock")).unwrap();
    denied(directory.try_lock().map(drop), "directory", "directory");
    let pool = Semaphore::open("pool", 2, dir).unwrap();
    denied(pool.try_acquire().map(drop), "fifo slot", "pool.00.lock");
    denied(
        pool.acquire_for(Duration::from_secs(30)).map(drop),
        "fifo slot wait",
        "FIFO",
    );
    let links = Semaphore::open("links", 2, dir).unwrap();
    denied(
        links.try_acquire().map(drop),
        "symlinked slot",
        "links.00.lock",
    );
    println!("ok");
}
