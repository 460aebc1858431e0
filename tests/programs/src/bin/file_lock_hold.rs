//! Take the lock at the path given, say so, hold it until a line arrives.
use portalocker_guest::FileLock;
use portalocker_test_programs::{args, wait_for_line};

fn main() {
    let args = args();
    let lock = FileLock::open(&args[0]).unwrap();
    let guard = if args.get(1).map(String::as_str) == Some("shared") {
        lock.lock_shared()
    } else {
        lock.lock()
    }
    .unwrap();
    println!("locked");
    wait_for_line();
    guard.release().unwrap();
    println!("released");
}
