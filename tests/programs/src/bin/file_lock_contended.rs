//! The host holds the lock at the path given: we must not get it.
use std::time::{Duration, Instant};

use portalocker_guest::{Error, FileLock};
use portalocker_test_programs::{args, assert_err};

fn main() {
    let lock = FileLock::open(&args()[0]).unwrap();
    assert_err!(lock.try_lock(), Error::WouldBlock);
    assert_err!(lock.try_lock_shared(), Error::WouldBlock);
    let started = Instant::now();
    assert_err!(lock.lock_for(Duration::from_millis(100)), Error::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(100));
    println!("ok");
}
