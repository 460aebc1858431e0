//! Several Rust processes on one lock: exact counters, bounded semaphores,
//! and a SIGKILLed holder freeing its lock.

mod common;

use common::{Holder, lockworker, run_ok};
use portalocker::{BoundedSemaphore, Lock};
use portalocker_tests::read_counter;

#[test]
fn eight_processes_lose_no_increment() {
    let dir = tempfile::tempdir().unwrap();
    let (lock, data) = (dir.path().join("counter.lock"), dir.path().join("counter"));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            lockworker()
                .args(["count"])
                .arg(&lock)
                .arg(&data)
                .arg("250")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut worker in workers {
        assert!(worker.wait().unwrap().success());
    }
    assert_eq!(read_counter(&data).unwrap(), 8 * 250);
}

#[test]
fn a_three_slot_semaphore_never_has_four_holders() {
    let dir = tempfile::tempdir().unwrap();
    let track = dir.path().join("track");
    std::fs::create_dir(&track).unwrap();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            lockworker()
                .args(["sem-count"])
                .arg(dir.path())
                .args(["three", "3", "40"])
                .arg(&track)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut worker in workers {
        assert!(worker.wait().unwrap().success());
    }
    let peak = read_counter(&track.join("peak")).unwrap();
    assert!(peak <= 3, "{peak} holders of a 3-slot semaphore");
    assert!(
        peak >= 2,
        "peak {peak}: the semaphore admitted only one holder at a time"
    );
    assert_eq!(read_counter(&track.join("inside")).unwrap(), 0);
}

#[cfg(unix)]
#[test]
fn a_sigkilled_holder_frees_the_lock_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("killed.lock");
    let holder = Holder::start({
        let mut c = lockworker();
        c.arg("hold").arg(&lock);
        c
    });
    assert!(Lock::new(&lock).try_acquire().unwrap_err().is_contention());
    holder.kill();
    // Reaped means its descriptors are closed: no waiting needed.
    drop(
        Lock::new(&lock)
            .try_acquire()
            .expect("the dead holder's lock was not freed"),
    );
}

#[cfg(unix)]
#[test]
fn a_sigkilled_slot_holder_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let sem = BoundedSemaphore::new(1, "k").unwrap().directory(dir.path());
    let holder = Holder::start({
        let mut c = lockworker();
        c.arg("sem-hold").arg(dir.path()).args(["k", "1"]);
        c
    });
    assert_eq!(holder.said, "slot 0");
    assert!(sem.try_acquire().unwrap_err().is_contention());
    holder.kill();
    drop(
        sem.try_acquire()
            .expect("the dead holder's slot was not freed"),
    );
}

#[test]
fn another_process_blocks_and_then_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("handover.lock");
    let holder = Holder::start({
        let mut c = lockworker();
        c.arg("hold").arg(&lock);
        c
    });
    assert_eq!(common::exit_code(lockworker().arg("try").arg(&lock)), 3);
    holder.release();
    run_ok(lockworker().arg("try").arg(&lock));
}

#[test]
fn pid_file_lock_reports_the_holding_process() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon.pid");
    let holder = Holder::start({
        let mut c = lockworker();
        c.arg("pid-hold").arg(&pidfile);
        c
    });
    let output = lockworker().arg("pid-try").arg(&pidfile).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("held-by {}", holder.pid())
    );
    holder.release();
    assert!(!pidfile.exists());
}
