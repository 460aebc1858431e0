//! `KIND MODE NAME`: wait as long as it takes for a `file` lock (NAME a
//! path), a `semaphore` slot (NAME a directory; slots `pool.NN.lock`, two of
//! them) or a `redis` lock, exclusive or `shared`; say `held`, hold it a
//! moment, release it. The cancellation tests drop it anywhere on the way.
use std::time::Duration;

use portalocker_guest::{FileLock, RedisLock, Semaphore};
use portalocker_test_programs::args;

fn main() {
    let args = args();
    let shared = args[1] == "shared";
    let hold = || std::thread::sleep(Duration::from_millis(1));
    match args[0].as_str() {
        "file" => {
            let lock = FileLock::open(&args[2]).unwrap();
            let guard = if shared {
                lock.lock_shared()
            } else {
                lock.lock()
            }
            .unwrap();
            println!("held");
            hold();
            guard.release().unwrap();
        }
        "semaphore" => {
            let sem = Semaphore::open("pool", 2, &args[2]).unwrap();
            let permit = sem.acquire().unwrap();
            println!("held");
            hold();
            permit.release().unwrap();
        }
        "redis" => {
            let lock = RedisLock::open(&args[2], true).unwrap();
            let guard = if shared {
                lock.lock_shared()
            } else {
                lock.lock()
            }
            .unwrap();
            println!("held");
            hold();
            guard.release().unwrap();
        }
        other => panic!("unknown kind {other}"),
    }
}
