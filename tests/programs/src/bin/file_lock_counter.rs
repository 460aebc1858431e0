//! `LOCK DATA N`: N increments of the number in DATA, each under LOCK.
use std::fs;

use portalocker_guest::FileLock;
use portalocker_test_programs::args;

fn main() {
    let args = args();
    let lock = FileLock::open(&args[0]).unwrap();
    let n: u32 = args[2].parse().unwrap();
    for _ in 0..n {
        let guard = lock.lock().unwrap();
        let value: u64 = fs::read_to_string(&args[1])
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        fs::write(&args[1], (value + 1).to_string()).unwrap();
        guard.release().unwrap();
    }
}
