//! Cancellation: waits dropped at random points, thousands of times, leave
//! nothing behind. Checked from outside: every lock free again, nothing
//! subscribed, no connection left named after the lock, and no fencing
//! token drawn by an acquisition that was dropped.
//!
//! `PORTALOCKER_STRESS=N` multiplies the rounds (`scripts/stress.sh`).

use std::path::Path;
use std::time::{Duration, Instant};

use portalocker::redis::{Pool, RedisLock};
use portalocker::{BoundedSemaphore, Lock, LockMode, Wait};
use portalocker_tests::host::Run;
use portalocker_tests::programs::WAIT_AND_HOLD;
use portalocker_tests::redis_server::RedisServer;

/// The rounds of a test, scaled by `PORTALOCKER_STRESS`.
fn rounds(base: usize) -> usize {
    let scale = std::env::var("PORTALOCKER_STRESS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1);
    base * scale.max(1)
}

/// A random point to cut a wait at: often within the first steps (a
/// millisecond or two), sometimes well into the waiting.
fn cut() -> Duration {
    if fastrand::bool() {
        Duration::from_micros(fastrand::u64(0..2_000))
    } else {
        Duration::from_micros(fastrand::u64(0..30_000))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The server's view of lock `name`: its subscribers, and the clients still
/// named after it (holders and contenders name their connection so).
fn traces(server: &RedisServer, name: &str) -> (i64, Vec<String>) {
    let numsub = server.cli(&["PUBSUB", "NUMSUB", name]);
    let count = numsub
        .lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(-1);
    let named = server
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|l| l.contains(&format!(" name={name}-lock")))
        .map(str::to_owned)
        .collect();
    (count, named)
}

/// Wait (up to a generous bound) for the server to have dropped every
/// subscription and name of `name`: the sockets of dropped work close at
/// once, and the server notices within moments.
fn assert_no_traces(server: &RedisServer, name: &str) {
    let started = Instant::now();
    loop {
        let (count, named) = traces(server, name);
        if count == 0 && named.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}: {count} subscribers, named clients {named:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fence(server: &RedisServer, name: &str) -> String {
    server
        .cli(&["GET", &format!("{name}-fence")])
        .trim()
        .to_owned()
}

/// Acquire lock `name` through `pool` many times, exclusive and shared,
/// cutting each at a random point (`shorten` times sooner than [`cut`]);
/// how many were cut and how many granted (and let go).
fn cut_redis_waits(pool: &Pool, name: &str, shorten: u32) -> (usize, usize) {
    let (mut cut_short, mut granted) = (0, 0);
    runtime().block_on(async {
        for round in 0..rounds(500) {
            let mode = if round % 3 == 0 {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            };
            let lock = RedisLock::with_pool(pool, name)
                .unwrap()
                .fencing(true)
                .lock_mode(mode)
                .wait(Wait::FOREVER);
            match tokio::time::timeout(cut() / shorten, lock.acquire_async()).await {
                Err(_) => cut_short += 1,
                Ok(Ok(guard)) => {
                    granted += 1;
                    drop(guard);
                }
                Ok(Err(e)) => panic!("round {round}: {e}"),
            }
        }
    });
    (cut_short, granted)
}

#[test]
fn redis_acquisitions_dropped_anywhere_leave_nothing() {
    let server = RedisServer::start();
    let pool = Pool::open(&server.url()).unwrap();
    let name = "cut";
    let holder = RedisLock::open(&server.url(), name)
        .unwrap()
        .fencing(true)
        .acquire()
        .unwrap();
    let before = fence(&server, name);
    // Held: every wait is cut, at any point of subscribing, probing,
    // giving up and pausing.
    let (cut_short, granted) = cut_redis_waits(&pool, name, 1);
    assert_eq!(
        (cut_short, granted),
        (rounds(500), 0),
        "the holder is still there"
    );
    // No dropped wait lives on: once the holder leaves, nobody takes the
    // lock or draws a token.
    holder.release().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        fence(&server, name),
        before,
        "an orphaned wait drew a token"
    );
    assert_no_traces(&server, name);
    // Free: acquisitions are cut anywhere, some after the grant (then the
    // grant is let go at once) and some not at all.
    let (cut_short, granted) = cut_redis_waits(&pool, name, 10);
    assert!(
        cut_short > 0 && granted > 0,
        "{cut_short} cut, {granted} granted"
    );
    assert_no_traces(&server, name);
    let after = RedisLock::open(&server.url(), name)
        .unwrap()
        .wait(Wait::NONE)
        .acquire()
        .expect("the lock is free");
    drop(after);
    assert!(
        pool.connections() <= 3 + portalocker::redis::DEFAULT_MAX_IDLE,
        "{:?}",
        pool
    );
}

/// Run `run` many times in an async host, dropping it at random points.
fn cut_plugins(run: &Run, rounds: usize) -> (usize, usize) {
    let (mut cut_short, mut finished) = (0, 0);
    runtime().block_on(async {
        for _ in 0..rounds {
            match tokio::time::timeout(cut() / 4, run.run_async()).await {
                Err(_) => cut_short += 1,
                Ok(outcome) => {
                    outcome.assert_ok();
                    finished += 1;
                }
            }
        }
    });
    (cut_short, finished)
}

fn assert_file_free(path: &Path) {
    drop(
        Lock::new(path)
            .try_acquire()
            .unwrap_or_else(|e| panic!("{}: still held: {e}", path.display())),
    );
}

#[test]
fn plugin_file_and_semaphore_waits_dropped_anywhere_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.lock");
    let sem = BoundedSemaphore::new(2, "pool")
        .unwrap()
        .directory(dir.path());
    for mode in ["exclusive", "shared"] {
        let run =
            Run::new(WAIT_AND_HOLD, &["file", mode, "/data/f.lock"]).grant(dir.path(), "/data");
        // Held by the host: every plugin waits and is cut.
        let held = Lock::new(&path).acquire().unwrap();
        let (cut_short, _) = cut_plugins(&run, rounds(300));
        assert_eq!(cut_short, rounds(300), "{mode}: a plugin got a held lock");
        drop(held);
        assert_file_free(&path);
        // Free: cut anywhere, holding or not.
        cut_plugins(&run, rounds(300));
        assert_file_free(&path);
    }
    let run =
        Run::new(WAIT_AND_HOLD, &["semaphore", "exclusive", "/data"]).grant(dir.path(), "/data");
    let (a, b) = (sem.try_acquire().unwrap(), sem.try_acquire().unwrap());
    let (cut_short, _) = cut_plugins(&run, rounds(300));
    assert_eq!(
        cut_short,
        rounds(300),
        "a plugin got a slot of a full semaphore"
    );
    drop((a, b));
    cut_plugins(&run, rounds(300));
    let (a, b) = (sem.try_acquire().unwrap(), sem.try_acquire().unwrap());
    assert_ne!(a.slot(), b.slot());
}

#[test]
fn plugin_redis_waits_dropped_anywhere_leave_nothing() {
    let server = RedisServer::start();
    let name = "plugin:cut";
    for mode in ["exclusive", "shared"] {
        let run = Run::new(WAIT_AND_HOLD, &["redis", mode, "cut"]).redis(&server.url(), "plugin:");
        let holder = RedisLock::open(&server.url(), name)
            .unwrap()
            .fencing(true)
            .acquire()
            .unwrap();
        let before = fence(&server, name);
        let (cut_short, _) = cut_plugins(&run, rounds(200));
        assert_eq!(cut_short, rounds(200), "{mode}: a plugin got a held lock");
        holder.release().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            fence(&server, name),
            before,
            "{mode}: an orphaned wait drew a token"
        );
        assert_no_traces(&server, name);
        cut_plugins(&run, rounds(200));
        assert_no_traces(&server, name);
        drop(
            RedisLock::open(&server.url(), name)
                .unwrap()
                .wait(Wait::NONE)
                .acquire()
                .expect("the lock is free"),
        );
    }
}
