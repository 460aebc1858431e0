//! `RLock`: re-entrant per instance, contended across instances.

use std::sync::Arc;
use std::thread;

use portalocker::{Lock, RLock, Wait};

#[test]
fn holds_count_and_share_one_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.lock");
    let rlock = RLock::new(Lock::new(&path));
    let first = rlock.acquire().unwrap();
    let second = rlock.acquire().unwrap();
    assert_eq!(rlock.count(), 2);
    assert_eq!(
        first.file().metadata().unwrap().modified().unwrap(),
        second.file().metadata().unwrap().modified().unwrap()
    );
    assert!(Lock::new(&path).try_acquire().unwrap_err().is_contention());
    first.release().unwrap();
    assert_eq!(rlock.count(), 1);
    assert!(
        Lock::new(&path).try_acquire().unwrap_err().is_contention(),
        "released too early"
    );
    drop(second);
    assert_eq!(rlock.count(), 0);
    drop(Lock::new(&path).try_acquire().unwrap());
}

#[test]
fn a_second_instance_contends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r2.lock");
    let a = RLock::new(Lock::new(&path));
    let b = RLock::new(Lock::new(&path).wait(Wait::NONE));
    let held = a.acquire().unwrap();
    assert!(b.acquire().unwrap_err().is_contention());
    let again = a.acquire().unwrap();
    drop((held, again));
    drop(b.acquire().unwrap());
}

#[test]
fn counts_stay_exact_under_interleaved_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r3.lock");
    let rlock = Arc::new(RLock::new(Lock::new(&path)));
    let outer = rlock.acquire().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let rlock = Arc::clone(&rlock);
            thread::spawn(move || {
                for _ in 0..500 {
                    let guard = rlock.acquire().unwrap();
                    assert!(rlock.count() >= 2);
                    drop(guard);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(rlock.count(), 1);
    drop(outer);
    assert_eq!(rlock.count(), 0);
    drop(Lock::new(&path).try_acquire().unwrap());
}
