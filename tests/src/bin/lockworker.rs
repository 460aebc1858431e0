//! A worker process for the cross-process tests; see the crate docs.
//!
//! ```text
//! lockworker hold LOCK [--shared]             hold until stdin closes
//! lockworker try LOCK                          exit 0 if it could lock, 3 if busy
//! lockworker count LOCK DATA N                 N locked increments of DATA
//! lockworker fenced-count LOCK DATA TOKENS N   the same, each drawing a fencing
//!                                              token above the last in TOKENS
//! lockworker sem-hold DIR NAME SLOTS           hold a slot until stdin closes
//! lockworker sem-count DIR NAME SLOTS N TRACK  N slot holds, tracking peak concurrency
//! lockworker pid-hold PIDFILE                  hold a PID-file lock until stdin closes
//! lockworker pid-try PIDFILE                   print "acquired" or "held-by PID"
//! lockworker redis-hold URL NAME [shared|fencing]  hold until stdin closes; then
//!                                              print "lost" or "held"
//! lockworker redis-try URL NAME [shared]       exit 0 if it could lock, 3 if busy
//! lockworker redis-count URL NAME DATA N       N Redis-locked increments of DATA
//! lockworker journal JOURNAL WHO N HOLD_US KIND ARGS...
//!                                              N journaled holds for the crash
//!                                              matrix (KIND: file LOCK, read LOCK,
//!                                              temporary LOCK, pid FILE, sem DIR NAME
//!                                              SLOTS, redis URL NAME, redis-read URL NAME)
//! ```

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use portalocker::redis::RedisLock;
use portalocker::{BoundedSemaphore, Lock, PidFileLock, PidLock, TemporaryFileLock, Wait};
use portalocker_tests::{journal, read_counter, write_counter};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["hold", lock] => hold(Lock::new(lock).wait(Wait::FOREVER).acquire()?),
        ["hold", lock, "--shared"] => hold(Lock::new(lock).shared().wait(Wait::FOREVER).acquire()?),
        ["try", lock] => match Lock::new(lock).try_acquire() {
            Ok(_) => Ok(()),
            Err(e) if e.is_contention() => std::process::exit(3),
            Err(e) => Err(e.into()),
        },
        ["count", lock, data, n] => {
            let lock = Lock::new(lock).wait(Wait::FOREVER);
            for _ in 0..n.parse::<u64>()? {
                let guard = lock.acquire()?;
                let value = read_counter(Path::new(data))?;
                write_counter(Path::new(data), value + 1)?;
                guard.release()?;
            }
            Ok(())
        }
        ["fenced-count", lock, data, tokens, n] => {
            let lock = Lock::new(lock).wait(Wait::FOREVER);
            for _ in 0..n.parse::<u64>()? {
                let guard = lock.acquire()?;
                let token = guard.draw_fencing_token()?;
                let last = read_counter(Path::new(tokens))?;
                if token <= last {
                    bail!("fencing token {token} is not above the last one, {last}");
                }
                write_counter(Path::new(tokens), token)?;
                let value = read_counter(Path::new(data))?;
                write_counter(Path::new(data), value + 1)?;
                guard.release()?;
            }
            Ok(())
        }
        ["sem-hold", dir, name, slots] => {
            let permit = semaphore(dir, name, slots)?.acquire()?;
            println!("slot {}", permit.slot());
            io::stdout().flush()?;
            wait_for_stdin_close();
            Ok(permit.release()?)
        }
        ["sem-count", dir, name, slots, n, track] => {
            let sem = semaphore(dir, name, slots)?;
            for _ in 0..n.parse::<u64>()? {
                let permit = sem.acquire()?;
                track_inside(Path::new(track), 1)?;
                thread::sleep(Duration::from_millis(2));
                track_inside(Path::new(track), -1)?;
                permit.release()?;
            }
            Ok(())
        }
        ["pid-hold", path] => {
            let guard = PidFileLock::new(path).acquire()?;
            println!("locked");
            io::stdout().flush()?;
            wait_for_stdin_close();
            Ok(guard.release()?)
        }
        ["pid-try", path] => {
            match PidFileLock::new(path).acquire_or_holder()? {
                PidLock::Acquired(_) => println!("acquired"),
                PidLock::HeldBy(pid) => println!("held-by {pid}"),
            }
            Ok(())
        }
        ["redis-hold", url, name, options @ ..] => {
            let lock = redis_lock(url, name, options)?.wait(Wait::up_to(Duration::from_secs(60)));
            let guard = lock.acquire()?;
            match guard.fencing_token() {
                Some(token) => println!("locked {token}"),
                None => println!("locked"),
            }
            io::stdout().flush()?;
            wait_for_stdin_close();
            println!("{}", if guard.is_lost() { "lost" } else { "held" });
            drop(guard);
            Ok(())
        }
        ["redis-try", url, name, options @ ..] => {
            let lock = redis_lock(url, name, options)?.wait(Wait::NONE);
            match lock.acquire() {
                Ok(guard) => {
                    if let Some(ms) = options.iter().find_map(|o| o.strip_prefix("hold=")) {
                        std::thread::sleep(Duration::from_millis(ms.parse()?));
                    }
                    Ok(guard.release()?)
                }
                Err(e) if e.is_contention() => std::process::exit(3),
                Err(e) => Err(e.into()),
            }
        }
        ["redis-wait", url, name, timeout, hold, options @ ..] => {
            let lock = redis_lock(url, name, options)?
                .wait(Wait::up_to(Duration::from_secs_f64(timeout.parse()?)));
            let started = Instant::now();
            let guard = match lock.acquire() {
                Ok(guard) => guard,
                Err(e) if e.is_contention() => std::process::exit(3),
                Err(e) => return Err(e.into()),
            };
            let waited = started.elapsed().as_millis();
            match guard.fencing_token() {
                Some(token) => println!("got {waited} {token}"),
                None => println!("got {waited}"),
            }
            io::stdout().flush()?;
            std::thread::sleep(Duration::from_millis(hold.parse()?));
            match guard.ensure_held() {
                Ok(()) => println!("held"),
                Err(e) => println!("lost: {e}"),
            }
            drop(guard);
            Ok(())
        }
        ["redis-loop", url, name, hold, secs] => {
            let lock = redis_lock(url, name, &[])?.wait(Wait::FOREVER);
            let until = Instant::now() + Duration::from_secs_f64(secs.parse()?);
            let mut sections = 0;
            while Instant::now() < until {
                let guard = lock.acquire()?;
                std::thread::sleep(Duration::from_millis(hold.parse()?));
                guard.release()?;
                sections += 1;
            }
            println!("{sections}");
            Ok(())
        }
        ["redis-count", url, name, data, n] => {
            let lock = redis_lock(url, name, &[])?.wait(Wait::up_to(Duration::from_secs(120)));
            for _ in 0..n.parse::<u64>()? {
                let guard = lock.acquire()?;
                let value = read_counter(Path::new(data))?;
                write_counter(Path::new(data), value + 1)?;
                guard.release()?;
            }
            Ok(())
        }
        ["journal", journal, who, n, hold_us, kind @ ..] => {
            let journal = Path::new(journal);
            let hold = Duration::from_micros(hold_us.parse()?);
            for _ in 0..n.parse::<u64>()? {
                journal_round(journal, who, hold, kind)?;
            }
            Ok(())
        }
        _ => bail!("unknown arguments {args:?}; see the source for usage"),
    }
}

