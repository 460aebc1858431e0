//! `DIR [redis]`: what one component sees of its own locks, the same
//! under the host and under the test provider: an exclusive lock excludes
//! every other hold, shared locks share, a semaphore hands out its lowest
//! free slot, a fenced Redis lock's tokens grow, and a release frees.
use std::time::Duration;

use portalocker_guest::{Error, FileLock, RedisLock, Semaphore};
use portalocker_test_programs::{args, assert_err};

fn main() {
    let args = args();
    let dir = &args[0];
    let path = format!("{dir}/s.lock");
    let (one, two) = (
        FileLock::open(&path).unwrap(),
        FileLock::open(&path).unwrap(),
    );
    assert_eq!(one.path(), path);
    let held = one.lock().unwrap();
    assert_err!(two.try_lock(), Error::WouldBlock);
    assert_err!(two.try_lock_shared(), Error::WouldBlock);
    assert_err!(two.lock_for(Duration::from_millis(20)), Error::TimedOut);
    assert_err!(two.lock_for(Duration::ZERO), Error::WouldBlock);
    held.release().unwrap();
    let (r1, r2) = (one.lock_shared().unwrap(), two.try_lock_shared().unwrap());
    assert_err!(two.try_lock(), Error::WouldBlock);
    drop((r1, r2));
    drop(two.try_lock().unwrap());
    assert!(matches!(FileLock::open(""), Err(Error::InvalidArgument(_))));

    let sem = Semaphore::open("pool", 2, dir).unwrap();
    let (a, b) = (sem.acquire().unwrap(), sem.try_acquire().unwrap());
    assert_eq!((a.slot(), b.slot()), (0, 1));
    assert_err!(sem.try_acquire(), Error::WouldBlock);
    assert_err!(sem.acquire_for(Duration::from_millis(20)), Error::TimedOut);
    a.release().unwrap();
    assert_eq!(sem.try_acquire().unwrap().slot(), 0);
    drop(b);
    for (name, slots) in [("pool", 0), ("pool", 10_001), ("..", 1), ("a/b", 1)] {
        assert!(
            matches!(
                Semaphore::open(name, slots, dir),
                Err(Error::InvalidArgument(_))
            ),
            "{name} {slots}"
        );
    }
    // Two spellings of one path are one lock.
    let plain_lock = FileLock::open(&path).unwrap();
    let plain = plain_lock.lock().unwrap();
    assert_err!(
        FileLock::open(format!("{dir}/./s.lock"))
            .unwrap()
            .try_lock(),
        Error::WouldBlock
    );
    drop(plain);

    if args.get(1).map(String::as_str) == Some("redis") {
        let lock = RedisLock::open("semantics", true).unwrap();
        let first = lock.lock().unwrap();
        let t1 = first.fencing_token().unwrap();
        assert_err!(
            RedisLock::open("semantics", false).unwrap().try_lock(),
            Error::WouldBlock
        );
        assert!(!first.is_lost());
        first.release().unwrap();
        let t2 = lock.lock_shared().unwrap().fencing_token().unwrap();
        assert!(t2 > t1, "{t2} after {t1}");
        assert!(matches!(
            RedisLock::open("no spaces", false),
            Err(Error::InvalidArgument(_))
        ));
    }
    println!("ok");
}
