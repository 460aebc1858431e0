//! Rough figures for design §5 W1 and W3b, native side only (the full
//! benchmark with the peers side by side has its own issue):
//!
//! - W1: exclusive lock + unlock of an open file, ours vs raw `flock`;
//! - W3b: handoff latency between two processes strictly alternating on one
//!   lock: the holder stamps the release, the waiter blocked in its lock call
//!   stamps the acquisition (`CLOCK_MONOTONIC` is shared across processes).
//!
//! `cargo run --release --example quick_figures`

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use portalocker::{LockFlags, LockMode};

fn w1(path: &Path) {
    let file = File::create(path).unwrap();
    let n = 200_000;
    let flags = LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING;
    for round in 0..3 {
        let started = Instant::now();
        for _ in 0..n {
            portalocker::lock(&file, flags).unwrap();
            portalocker::unlock(&file).unwrap();
        }
        let ours = started.elapsed() / n;
        #[cfg(unix)]
        let raw = {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            let started = Instant::now();
            for _ in 0..n {
                // SAFETY: a valid fd.
                unsafe {
                    assert_eq!(libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB), 0);
                    assert_eq!(libc::flock(fd, libc::LOCK_UN), 0);
                }
            }
            started.elapsed() / n
        };
        #[cfg(not(unix))]
        let raw = Duration::ZERO;
        println!(
            "W1 round {round}: ours {:?}/pair, raw flock {:?}/pair, ratio {:.2}",
            ours,
            raw,
            ours.as_secs_f64() / raw.as_secs_f64()
        );
    }
}

#[cfg(unix)]
fn now_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// W3b: parent and child alternate on `lock`; a pipe-free protocol through
/// a shared "turn" file would add noise, so each side writes its release
/// stamp into a stamps file under the lock and the other reads it.
#[cfg(unix)]
fn w3b(dir: &Path, timed: bool) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let rounds = 2000;
    let lock_path = dir.join("w3b.lock");
    let stamp_path = dir.join("w3b.stamp");
    std::fs::write(&stamp_path, [0u8; 16]).unwrap();
    // SAFETY: fork in a single-threaded example before any thread exists.
    let pid = unsafe { libc::fork() };
    let me = if pid == 0 { 1u8 } else { 0u8 };
    let lock_file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .unwrap();
    let mut stamps = File::options()
        .read(true)
        .write(true)
        .open(&stamp_path)
        .unwrap();
    let mut latencies = Vec::new();
    let mut my_turns = 0;
    while my_turns < rounds {
        if timed {
            portalocker::lock_timeout(&lock_file, LockMode::Exclusive, Duration::from_secs(30))
                .unwrap();
        } else {
            portalocker::lock(&lock_file, LockFlags::EXCLUSIVE).unwrap();
        }
        let acquired = now_ns();
        let mut buf = [0u8; 16];
        stamps.seek(SeekFrom::Start(0)).unwrap();
        stamps.read_exact(&mut buf).unwrap();
        let turn = buf[0];
        let released = i64::from_le_bytes(buf[8..16].try_into().unwrap());
        if turn != me {
            // Not ours: let go and wait for the other to take its turn.
            portalocker::unlock(&lock_file).unwrap();
            std::thread::yield_now();
            continue;
        }
        if released != 0 && me == 0 {
            latencies.push(acquired - released);
        }
        my_turns += 1;
        // Give the turn away, let the other block in its lock call, stamp, release.
        std::thread::sleep(Duration::from_micros(300));
        buf[0] = 1 - me;
        buf[8..16].copy_from_slice(&now_ns().to_le_bytes());
        stamps.seek(SeekFrom::Start(0)).unwrap();
        stamps.write_all(&buf).unwrap();
        portalocker::unlock(&lock_file).unwrap();
    }
    if pid == 0 {
        std::process::exit(0);
    }
    // SAFETY: reaps the child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    latencies.sort_unstable();
    let pick = |q: f64| {
        Duration::from_nanos(latencies[((latencies.len() - 1) as f64 * q) as usize] as u64)
    };
    println!(
        "W3b ({}): handoff p50 {:?} p90 {:?} max {:?} over {} handoffs",
        if timed {
            "lock_timeout 30 s"
        } else {
            "blocking lock"
        },
        pick(0.5),
        pick(0.9),
        pick(1.0),
        latencies.len()
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    w1(&dir.path().join("w1.lock"));
    #[cfg(unix)]
    {
        w3b(dir.path(), false);
        w3b(dir.path(), true);
    }
}
