//! Several processes on one lock: exact counters under exclusive locks and
//! semaphores, shared locks, re-entrant, PID-file and timed waits seen from
//! another process, and what a lock does to plain reads and writes through
//! another handle (advisory on Unix, mandatory on Windows).
//!
//! The test binary is its own worker: it runs itself with
//! `PORTALOCKER_TEST_WORKER` set, so the same file runs on Linux and, cross
//! compiled, on Windows (under Wine in CI) with nothing else to install.
//! It has no libtest harness (`harness = false`): `main` is the runner.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use portalocker::{BoundedSemaphore, Lock, PidFileLock, PidLock, RLock, Wait};

/// The variable naming the worker to run in a child.
const WORKER: &str = "PORTALOCKER_TEST_WORKER";
/// The variable carrying the directory the test works in.
const DIR: &str = "PORTALOCKER_TEST_DIR";

/// A probe's exit statuses.
const GOT_IT: i32 = 10;
const CONTENDED: i32 = 11;
const TIMED_OUT: i32 = 12;

/// Processes and rounds of the counting scenarios.
const PROCESSES: usize = 4;
const ROUNDS: usize = 50;

/// One scenario, run in a fresh directory.
type Scenario = fn(&Path);

fn main() {
    if let Ok(worker) = std::env::var(WORKER) {
        let dir = PathBuf::from(std::env::var_os(DIR).expect("the worker's directory"));
        std::process::exit(run_worker(&worker, &dir));
    }
    let tests: &[(&str, Scenario)] = &[
        (
            "exclusive_lock_counts_exactly",
            exclusive_lock_counts_exactly,
        ),
        (
            "semaphore_slots_are_never_shared",
            semaphore_slots_are_never_shared,
        ),
        (
            "shared_locks_coexist_across_processes",
            shared_locks_coexist_across_processes,
        ),
        (
            "a_timed_wait_gives_up_in_time",
            a_timed_wait_gives_up_in_time,
        ),
        (
            "an_rlock_excludes_other_processes_until_its_last_release",
            an_rlock_excludes_other_processes_until_its_last_release,
        ),
        ("a_pid_file_names_its_holder", a_pid_file_names_its_holder),
        (
            "other_handles_read_and_write_as_the_platform_says",
            other_handles_read_and_write_as_the_platform_says,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut passed = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        test(dir.path());
        println!("test {name} ... ok");
        passed += 1;
    }
    println!("cross_process: {passed} passed, 0 failed");
}

/// Run this binary as `worker` in `dir`, with `args` as extra variables.
fn spawn(worker: &str, dir: &Path, vars: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(WORKER, worker).env(DIR, dir);
    for (name, value) in vars {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

/// The exit code of `worker` run to its end.
fn probe(worker: &str, dir: &Path) -> i32 {
    let status: ExitStatus = spawn(worker, dir, &[]).wait().unwrap();
    status.code().expect("the worker exited")
}

/// What a child does; its exit status.
fn run_worker(worker: &str, dir: &Path) -> i32 {
    match worker {
        "count" => {
            for _ in 0..ROUNDS {
                let _guard = Lock::new(dir.join("count.lock"))
                    .wait(Wait::FOREVER)
                    .acquire()
                    .unwrap();
                bump(&dir.join("counter"));
            }
            0
        }
        "slots" => {
            let sem = BoundedSemaphore::new(2, "jobs")
                .unwrap()
                .directory(dir)
                .wait(Wait::FOREVER);
            for _ in 0..ROUNDS {
                let permit = sem.acquire().unwrap();
                // Two holders of one slot would both create its marker.
                let marker = dir.join(format!("slot-{}.busy", permit.slot()));
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&marker)
                    .unwrap_or_else(|e| panic!("slot {} held twice: {e}", permit.slot()));
                {
                    let _guard = Lock::new(dir.join("count.lock"))
                        .wait(Wait::FOREVER)
                        .acquire()
                        .unwrap();
                    bump(&dir.join("counter"));
                }
                fs::remove_file(&marker).unwrap();
                permit.release().unwrap();
            }
            0
        }
        "try-exclusive" => outcome(Lock::new(dir.join("l.lock")).try_acquire().map(drop)),
        "try-shared" => outcome(
            Lock::new(dir.join("l.lock"))
                .shared()
                .try_acquire()
                .map(drop),
        ),
        "wait-200ms" => outcome(
            Lock::new(dir.join("l.lock"))
                .acquire_timeout(Duration::from_millis(200))
                .map(drop),
        ),
        "pid-holder" => match PidFileLock::new(dir.join("p.pid")).acquire_or_holder() {
            Ok(PidLock::HeldBy(pid)) => {
                fs::write(dir.join("holder"), pid.to_string()).unwrap();
                CONTENDED
            }
            Ok(PidLock::Acquired(_)) => GOT_IT,
            Err(e) => panic!("{e}"),
        },
        "read-write" => {
            let path = dir.join("l.lock");
            let mut bytes = Vec::new();
            let read = fs::File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes));
            let written = OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(b"x"));
            // 0: both worked; 1: both refused.
            match (read.is_ok(), written.is_ok()) {
                (true, true) => 0,
                (false, false) => 1,
                other => panic!("read and write disagree: {other:?} ({read:?}, {written:?})"),
            }
        }
        other => panic!("no worker {other}"),
    }
}

