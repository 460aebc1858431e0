//! The worker processes of the multi-process workloads
//! (`portalocker-bench worker MODE ...`), each speaking the barrier
//! protocol of [`crate::procs`]:
//!
//! - `raw-count LOCK DATA N`: blocking `flock(2)` on a kept descriptor (the
//!   limit of W3);
//! - `count LOCK DATA N`: our `Lock`, waiting forever;
//! - `handoff KIND LOCK STAMPS ROUNDS ME HOLD_US`: W3b's strict alternation
//!   with `raw` flock, `ours` (parked) or `ours-timed` (a timed wait);
//! - `semaphore DIR NAME SLOTS N` and `fair DIR NAME SLOTS MILLIS HOLD_US`:
//!   our `BoundedSemaphore` (W4);
//! - `redis-count URL NAME DATA N`: our `RedisLock` (W6);
//! - `w8 KIND DIR N`: W8's waiters (see [`crate::plugin::w8`]);
//! - `plugin DIR REDIS_URL|- ARGS...`: the benchmark plugin under the host,
//!   with DIR granted as `/data` (and Redis when given).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use portalocker::redis::RedisLock;
use portalocker::{BoundedSemaphore, Lock, LockFlags, Wait};
use portalocker_tests::host::Run;
use portalocker_tests::{read_counter, write_counter};

use crate::procs::{barrier, done, now_ns};
use crate::report::quantile;

/// Run the worker mode `args`.
///
/// # Errors
///
/// When the mode fails or its check does.
pub fn main(args: &[String]) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let n = |s: &str| -> Result<u64> { s.parse().with_context(|| format!("a number: {s:?}")) };
    match args.as_slice() {
        ["raw-count", lock, data, count] => {
            let file = open(lock)?;
            let start = barrier();
            for _ in 0..n(count)? {
                flock(&file, libc::LOCK_EX)?;
                increment(data)?;
                flock(&file, libc::LOCK_UN)?;
            }
            done(start, "");
        }
        ["count", lock, data, count] => {
            let lock = Lock::new(lock).wait(Wait::FOREVER);
            let start = barrier();
            for _ in 0..n(count)? {
                let guard = lock.acquire()?;
                increment(data)?;
                guard.release()?;
            }
            done(start, "");
        }
        ["handoff", kind, lock, stamps, rounds, me, hold_us] => {
            handoff(kind, lock, stamps, n(rounds)?, n(me)? as u8, n(hold_us)?)?;
        }
        ["semaphore", dir, name, slots, count] => {
            let slots = n(slots)? as usize;
            let sem = BoundedSemaphore::new(slots, *name)?
                .directory(dir)
                .wait(Wait::FOREVER);
            let start = barrier();
            for _ in 0..n(count)? {
                let permit = sem.acquire()?;
                if permit.slot() >= slots {
                    bail!("slot {} out of range", permit.slot());
                }
                let busy = Path::new(dir).join(format!("{name}.busy.{}", permit.slot()));
                File::create_new(&busy)
                    .with_context(|| format!("slot {} held twice", permit.slot()))?;
                std::fs::remove_file(&busy)?;
                permit.release()?;
            }
            done(start, "");
        }
        ["fair", dir, name, slots, millis, hold_us] => {
            let sem = BoundedSemaphore::new(n(slots)? as usize, *name)?
                .directory(dir)
                .wait(Wait::FOREVER);
            let hold = Duration::from_micros(n(hold_us)?);
            let start = barrier();
            let until = Instant::now() + Duration::from_millis(n(millis)?);
            let (mut count, mut max_wait, mut sum_wait) = (0u64, 0u128, 0u128);
            while Instant::now() < until {
                let asked = Instant::now();
                let permit = sem.acquire()?;
                let waited = asked.elapsed().as_nanos();
                (count, max_wait, sum_wait) = (count + 1, max_wait.max(waited), sum_wait + waited);
                std::thread::sleep(hold);
                permit.release()?;
            }
            done(start, &format!("{count} {max_wait} {sum_wait}"));
        }
        ["redis-count", url, name, data, count] => {
            let lock = RedisLock::open(url, name)?.wait(Wait::FOREVER);
            let start = barrier();
            for _ in 0..n(count)? {
                let guard = lock.acquire()?;
                increment(data)?;
                guard.release()?;
            }
            done(start, "");
        }
        ["plugin", dir, redis, guest @ ..] => {
            let mut run = Run::new(crate::plugin::program(), guest).grant(Path::new(dir), "/data");
            if *redis != "-" {
                run = run.redis(redis, "");
            }
            crate::plugin::warm();
            let start = barrier();
            let outcome = run.sync();
            if let Err(e) = &outcome.result {
                bail!("the plugin failed: {e}\n{}", outcome.stderr);
            }
            done(start, outcome.stdout.trim());
        }
        ["w8", kind, dir, count] => {
            let start = barrier();
            let waiters = crate::plugin::w8(kind, Path::new(dir), n(count)? as usize)?;
            done(
                start,
                &format!(
                    "{} {} {}",
                    waiters.threads, waiters.rss_kib_per_waiter, waiters.handoffs_per_sec
                ),
            );
        }
        _ => bail!("unknown worker arguments {args:?}; see bench/src/worker.rs"),
    }
    Ok(())
}

