//! The plugin side of the benchmark (`bench/`): one workload per mode, the
//! same loops the native and Python peers run.
//!
//! - `pairs PATH N`: N try-lock + release pairs on one handle (W1); prints
//!   the mean nanoseconds per pair, timed in the guest;
//! - `open-cycles PATH N`: N times open + try-lock + release + drop (W2);
//!   prints the mean nanoseconds per cycle;
//! - `count LOCK DATA N`: N increments of the number in DATA, each under
//!   LOCK (W3);
//! - `semaphore DIR NAME SLOTS N`: N acquire + release of a permit, each
//!   holder marking its slot busy with an exclusive create (W4); fails on a
//!   slot out of range or a slot held twice;
//! - `fair DIR NAME SLOTS MILLIS HOLD_US`: acquire, hold, release until
//!   MILLIS have passed (W4 fairness); prints `count max_wait_ns
//!   sum_wait_ns`;
//! - `redis-cycles NAME N`: N acquire + release of a Redis lock (W5);
//!   prints the mean nanoseconds per cycle;
//! - `redis-count NAME DATA N`: N increments of DATA under a Redis lock
//!   (W6);
//! - `handoff LOCK STAMPS ROUNDS ME HOLD_US`: two instances (ME 0 and 1)
//!   take turns on LOCK, each holding HOLD_US; the turn and the release
//!   time (wall clock, shared by processes) are in STAMPS; prints the
//!   release-to-next-holder latency's p50, p90 and max in ns (W3b);
//! - `hold-once PATH`: lock PATH (waiting), release, print `ok` (W8).
use std::fs;
use std::io::Write as _;
use std::time::{Duration, Instant};

use portalocker_guest::{FileLock, RedisLock, Semaphore};
use portalocker_test_programs::args;

