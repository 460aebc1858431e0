//! Lock, contend with ourselves, release; shared locks share.
use std::time::Duration;

use portalocker_guest::{Error, FileLock, LockMode};
use portalocker_test_programs::{args, assert_err};

fn main() {
    let dir = &args()[0];
    let path = format!("{dir}/basic.lock");
    let a = FileLock::open(&path).unwrap();
    let b = FileLock::open(&path).unwrap();
    assert_eq!(a.path(), path);
    let guard = a.lock().unwrap();
    assert_eq!(guard.mode(), LockMode::Exclusive);
    // Two handles contend, even in one plugin (the lock is per open file).
    assert_err!(b.try_lock(), Error::WouldBlock);
    assert_err!(b.lock_for(Duration::from_millis(30)), Error::TimedOut);
    assert_err!(b.try_lock_shared(), Error::WouldBlock);
    guard.release().unwrap();
    let shared_a = a.try_lock_shared().unwrap();
    let shared_b = b.lock_shared_for(Duration::from_millis(10)).unwrap();
    assert_eq!(shared_b.mode(), LockMode::Shared);
    let c = FileLock::open(&path).unwrap();
    assert_err!(c.try_lock(), Error::WouldBlock);
    drop((shared_a, shared_b));
    drop(c.try_lock().unwrap());
    drop(b.lock().unwrap());
    println!("ok");
}
