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
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::thread::sleep;
use std::time::Duration;

use portalocker_guest::{FileLock, RedisLock, Semaphore};
use portalocker_test_programs::args;

fn append(journal: &str, line: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal)
        .expect("the journal");
    file.write_all(format!("{line}\n").as_bytes())
        .expect("a journal line");
}

/// The journal's value: the last commit with a current token (a fenced
/// resource rejects older tokens); as `portalocker_tests::journal`.
fn last_value(journal: &str) -> u64 {
    let text = fs::read_to_string(journal).unwrap_or_default();
    let (mut top, mut value) = (0_u64, 0_u64);
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["E", _, token] => top = top.max(token.parse().unwrap_or(0)),
            ["C", v, _, token] => {
                let token: u64 = token.parse().unwrap_or(0);
                if token == 0 || token >= top {
                    value = v.parse().unwrap_or(value);
                }
            }
            _ => {}
        }
    }
    value
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
                let lock = RedisLock::open(name, false).unwrap();
                let guard = lock.lock_shared().unwrap();
                append(journal, &format!("S {who}"));
                sleep(hold);
                let lost = guard.is_lost();
                append(journal, &format!("{} {who}", if lost { "X" } else { "T" }));
                drop(guard);
            }
            _ => panic!("unknown lock kind {kind:?}"),
        }
    }
}