fn main() {
    let args = args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let n = |s: &str| -> u32 { s.parse().expect("a count") };
    match args.as_slice() {
        ["pairs", path, count] => {
            let lock = FileLock::open(path).unwrap();
            let count = n(count);
            let started = Instant::now();
            for _ in 0..count {
                lock.try_lock().unwrap().release().unwrap();
            }
            println!(
                "{}",
                started.elapsed().as_nanos() / u128::from(count.max(1))
            );
        }
        ["pairs-logged", path, count] => {
            // As `pairs`, writing a line of the trace middleware's size to
            // standard error per call, as a plugin logging its own locks
            // would: what a log line costs through WASI, middleware or not.
            let lock = FileLock::open(path).unwrap();
            let count = n(count);
            let line = format!(
                "{{\"event\":\"logged\",\"lock\":\"{path}\"{}}}\n",
                " ".repeat(80)
            );
            let mut stderr = std::io::stderr();
            let started = Instant::now();
            for _ in 0..count {
                let guard = lock.try_lock().unwrap();
                stderr.write_all(line.as_bytes()).unwrap();
                guard.release().unwrap();
                stderr.write_all(line.as_bytes()).unwrap();
            }
            println!(
                "{}",
                started.elapsed().as_nanos() / u128::from(count.max(1))
            );
        }
        ["open-cycles", path, count] => {
            let count = n(count);
            let started = Instant::now();
            for _ in 0..count {
                let lock = FileLock::open(path).unwrap();
                lock.try_lock().unwrap().release().unwrap();
            }
            println!(
                "{}",
                started.elapsed().as_nanos() / u128::from(count.max(1))
            );
        }
        ["count", lock, data, count] => {
            let lock = FileLock::open(lock).unwrap();
            for _ in 0..n(count) {
                let guard = lock.lock().unwrap();
                increment(data);
                guard.release().unwrap();
            }
        }
        ["semaphore", dir, name, slots, count] => {
            let sem = Semaphore::open(name, n(slots), dir).unwrap();
            for _ in 0..n(count) {
                let permit = sem.acquire().unwrap();
                assert!(
                    permit.slot() < n(slots),
                    "slot {} out of range",
                    permit.slot()
                );
                let busy = format!("{dir}/{name}.busy.{}", permit.slot());
                fs::File::create_new(&busy)
                    .unwrap_or_else(|e| panic!("slot {} held twice: {e}", permit.slot()));
                fs::remove_file(&busy).unwrap();
                permit.release().unwrap();
            }
        }
        ["fair", dir, name, slots, millis, hold_us] => {
            let sem = Semaphore::open(name, n(slots), dir).unwrap();
            let until = Instant::now() + Duration::from_millis(u64::from(n(millis)));
            let hold = Duration::from_micros(u64::from(n(hold_us)));
            let (mut count, mut max_wait, mut sum_wait) = (0u64, 0u128, 0u128);
            while Instant::now() < until {
                let asked = Instant::now();
                let permit = sem.acquire().unwrap();
                let waited = asked.elapsed().as_nanos();
                (count, max_wait, sum_wait) = (count + 1, max_wait.max(waited), sum_wait + waited);
                std::thread::sleep(hold);
                permit.release().unwrap();
            }
            println!("{count} {max_wait} {sum_wait}");
        }
        ["redis-cycles", name, count] => {
            let lock = RedisLock::open(name, false).unwrap();
            let count = n(count);
            let started = Instant::now();
            for _ in 0..count {
                lock.lock().unwrap().release().unwrap();
            }
            println!(
                "{}",
                started.elapsed().as_nanos() / u128::from(count.max(1))
            );
        }
        ["redis-count", name, data, count] => {
            let lock = RedisLock::open(name, false).unwrap();
            for _ in 0..n(count) {
                let guard = lock.lock().unwrap();
                increment(data);
                guard.release().unwrap();
            }
        }
        ["handoff", lock, stamps, rounds, me, hold_us] => {
            handoff(lock, stamps, n(rounds), n(me), n(hold_us));
        }
        ["hold-once", path] => {
            let lock = FileLock::open(path).unwrap();
            lock.lock().unwrap().release().unwrap();
            println!("ok");
        }
        _ => panic!("unknown arguments {args:?}; see the source for usage"),
    }
}

/// W3b: take turns with the other instance; print the latency quantiles.
fn handoff(lock: &str, stamps: &str, rounds: u32, me: u32, hold_us: u32) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
    };
    let me = u8::try_from(me).expect("ME is 0 or 1");
    let lock = FileLock::open(lock).unwrap();
    let mut stamp_file = fs::File::options()
        .read(true)
        .write(true)
        .open(stamps)
        .unwrap();
    let hold = Duration::from_micros(u64::from(hold_us));
    let mut latencies = Vec::new();
    let mut turns = 0;
    while turns < rounds {
        let guard = lock.lock().unwrap();
        let acquired = now();
        let mut buf = [0u8; 16];
        stamp_file.seek(SeekFrom::Start(0)).unwrap();
        stamp_file.read_exact(&mut buf).unwrap();
        let released = i64::from_le_bytes(buf[8..16].try_into().unwrap());
        if buf[0] != me {
            guard.release().unwrap();
            std::thread::yield_now();
            continue;
        }
        if released != 0 && me == 0 {
            latencies.push(acquired - released);
        }
        turns += 1;
        std::thread::sleep(hold);
        buf[0] = 1 - me;
        buf[8..16].copy_from_slice(&now().to_le_bytes());
        stamp_file.seek(SeekFrom::Start(0)).unwrap();
        stamp_file.write_all(&buf).unwrap();
        guard.release().unwrap();
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    println!("{} {} {}", at(0.5), at(0.9), at(1.0));
}

/// Add one to the decimal number in `data` (missing or empty is 0).
fn increment(data: &str) {
    let value: u64 = fs::read_to_string(data)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    fs::write(data, (value + 1).to_string()).unwrap();
}