/// A probe's result as its exit status.
fn outcome(result: portalocker::Result<()>) -> i32 {
    match result {
        Ok(()) => GOT_IT,
        Err(portalocker::Error::TimedOut { .. }) => TIMED_OUT,
        Err(e) if e.is_contention() => CONTENDED,
        Err(e) => panic!("{e}"),
    }
}

/// Read, increment and write back the decimal counter at `path`: a lost
/// update if two processes do it at once.
fn bump(path: &Path) {
    let n: u64 = fs::read_to_string(path)
        .ok()
        .map_or(0, |s| s.trim().parse().unwrap());
    fs::write(path, (n + 1).to_string()).unwrap();
}

fn counter(dir: &Path) -> u64 {
    fs::read_to_string(dir.join("counter"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn run_all(worker: &str, dir: &Path) {
    let children: Vec<Child> = (0..PROCESSES).map(|_| spawn(worker, dir, &[])).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a {worker} worker failed");
    }
}

fn exclusive_lock_counts_exactly(dir: &Path) {
    run_all("count", dir);
    assert_eq!(counter(dir), (PROCESSES * ROUNDS) as u64);
}

fn semaphore_slots_are_never_shared(dir: &Path) {
    run_all("slots", dir);
    assert_eq!(counter(dir), (PROCESSES * ROUNDS) as u64);
}

fn shared_locks_coexist_across_processes(dir: &Path) {
    let held = Lock::new(dir.join("l.lock")).shared().acquire().unwrap();
    assert_eq!(probe("try-shared", dir), GOT_IT);
    assert_eq!(probe("try-exclusive", dir), CONTENDED);
    held.release().unwrap();
    let held = Lock::new(dir.join("l.lock")).acquire().unwrap();
    assert_eq!(probe("try-shared", dir), CONTENDED);
    held.release().unwrap();
    assert_eq!(probe("try-exclusive", dir), GOT_IT);
}

fn a_timed_wait_gives_up_in_time(dir: &Path) {
    let held = Lock::new(dir.join("l.lock")).acquire().unwrap();
    assert_eq!(probe("wait-200ms", dir), TIMED_OUT);
    drop(held);
    assert_eq!(probe("wait-200ms", dir), GOT_IT);
}

fn an_rlock_excludes_other_processes_until_its_last_release(dir: &Path) {
    let rlock = RLock::new(Lock::new(dir.join("l.lock")));
    let outer = rlock.acquire().unwrap();
    let inner = rlock.acquire().unwrap();
    assert_eq!(rlock.count(), 2);
    assert_eq!(probe("try-exclusive", dir), CONTENDED);
    drop(inner);
    assert_eq!(probe("try-exclusive", dir), CONTENDED);
    drop(outer);
    assert_eq!(probe("try-exclusive", dir), GOT_IT);
}

fn a_pid_file_names_its_holder(dir: &Path) {
    let guard = PidFileLock::new(dir.join("p.pid")).acquire().unwrap();
    assert_eq!(probe("pid-holder", dir), CONTENDED);
    let holder = fs::read_to_string(dir.join("holder")).unwrap();
    assert_eq!(holder, std::process::id().to_string());
    guard.release().unwrap();
    assert_eq!(probe("pid-holder", dir), GOT_IT);
}

/// Unix locks are advisory: another process reads and writes a locked file
/// freely. Windows locks are mandatory: while a handle holds an exclusive
/// lock on the file, reads and writes through any other handle fail with
/// `ERROR_LOCK_VIOLATION`.
///
/// Wine differs here: its `LockFileEx` locks exclude other lockers exactly
/// as Windows' do (every other test in this file passes under Wine), but
/// its `ReadFile` and `WriteFile` do not check them, so under Wine locks are
/// advisory, as on Unix. The test asserts that too, so that it fails if
/// Wine ever changes.
fn other_handles_read_and_write_as_the_platform_says(dir: &Path) {
    let mut held = Lock::new(dir.join("l.lock")).acquire().unwrap();
    held.write_all(b"held").unwrap();
    let refused = cfg!(windows) && !wine::running_under_wine();
    assert_eq!(probe("read-write", dir), i32::from(refused));
    drop(held);
    assert_eq!(probe("read-write", dir), 0, "a released file is free");
}

/// Telling Wine from Windows: Wine's `ntdll.dll` exports
/// `wine_get_version`, Windows' does not.
mod wine {
    #[cfg(windows)]
    pub fn running_under_wine() -> bool {
        use std::ffi::c_void;
        #[link(name = "kernel32")]
        unsafe extern "system" {
            fn GetModuleHandleA(name: *const u8) -> *mut c_void;
            fn GetProcAddress(module: *mut c_void, name: *const u8) -> *mut c_void;
        }
        // SAFETY: both names are NUL-terminated; ntdll is always loaded
        // and a missing export is a null pointer, not an error.
        unsafe {
            let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
            !ntdll.is_null()
                && !GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_null()
        }
    }

    #[cfg(not(windows))]
    pub fn running_under_wine() -> bool {
        false
    }
}
