//! `lock`/`unlock` on open files and `Lock` by path, in one process (flock
//! locks belong to an open file, so two opens contend even here).

mod common;

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use portalocker::{Error, FileMode, Lock, LockFlags, LockMode, Wait, lock, lock_timeout, unlock};

fn open(path: &Path) -> File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

#[test]
fn exclusive_blocks_exclusive_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.lock");
    let (a, b) = (open(&path), open(&path));
    lock(&a, LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING).unwrap();
    let err = lock(&b, LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING).unwrap_err();
    assert!(matches!(err, Error::WouldBlock { .. }), "{err}");
    let err = lock(&b, LockFlags::SHARED | LockFlags::NON_BLOCKING).unwrap_err();
    assert!(err.is_contention());
    unlock(&a).unwrap();
    lock(&b, LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING).unwrap();
}

#[test]
fn shared_holders_coexist_and_exclude_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.lock");
    let (a, b, c) = (open(&path), open(&path), open(&path));
    lock(&a, LockFlags::SHARED | LockFlags::NON_BLOCKING).unwrap();
    lock(&b, LockFlags::SHARED | LockFlags::NON_BLOCKING).unwrap();
    assert!(
        lock(&c, LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING)
            .unwrap_err()
            .is_contention()
    );
}

#[test]
fn invalid_flags_are_rejected_and_keep_the_held_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.lock");
    let (a, b) = (open(&path), open(&path));
    lock(&a, LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING).unwrap();
    for flags in [
        LockFlags::UNBLOCK,
        LockFlags::EXCLUSIVE | LockFlags::UNBLOCK,
        LockFlags::SHARED | LockFlags::EXCLUSIVE,
        LockFlags::EMPTY,
        LockFlags::NON_BLOCKING,
    ] {
        let err = lock(&a, flags).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{flags:?}: {err}");
    }
    // In portalocker 4.1 a bare UNBLOCK silently released: not here.
    assert!(
        lock(&b, LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING)
            .unwrap_err()
            .is_contention()
    );
}

#[test]
fn invalid_flags_open_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never.lock");
    let err = Lock::new(&path)
        .flags(LockFlags::SHARED | LockFlags::EXCLUSIVE)
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
    assert!(!path.exists());
}

#[test]
fn unlock_without_lock_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    unlock(&open(&dir.path().join("u.lock"))).unwrap();
}

#[test]
fn blocking_lock_waits_for_release() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.lock");
    let holder = open(&path);
    lock(&holder, LockFlags::EXCLUSIVE).unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter_path = path.clone();
    let waiter = thread::spawn(move || {
        let file = open(&waiter_path);
        lock(&file, LockFlags::EXCLUSIVE).unwrap();
        tx.send(()).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "waiter got a held lock"
    );
    unlock(&holder).unwrap();
    rx.recv_timeout(Duration::from_secs(30))
        .expect("waiter never got the lock");
    waiter.join().unwrap();
}

#[test]
fn lock_timeout_times_out_no_earlier_than_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.lock");
    let (a, b) = (open(&path), open(&path));
    lock_timeout(&a, LockMode::Exclusive, Duration::ZERO).unwrap();
    let started = Instant::now();
    let err = lock_timeout(&b, LockMode::Exclusive, Duration::from_millis(150)).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(
        matches!(err, Error::TimedOut { timeout, .. } if timeout == Duration::from_millis(150)),
        "{err}"
    );
    let err = lock_timeout(&b, LockMode::Exclusive, Duration::ZERO).unwrap_err();
    assert!(matches!(err, Error::WouldBlock { .. }), "{err}");
}

#[test]
fn lock_timeout_takes_the_lock_when_released_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.lock");
    let holder = open(&path);
    lock(&holder, LockFlags::EXCLUSIVE).unwrap();
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        unlock(&holder).unwrap();
        holder
    });
    let waiter = open(&path);
    lock_timeout(&waiter, LockMode::Exclusive, Duration::from_secs(60)).unwrap();
    drop(releaser.join().unwrap());
}

#[cfg(unix)]
#[test]
fn timed_wait_works_with_the_signal_blocked_by_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.lock");
    let holder = open(&path);
    lock(&holder, LockFlags::EXCLUSIVE).unwrap();
    let waiter_path = path.clone();
    let result = thread::spawn(move || {
        // SAFETY: plain signal-mask calls on this thread.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGURG);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let file = open(&waiter_path);
        lock_timeout(&file, LockMode::Exclusive, Duration::from_millis(100))
    })
    .join()
    .unwrap();
    assert!(matches!(result, Err(Error::TimedOut { .. })));
}