/// One hold for the crash matrix (see `portalocker_tests::journal`): take
/// the lock of `kind`, enter, hold, commit an increment (or, on a Redis lock
/// found lost, say so and write nothing), leave, release.
fn journal_round(journal: &Path, who: &str, hold: Duration, kind: &[&str]) -> Result<()> {
    let commit = |journal: &Path, token: u64| -> Result<()> {
        journal::append(journal, &format!("E {who} {token}"))?;
        thread::sleep(hold);
        let value = journal::last_value(journal)?;
        journal::append(journal, &format!("C {} {who} {token}", value + 1))?;
        journal::append(journal, &format!("L {who}"))?;
        Ok(())
    };
    match kind {
        ["file", lock] => {
            let guard = Lock::new(lock).wait(Wait::FOREVER).acquire()?;
            commit(journal, 0)?;
            guard.release()?;
        }
        ["read", lock] => {
            let guard = Lock::new(lock).shared().wait(Wait::FOREVER).acquire()?;
            journal::append(journal, &format!("S {who}"))?;
            thread::sleep(hold);
            journal::append(journal, &format!("T {who}"))?;
            guard.release()?;
        }
        ["temporary", lock] => {
            let guard = TemporaryFileLock::new(lock).wait(Wait::FOREVER).acquire()?;
            commit(journal, 0)?;
            guard.release()?;
        }
        ["pid", lock] => {
            let guard = PidFileLock::new(lock).wait(Wait::FOREVER).acquire()?;
            commit(journal, 0)?;
            guard.release()?;
        }
        ["sem", dir, name, slots] => {
            let permit = semaphore(dir, name, slots)?.acquire()?;
            let journal = journal.with_extension(permit.slot().to_string());
            commit(&journal, 0)?;
            permit.release()?;
        }
        ["redis", url, name] => {
            let lock = redis_lock(url, name, &["fencing"])?.wait(Wait::FOREVER);
            let guard = lock.acquire()?;
            let token = guard.fencing_token().unwrap_or(0);
            journal::append(journal, &format!("E {who} {token}"))?;
            thread::sleep(hold);
            let value = journal::last_value(journal)?;
            if guard.is_lost() {
                journal::append(journal, &format!("X {who}"))?;
            } else {
                journal::append(journal, &format!("C {} {who} {token}", value + 1))?;
                journal::append(journal, &format!("L {who}"))?;
            }
            drop(guard);
        }
        ["redis-read", url, name] => {
            let lock = redis_lock(url, name, &["shared", "fencing"])?.wait(Wait::FOREVER);
            let guard = lock.acquire()?;
            let token = guard.fencing_token().unwrap_or(0);
            journal::append(journal, &format!("S {who} {token}"))?;
            thread::sleep(hold);
            let lost = guard.is_lost();
            journal::append(journal, &format!("{} {who}", if lost { "X" } else { "T" }))?;
            drop(guard);
        }
        _ => bail!("unknown lock kind {kind:?}"),
    }
    Ok(())
}

