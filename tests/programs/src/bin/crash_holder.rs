//! A holder for the crash matrix (`tests/tests/crash_matrix.rs`): N times,
//! take a lock, enter it in the journal, hold, commit an increment, leave,
//! release; the same journal lines as `lockworker journal` and the Python
//! worker's (see `portalocker_tests::journal`).
//!
//! ```text
//! crash_holder JOURNAL WHO N HOLD_US file LOCK
//! crash_holder JOURNAL WHO N HOLD_US read LOCK
//! crash_holder JOURNAL WHO N HOLD_US sem DIR NAME SLOTS
//! crash_holder JOURNAL WHO N HOLD_US redis NAME
//! crash_holder JOURNAL WHO N HOLD_US redis-read NAME
//! ```
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use portalocker_guest::{FileLock, RedisLock, Semaphore};
use portalocker_test_programs::args;

/// The journal's format and its fenced value, shared with the native
/// workers and the checker.
#[allow(dead_code, reason = "the holder writes; the checker is the host's")]
#[path = "../../../src/journal.rs"]
mod journal;

fn append(journal: &str, line: &str) {
    journal::append(Path::new(journal), line).expect("a journal line");
}

fn last_value(journal: &str) -> u64 {
    journal::last_value(Path::new(journal)).expect("the journal")
}

fn commit(journal: &str, who: &str, hold: Duration, token: u64) {
    append(journal, &format!("E {who} {token}"));
    sleep(hold);
    let value = last_value(journal);
    append(journal, &format!("C {} {who} {token}", value + 1));
    append(journal, &format!("L {who}"));
}

fn main() {
    let args = args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let [journal, who, n, hold_us, kind @ ..] = args.as_slice() else {
        panic!("usage: JOURNAL WHO N HOLD_US KIND ARGS...");
    };
    let hold = Duration::from_micros(hold_us.parse().expect("microseconds"));
    for _ in 0..n.parse::<u32>().expect("a count") {
        match kind {
            ["file", lock] => {
                let lock = FileLock::open(lock).unwrap();
                let guard = lock.lock().unwrap();
                commit(journal, who, hold, 0);
                guard.release().unwrap();
            }
            ["read", lock] => {
                let lock = FileLock::open(lock).unwrap();
                let guard = lock.lock_shared().unwrap();
                append(journal, &format!("S {who}"));
                sleep(hold);
                append(journal, &format!("T {who}"));
                guard.release().unwrap();
            }
            ["sem", dir, name, slots] => {
                let sem = Semaphore::open(name, slots.parse().unwrap(), dir).unwrap();
                let permit = sem.acquire().unwrap();
                let stem = journal.rsplit_once('.').map_or(*journal, |(stem, _)| stem);
                commit(&format!("{stem}.{}", permit.slot()), who, hold, 0);
                permit.release().unwrap();
            }
            ["redis", name] => {
                let lock = RedisLock::open(name, true).unwrap();
                let guard = lock.lock().unwrap();
                let token = guard.fencing_token().unwrap_or(0);
                append(journal, &format!("E {who} {token}"));
                sleep(hold);
                let value = last_value(journal);
                if guard.is_lost() {
                    append(journal, &format!("X {who}"));
                } else {
                    append(journal, &format!("C {} {who} {token}", value + 1));
                    append(journal, &format!("L {who}"));
                }
                drop(guard);
            }
            ["redis-read", name] => {
                let lock = RedisLock::open(name, true).unwrap();
                let guard = lock.lock_shared().unwrap();
                let token = guard.fencing_token().unwrap_or(0);
                append(journal, &format!("S {who} {token}"));
                sleep(hold);
                let lost = guard.is_lost();
                append(journal, &format!("{} {who}", if lost { "X" } else { "T" }));
                drop(guard);
            }
            _ => panic!("unknown lock kind {kind:?}"),
        }
    }
}