#[test]
fn many_concurrent_timed_waiters_all_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.lock");
    let holder = open(&path);
    lock(&holder, LockFlags::EXCLUSIVE).unwrap();
    let waiters: Vec<_> = (0..16)
        .map(|i| {
            let path = path.clone();
            thread::spawn(move || {
                let file = open(&path);
                lock_timeout(
                    &file,
                    LockMode::Exclusive,
                    Duration::from_millis(20 + i * 5),
                )
            })
        })
        .collect();
    for waiter in waiters {
        assert!(matches!(
            waiter.join().unwrap(),
            Err(Error::TimedOut { .. })
        ));
    }
}

#[test]
fn lock_by_path_defaults_and_contention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.lock");
    let lock = Lock::new(&path);
    assert_eq!(
        lock.lock_flags(),
        LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING
    );
    assert_eq!(lock.file_mode(), FileMode::Append);
    assert_eq!(lock.waits().timeout(), Some(Duration::from_secs(5)));
    let held = lock.acquire().unwrap();
    assert!(path.exists());
    let started = Instant::now();
    let err = Lock::new(&path).wait(Wait::NONE).acquire().unwrap_err();
    assert!(matches!(err, Error::WouldBlock { .. }), "{err}");
    assert_eq!(err.path(), Some(path.as_path()));
    let err = Lock::new(&path)
        .wait(Wait::up_to(Duration::from_millis(100)))
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(
        Lock::new(&path)
            .wait(Wait::up_to(Duration::ZERO))
            .acquire()
            .unwrap_err()
            .is_contention()
    );
    assert!(Lock::new(&path).try_acquire().unwrap_err().is_contention());
    held.release().unwrap();
    drop(Lock::new(&path).try_acquire().unwrap());
}

#[test]
fn lock_path_is_absolute_from_construction() {
    let lock = Lock::new("relative.lock");
    assert!(lock.path().is_absolute());
}

#[test]
fn polling_wait_follows_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poll.lock");
    let _held = Lock::new(&path).acquire().unwrap();
    let started = Instant::now();
    let err = Lock::new(&path)
        .wait(Wait::up_to(Duration::from_millis(100)).polling(Duration::from_millis(30)))
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }));
    assert!(started.elapsed() >= Duration::from_millis(100));
    // A huge interval still gives up at the timeout (the sleep is capped):
    // the call returns, which is all this can check without timing it.
    let err = Lock::new(&path)
        .wait(Wait::up_to(Duration::from_millis(50)).polling(Duration::from_secs(3600)))
        .acquire()
        .unwrap_err();
    assert!(err.is_contention());
}

#[test]
fn polling_wait_gets_a_released_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poll2.lock");
    let held = Lock::new(&path).acquire().unwrap();
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        held.release().unwrap();
    });
    let guard = Lock::new(&path)
        .wait(Wait::up_to(Duration::from_secs(60)).polling(Duration::from_millis(5)))
        .acquire()
        .unwrap();
    drop(guard);
    releaser.join().unwrap();
}

#[test]
fn blocking_flags_wait_past_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocking.lock");
    let held = Lock::new(&path).acquire().unwrap();
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(150));
        held.release().unwrap();
    });
    // portalocker: without NON_BLOCKING the OS waits and the timeout does not apply.
    drop(
        Lock::new(&path)
            .flags(LockFlags::EXCLUSIVE)
            .wait(Wait::up_to(Duration::from_millis(10)))
            .acquire()
            .unwrap(),
    );
    releaser.join().unwrap();
}

#[test]
fn shared_locks_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.lock");
    let a = Lock::new(&path).shared().acquire().unwrap();
    let b = Lock::new(&path).shared().try_acquire().unwrap();
    assert_eq!(a.lock_mode(), LockMode::Shared);
    assert!(Lock::new(&path).try_acquire().unwrap_err().is_contention());
    drop((a, b));
    drop(Lock::new(&path).try_acquire().unwrap());
}

