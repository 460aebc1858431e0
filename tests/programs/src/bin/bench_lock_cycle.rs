//! `PATH N`: N try-lock + release pairs on one lock file; prints the mean
//! nanoseconds per pair (measured in the guest).
use std::time::Instant;

use portalocker_guest::FileLock;
use portalocker_test_programs::args;

fn main() {
    let args = args();
    let lock = FileLock::open(&args[0]).unwrap();
    let n: u32 = args[1].parse().unwrap();
    let started = Instant::now();
    for _ in 0..n {
        lock.try_lock().unwrap().release().unwrap();
    }
    println!("{}", started.elapsed().as_nanos() / u128::from(n.max(1)));
}
