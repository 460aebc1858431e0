//! `BoundedSemaphore`: slot files, sweep order, exhaustion and waiting.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use portalocker::{BoundedSemaphore, Error, Lock, Wait};

#[test]
fn sweeps_slots_in_order_and_exhausts() {
    let dir = tempfile::tempdir().unwrap();
    let sem = BoundedSemaphore::new(3, "jobs")
        .unwrap()
        .directory(dir.path());
    let mut permits: Vec<_> = (0..3).map(|_| sem.try_acquire().unwrap()).collect();
    assert_eq!(
        permits.iter().map(|p| p.slot()).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    for (n, permit) in permits.iter().enumerate() {
        assert_eq!(permit.path(), dir.path().join(format!("jobs.{n:02}.lock")));
    }
    let err = sem.try_acquire().unwrap_err();
    assert!(matches!(err, Error::WouldBlock { .. }), "{err}");
    drop(permits.remove(1));
    assert_eq!(sem.try_acquire().unwrap().slot(), 1);
}

#[test]
fn a_full_semaphore_waits_out_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let sem = BoundedSemaphore::new(1, "full")
        .unwrap()
        .directory(dir.path())
        .wait(Wait::up_to(Duration::from_millis(120)));
    let _held = sem.acquire().unwrap();
    let started = Instant::now();
    assert!(matches!(sem.acquire().unwrap_err(), Error::TimedOut { .. }));
    assert!(started.elapsed() >= Duration::from_millis(120));
    let started = Instant::now();
    assert!(sem.acquire_or_none().unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(120));
}

#[test]
fn a_waiter_gets_a_released_slot() {
    let dir = tempfile::tempdir().unwrap();
    let sem = BoundedSemaphore::new(2, "handoff")
        .unwrap()
        .directory(dir.path())
        .wait(Wait::up_to(Duration::from_secs(60)));
    let a = sem.acquire().unwrap();
    let b = sem.acquire().unwrap();
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(80));
        drop(b);
        a
    });
    let permit = sem.acquire().unwrap();
    assert_eq!(permit.slot(), 1);
    drop(releaser.join().unwrap());
}

#[test]
fn slot_files_are_plain_portalocker_locks_and_survive_release() {
    let dir = tempfile::tempdir().unwrap();
    let sem = BoundedSemaphore::new(2, "plain")
        .unwrap()
        .directory(dir.path());
    let _slot0 = Lock::new(dir.path().join("plain.00.lock"))
        .acquire()
        .unwrap();
    let permit = sem.try_acquire().unwrap();
    assert_eq!(permit.slot(), 1);
    permit.release().unwrap();
    assert!(dir.path().join("plain.01.lock").exists());
}

#[test]
fn a_missing_directory_fails_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("later");
    let sem = BoundedSemaphore::new(2, "rec")
        .unwrap()
        .directory(&sub)
        .wait(Wait::up_to(Duration::from_secs(3600)));
    let err = sem.acquire().unwrap_err();
    assert_eq!(err.io_error().unwrap().kind(), std::io::ErrorKind::NotFound);
    fs::create_dir(&sub).unwrap();
    drop(sem.acquire().unwrap());
}

#[test]
fn rejects_bad_arguments_without_creating_files() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        BoundedSemaphore::new(0, "z"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        BoundedSemaphore::new(usize::MAX, "z"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        BoundedSemaphore::new(2, "../escape"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        BoundedSemaphore::new(2, ""),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn permits_from_threads_never_exceed_the_slots() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let sem = Arc::new(
        BoundedSemaphore::new(3, "threads")
            .unwrap()
            .directory(dir.path())
            .wait(Wait::up_to(Duration::from_secs(60))),
    );
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (sem, inside, peak) = (Arc::clone(&sem), Arc::clone(&inside), Arc::clone(&peak));
            thread::spawn(move || {
                for _ in 0..20 {
                    let permit = sem.acquire().unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    thread::sleep(Duration::from_micros(200));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 3);
    assert!(
        peak.load(Ordering::SeqCst) >= 2,
        "the semaphore serialised everything"
    );
}