#[test]
fn write_mode_truncates_only_after_locking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    let mut holder = Lock::new(&path).mode(FileMode::Append).acquire().unwrap();
    holder.write_all(b"precious").unwrap();
    let err = Lock::new(&path)
        .mode(FileMode::Write)
        .wait(Wait::NONE)
        .acquire()
        .unwrap_err();
    assert!(err.is_contention());
    assert_eq!(
        fs::read(&path).unwrap(),
        b"precious",
        "a waiter wiped the holder's data"
    );
    holder.release().unwrap();
    let guard = Lock::new(&path)
        .mode(FileMode::WriteRead)
        .acquire()
        .unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    drop(guard);
}

#[test]
fn write_mode_writes_are_positioned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pos.txt");
    fs::write(&path, b"old content").unwrap();
    let mut guard = Lock::new(&path)
        .mode(FileMode::WriteRead)
        .acquire()
        .unwrap();
    guard.write_all(b"x").unwrap();
    guard.seek(SeekFrom::Start(0)).unwrap();
    guard.write_all(b"y").unwrap();
    guard.seek(SeekFrom::Start(0)).unwrap();
    let mut text = String::new();
    guard.read_to_string(&mut text).unwrap();
    assert_eq!(text, "y");
}

#[test]
fn append_mode_keeps_content_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.txt");
    fs::write(&path, b"one\n").unwrap();
    let mut guard = Lock::new(&path)
        .mode(FileMode::AppendRead)
        .acquire()
        .unwrap();
    guard.seek(SeekFrom::Start(0)).unwrap();
    guard.write_all(b"two\n").unwrap();
    drop(guard);
    assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\n");
}

#[test]
fn open_errors_are_terminal_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let missing_dir = dir.path().join("no/such/dir/x.lock");
    let err = Lock::new(&missing_dir)
        .wait(Wait::up_to(Duration::from_secs(3600)))
        .acquire()
        .unwrap_err();
    assert!(!err.is_contention());
    assert_eq!(err.io_error().unwrap().kind(), ErrorKind::NotFound);
    let err = Lock::new(dir.path().join("absent"))
        .mode(FileMode::Read)
        .acquire()
        .unwrap_err();
    assert_eq!(err.io_error().unwrap().kind(), ErrorKind::NotFound);
    assert!(started.elapsed() < Duration::from_secs(3600));
}

#[test]
fn create_new_mode_fails_on_the_second_acquire() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.txt");
    Lock::new(&path)
        .mode(FileMode::CreateNew)
        .acquire()
        .unwrap()
        .release()
        .unwrap();
    let err = Lock::new(&path)
        .mode(FileMode::CreateNew)
        .acquire()
        .unwrap_err();
    assert_eq!(err.io_error().unwrap().kind(), ErrorKind::AlreadyExists);
}

#[test]
fn read_only_handles_can_take_exclusive_locks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.txt");
    fs::write(&path, b"x").unwrap();
    let guard = Lock::new(&path).mode(FileMode::Read).acquire().unwrap();
    assert!(Lock::new(&path).try_acquire().unwrap_err().is_contention());
    drop(guard);
}

#[cfg(unix)]
#[test]
fn symlinked_lock_paths_are_refused_and_their_targets_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("victim.txt");
    fs::write(&target, b"keep me").unwrap();
    let link = dir.path().join("planted.lock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for mode in [FileMode::Write, FileMode::Append, FileMode::Read] {
        let err = Lock::new(&link).mode(mode).acquire().unwrap_err();
        assert_eq!(
            err.io_error().unwrap().kind(),
            ErrorKind::PermissionDenied,
            "{err}"
        );
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
    assert_eq!(fs::read(&target).unwrap(), b"keep me");
    let dangling = dir.path().join("dangling.lock");
    std::os::unix::fs::symlink(dir.path().join("would-be-created"), &dangling).unwrap();
    assert!(Lock::new(&dangling).acquire().is_err());
    assert!(!dir.path().join("would-be-created").exists());
}

#[cfg(target_os = "linux")]
#[test]
fn new_lock_files_get_0666_minus_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perm.lock");
    drop(Lock::new(&path).acquire().unwrap());
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        common::plain_open_mode()
    );
}

#[test]
fn releasing_reports_success_and_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rel.lock");
    let guard = Lock::new(&path).acquire().unwrap();
    assert!(format!("{guard:?}").contains("rel.lock"));
    guard.release().unwrap();
    drop(Lock::new(&path).try_acquire().unwrap());
}