fn redis_lock(url: &str, name: &str, options: &[&str]) -> Result<RedisLock> {
    let mut lock = RedisLock::open(url, name)?;
    for option in options {
        lock = match *option {
            "shared" => lock.shared(),
            "fencing" => lock.fencing(true),
            hold if hold.starts_with("hold=") => lock,
            other => bail!("unknown option {other}"),
        };
    }
    Ok(lock)
}

fn semaphore(dir: &str, name: &str, slots: &str) -> Result<BoundedSemaphore> {
    Ok(BoundedSemaphore::new(slots.parse()?, name)?
        .directory(dir)
        .wait(Wait::FOREVER))
}

fn hold(guard: portalocker::LockGuard) -> Result<()> {
    println!("locked");
    io::stdout().flush()?;
    wait_for_stdin_close();
    Ok(guard.release()?)
}

fn wait_for_stdin_close() {
    for line in io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
}

/// Under `TRACK/track.lock`, add `delta` to `TRACK/inside` and raise
/// `TRACK/peak` to it if higher.
fn track_inside(track: &Path, delta: i64) -> Result<()> {
    let guard = Lock::new(track.join("track.lock"))
        .wait(Wait::FOREVER)
        .acquire()?;
    let inside = read_counter(&track.join("inside"))? as i64 + delta;
    if inside < 0 {
        bail!("more releases than holds");
    }
    write_counter(&track.join("inside"), inside as u64)?;
    let peak = read_counter(&track.join("peak"))?;
    if inside as u64 > peak {
        write_counter(&track.join("peak"), inside as u64).context("peak")?;
    }
    guard.release()?;
    Ok(())
}