/// Open (creating) a lock file.
pub fn open(path: &str) -> Result<File> {
    Ok(File::options()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?)
}

/// `flock(2)`, retried on `EINTR`.
pub fn flock(file: &File, operation: i32) -> Result<()> {
    loop {
        // SAFETY: a valid descriptor and a valid operation.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e.into());
        }
    }
}

fn increment(data: &str) -> Result<()> {
    let path = Path::new(data);
    write_counter(path, read_counter(path)? + 1)?;
    Ok(())
}

/// W3b: two processes strictly alternate on one lock. The one whose turn it
/// is passes the turn, lets the other block in its lock call for HOLD_US,
/// stamps the release and releases; the other stamps its acquisition. The
/// process with ME = 0 reports the p50, p90 and max latency.
fn handoff(kind: &str, lock: &str, stamps: &str, rounds: u64, me: u8, hold_us: u64) -> Result<()> {
    let file = open(lock)?;
    let mut stamp_file = File::options().read(true).write(true).open(stamps)?;
    let hold = Duration::from_micros(hold_us);
    let take = |file: &File| -> Result<()> {
        match kind {
            "raw" => flock(file, libc::LOCK_EX),
            "ours" => Ok(portalocker::lock(file, LockFlags::EXCLUSIVE)?),
            "ours-timed" => Ok(portalocker::lock_timeout(
                file,
                portalocker::LockMode::Exclusive,
                Duration::from_secs(600),
            )?),
            other => bail!("unknown handoff kind {other:?}"),
        }
    };
    let mut latencies = Vec::new();
    let start = barrier();
    let mut turns = 0;
    while turns < rounds {
        take(&file)?;
        let acquired = now_ns();
        let mut buf = [0u8; 16];
        stamp_file.seek(SeekFrom::Start(0))?;
        stamp_file.read_exact(&mut buf)?;
        let released = i64::from_le_bytes(buf[8..16].try_into()?);
        if buf[0] != me {
            flock(&file, libc::LOCK_UN)?;
            std::thread::yield_now();
            continue;
        }
        if released != 0 && me == 0 {
            latencies.push((acquired - released) as f64);
        }
        turns += 1;
        std::thread::sleep(hold);
        buf[0] = 1 - me;
        buf[8..16].copy_from_slice(&now_ns().to_le_bytes());
        stamp_file.seek(SeekFrom::Start(0))?;
        stamp_file.write_all(&buf)?;
        flock(&file, libc::LOCK_UN)?;
    }
    latencies.sort_by(f64::total_cmp);
    done(
        start,
        &format!(
            "{} {} {}",
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.9),
            quantile(&latencies, 1.0)
        ),
    );
    Ok(())
}
