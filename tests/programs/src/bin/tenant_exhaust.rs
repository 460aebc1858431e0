//! `WHAT COUNT DIR`: a hostile tenant that opens handles in a loop until
//! the host refuses, keeping everything it got. WHAT is `semaphores`,
//! `file-locks` (each locked and released once), `long-paths`,
//! `held-locks`, `redis-locks` (each locked and released once) or
//! `redis-held`. Says `start` and waits for a line, says `opened N
//! OUTCOME`, checks that its own WASI file calls still work (after letting
//! held locks go), says `ready` and waits for a line.
use std::any::Any;

use portalocker_guest::{Error, FileLock, RedisLock, Semaphore};
use portalocker_test_programs::{args, wait_for_line};

/// Keep a lock for the rest of the program, so guards can borrow it.
fn keep<T>(lock: T) -> &'static T {
    Box::leak(Box::new(lock))
}

fn open_one(what: &str, i: usize, dir: &str, kept: &mut Vec<Box<dyn Any>>) -> Result<(), Error> {
    match what {
        "semaphores" => kept.push(Box::new(Semaphore::open(format!("s{i}"), 4, dir)?)),
        "file-locks" => {
            let lock = keep(FileLock::open(format!("{dir}/f{i}.lock"))?);
            lock.try_lock()?.release()?;
        }
        "long-paths" => {
            let long = "x".repeat(1500);
            kept.push(Box::new(FileLock::open(format!(
                "{dir}/{i}/{long}/{long}"
            ))?));
        }
        "held-locks" => {
            let lock = keep(FileLock::open(format!("{dir}/h{i}.lock"))?);
            kept.push(Box::new(lock.try_lock()?));
        }
        "redis-locks" => {
            let lock = keep(RedisLock::open(format!("r{i}"), false)?);
            lock.try_lock()?.release()?;
        }
        "redis-held" => {
            let lock = keep(RedisLock::open(format!("held{i}"), false)?);
            kept.push(Box::new(lock.try_lock()?));
        }
        other => panic!("unknown kind {other}"),
    }
    Ok(())
}

fn main() {
    let args = args();
    let (what, count, dir) = (&args[0], args[1].parse::<usize>().unwrap(), &args[2]);
    println!("start");
    wait_for_line();
    let mut kept: Vec<Box<dyn Any>> = Vec::new();
    let mut opened = 0;
    let mut outcome = "all".to_owned();
    for i in 0..count {
        if let Err(e) = open_one(what, i, dir, &mut kept) {
            outcome = format!("{e:?}");
            break;
        }
        opened += 1;
    }
    println!("opened {opened} {outcome}");
    if what == "held-locks" {
        // Held locks hold descriptors: let them go, so the host has some
        // for the plugin's own files.
        kept.clear();
    }
    let alive = format!("{dir}/alive.txt");
    std::fs::write(&alive, "still working").expect("a WASI write after the loop");
    assert_eq!(std::fs::read_to_string(&alive).unwrap(), "still working");
    println!("ready");
    wait_for_line();
    drop(kept);
}
