//! `DIR NAME SLOTS`: take a slot, say which, hold it until a line arrives.
use portalocker_guest::Semaphore;
use portalocker_test_programs::{args, wait_for_line};

fn main() {
    let args = args();
    let sem = Semaphore::open(&args[1], args[2].parse().unwrap(), &args[0]).unwrap();
    let permit = sem.acquire().unwrap();
    println!("slot {}", permit.slot());
    wait_for_line();
    permit.release().unwrap();
}
