//! `LOCK HOW`: take LOCK, print `locked`, then misbehave while holding it:
//!
//! - `oom`: allocate until memory runs out (a trap);
//! - `stale`: release a guard, then release it again through its old
//!   handle number (a trap: wasmtime refuses the handle);
//! - `foreign`: use a semaphore permit's handle as a file-lock guard (a
//!   trap);
//! - `lock-first`: drop the lock handle before its guard, then use and
//!   release the guard (fine: a guard outlives its handle); prints `ok`;
//! - `absurd-wait`: wait for a second lock on LOCK for u64::MAX ns (the
//!   host's maximum wait refuses it: `limit-exceeded`); prints the error;
//! - `hold-max N`: hold N more locks, then ask for one more; prints the
//!   error (`limit-exceeded` when N is the host's maximum minus one).
use std::time::Duration;

use portalocker_guest::FileLock;
use portalocker_guest::wit::portalocker::locks::file_lock::{
    FileLock as RawLock, FileLockGuard as RawGuard,
};
use portalocker_guest::wit::portalocker::locks::semaphore::Semaphore as RawSemaphore;
use portalocker_guest::wit::portalocker::locks::types::LockMode;
use portalocker_test_programs::args;

fn main() {
    let args = args();
    let lock = FileLock::open(&args[0]).unwrap();
    let guard = lock.lock().unwrap();
    let dir = args[0].rsplit_once('/').map_or(".", |(d, _)| d).to_owned();
    println!("locked");
    match args[1].as_str() {
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "stale" => {
            let raw = RawLock::open(&format!("{dir}/stale.lock")).unwrap();
            let held = raw.try_lock(LockMode::Exclusive).unwrap();
            let number = held.take_handle();
            // SAFETY: deliberately wrong: the handle is released below and
            // then used again; the host must trap, not misbehave.
            RawGuard::release(unsafe { RawGuard::from_handle(number) }).unwrap();
            let _ = RawGuard::release(unsafe { RawGuard::from_handle(number) });
            unreachable!("a released guard's handle was accepted");
        }
        "foreign" => {
            let sem = RawSemaphore::open("foreign", 1, &dir).unwrap();
            let permit = sem.try_acquire().unwrap();
            let number = permit.take_handle();
            // SAFETY: deliberately wrong: a permit's handle as a guard's.
            let fake = unsafe { RawGuard::from_handle(number) };
            let _ = fake.mode();
            unreachable!("a permit's handle was accepted as a guard");
        }
        "lock-first" => {
            let raw = RawLock::open(&format!("{dir}/first.lock")).unwrap();
            let held = raw.try_lock(LockMode::Shared).unwrap();
            drop(raw);
            assert_eq!(held.mode(), LockMode::Shared);
            RawGuard::release(held).unwrap();
            println!("ok");
        }
        "absurd-wait" => {
            let again = FileLock::open(&args[0]).unwrap();
            let error = again.lock_for(Duration::MAX).map(drop).unwrap_err();
            println!("{error}");
        }
        "hold-max" => {
            let n: usize = args[2].parse().unwrap();
            let locks: Vec<FileLock> = (0..=n)
                .map(|i| FileLock::open(format!("{dir}/max-{i}.lock")).unwrap())
                .collect();
            let mut held = Vec::new();
            for lock in &locks[..n] {
                held.push(lock.try_lock().unwrap());
            }
            let error = locks[n].try_lock().map(drop).unwrap_err();
            println!("{error}");
        }
        other => panic!("unknown misbehaviour {other}"),
    }
    drop(guard);
}
