//! Two slots: a third holder waits, a release lets it in.
use std::time::Duration;

use portalocker_guest::{Error, Semaphore};
use portalocker_test_programs::{args, assert_err};

fn main() {
    let dir = &args()[0];
    let sem = Semaphore::open("pool", 2, dir).unwrap();
    assert_eq!(sem.slots(), 2);
    let a = sem.acquire().unwrap();
    let b = sem.try_acquire().unwrap();
    assert_eq!((a.slot(), b.slot()), (0, 1));
    assert_err!(sem.try_acquire(), Error::WouldBlock);
    assert_err!(sem.acquire_for(Duration::from_millis(50)), Error::TimedOut);
    a.release().unwrap();
    let c = sem.acquire_for(Duration::from_millis(50)).unwrap();
    assert_eq!(c.slot(), 0);
    drop((b, c));
    println!("ok");
}
