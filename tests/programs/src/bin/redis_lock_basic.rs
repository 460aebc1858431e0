//! `NAME`: a Redis lock through the host: fencing, contention with
//! ourselves, release, and bad names.
use std::time::Duration;

use portalocker_guest::{Error, RedisLock};
use portalocker_test_programs::{args, assert_err};

fn main() {
    let name = &args()[0];
    let a = RedisLock::open(name, true).unwrap();
    let b = RedisLock::open(name, false).unwrap();
    assert_eq!(a.name(), *name);
    let guard = a.lock().unwrap();
    let first = guard.fencing_token().expect("a fencing token");
    assert!(!guard.is_lost());
    assert_err!(b.try_lock(), Error::WouldBlock);
    assert_err!(b.lock_for(Duration::from_millis(50)), Error::TimedOut);
    guard.release().unwrap();
    let again = a.try_lock().unwrap();
    assert!(again.fencing_token().unwrap() > first);
    // A writer holds: shared attempts wait or give up.
    assert_err!(b.try_lock_shared(), Error::WouldBlock);
    assert_err!(
        b.lock_shared_for(Duration::from_millis(50)),
        Error::TimedOut
    );
    drop(again);
    let r1 = b.lock_shared().unwrap();
    let r2 = RedisLock::open(name, false).unwrap();
    drop(r2.try_lock_shared().unwrap());
    drop(r2.lock_shared_for(Duration::from_millis(50)).unwrap());
    drop(r1);
    for bad in ["", "a\nb"] {
        assert_err!(RedisLock::open(bad, false), Error::InvalidArgument(_));
    }
    assert_err!(
        RedisLock::open("x".repeat(300), false),
        Error::InvalidArgument(_)
    );
    println!("ok");
}
