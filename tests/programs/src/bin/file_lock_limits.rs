//! The host allows 2 held locks/permits and a 1 s wait.
use std::time::Duration;

use portalocker_guest::{Error, FileLock, Semaphore};
use portalocker_test_programs::{args, assert_err};

fn main() {
    let dir = &args()[0];
    let locks: Vec<FileLock> = (0..3)
        .map(|i| FileLock::open(format!("{dir}/limit{i}.lock")).unwrap())
        .collect();
    let a = locks[0].lock().unwrap();
    let b = locks[1].try_lock().unwrap();
    assert_err!(locks[2].lock(), Error::LimitExceeded(_));
    let sem = Semaphore::open("limits", 3, dir).unwrap();
    assert_err!(sem.try_acquire(), Error::LimitExceeded(_));
    drop(a);
    let permit = sem.try_acquire().unwrap();
    assert_err!(locks[2].try_lock(), Error::LimitExceeded(_));
    drop((b, permit));
    assert_err!(
        locks[2].lock_for(Duration::from_secs(2)),
        Error::LimitExceeded(_)
    );
    drop(locks[2].lock_for(Duration::from_millis(500)).unwrap());
    println!("ok");
}
