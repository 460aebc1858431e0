//! `acquire_async` on file locks and semaphores: waits that never block an
//! executor, hand over on release, time out, and leave nothing behind when
//! dropped.

use std::path::Path;
use std::time::Duration;

use portalocker::{BoundedSemaphore, Lock, PidFileLock, TemporaryFileLock, Wait};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_waiter_gets_the_lock_when_it_is_released_and_times_out_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.lock");
    let held = Lock::new(&path).acquire().unwrap();
    runtime().block_on(async {
        let err = Lock::new(&path)
            .wait(Wait::up_to(Duration::from_millis(50)))
            .acquire_async()
            .await
            .unwrap_err();
        assert!(matches!(err, portalocker::Error::TimedOut { .. }), "{err}");
        let waiting = tokio::spawn({
            let path = path.clone();
            async move { Lock::new(&path).wait(Wait::FOREVER).acquire_async().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(held);
        let guard = waiting.await.unwrap().unwrap();
        assert!(Lock::new(&path).try_acquire().unwrap_err().is_contention());
        drop(guard);
    });
}

/// Many tasks on one thread, each taking the lock in turn: nobody blocks
/// the executor, so every one gets in, and the count is exact.
#[test]
fn many_waiters_share_one_thread_and_count_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (lock, data) = (dir.path().join("c.lock"), dir.path().join("c"));
    runtime().block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (lock, data) = (lock.clone(), data.clone());
            tasks.spawn(async move {
                let guard = Lock::new(&lock)
                    .wait(Wait::FOREVER)
                    .acquire_async()
                    .await
                    .unwrap();
                let n: u64 = std::fs::read_to_string(&data)
                    .map(|s| s.parse().unwrap())
                    .unwrap_or(0);
                // Hold across an await: the others wait without blocking.
                tokio::time::sleep(Duration::from_micros(200)).await;
                std::fs::write(&data, (n + 1).to_string()).unwrap();
                drop(guard);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "50");
}

#[test]
fn a_semaphore_slot_is_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let sem = BoundedSemaphore::new(2, "pool")
        .unwrap()
        .directory(dir.path())
        .wait(Wait::FOREVER);
    let (a, b) = (sem.try_acquire().unwrap(), sem.try_acquire().unwrap());
    runtime().block_on(async {
        let waiting = tokio::spawn({
            let sem = sem.clone();
            async move { sem.acquire_async().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(b);
        let c = waiting.await.unwrap().unwrap();
        assert_eq!(c.slot(), 1);
        drop(a);
    });
}

#[test]
fn temporary_and_pid_locks_wait_async_too() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let temp = TemporaryFileLock::new(dir.path().join("t.lock"));
        let guard = temp.acquire_async().await.unwrap();
        assert!(temp.try_acquire().unwrap_err().is_contention());
        drop(guard);
        assert!(!dir.path().join("t.lock").exists());
        let pid = PidFileLock::new(dir.path().join("d.pid"));
        let guard = pid.acquire_async().await.unwrap();
        assert_eq!(pid.read_pid(), Some(std::process::id()));
        drop(guard);
    });
}

/// How many descriptors of this process are open on files in `dir`.
#[cfg(target_os = "linux")]
fn descriptors_in(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Waits cut at random points, hundreds of times: the lock and the slots
/// are free afterwards and no descriptor is left open.
#[test]
fn dropped_waits_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.lock");
    let sem = BoundedSemaphore::new(1, "cut")
        .unwrap()
        .directory(dir.path())
        .wait(Wait::FOREVER);
    let held = Lock::new(&path).acquire().unwrap();
    let slot = sem.try_acquire().unwrap();
    #[cfg(target_os = "linux")]
    assert_eq!(descriptors_in(dir.path()), 2);
    runtime().block_on(async {
        for round in 0..400 {
            let cut = Duration::from_micros(fastrand::u64(0..3000));
            if round % 2 == 0 {
                let lock = Lock::new(&path).wait(Wait::FOREVER);
                assert!(
                    tokio::time::timeout(cut, lock.acquire_async())
                        .await
                        .is_err()
                );
            } else {
                assert!(
                    tokio::time::timeout(cut, sem.acquire_async())
                        .await
                        .is_err()
                );
            }
        }
    });
    #[cfg(target_os = "linux")]
    assert_eq!(
        descriptors_in(dir.path()),
        2,
        "a dropped wait kept a descriptor"
    );
    drop((held, slot));
    assert_free(&path);
    drop(sem.try_acquire().expect("the slot is free"));
}

fn assert_free(path: &Path) {
    drop(
        Lock::new(path)
            .try_acquire()
            .unwrap_or_else(|e| panic!("{}: still held: {e}", path.display())),
    );
}
