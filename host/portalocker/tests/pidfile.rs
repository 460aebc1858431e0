//! `PidFileLock`: publishes the holder's PID, reports it to contenders.

use std::fs;
use std::time::{Duration, Instant};

use portalocker::{Error, PidFileLock, PidLock, Wait};

#[test]
fn publishes_our_pid_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.pid");
    let lock = PidFileLock::new(&path);
    assert!(!path.exists(), "the constructor created a file");
    assert_eq!(lock.read_pid(), None);
    let guard = lock.acquire().unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        std::process::id().to_string()
    );
    assert!(lock.sidecar_path().exists());
    assert!(
        lock.sidecar_path()
            .to_string_lossy()
            .ends_with("d.pid.lock")
    );
    assert_eq!(lock.read_pid(), Some(std::process::id()));
    guard.release().unwrap();
    assert!(!path.exists());
    assert!(!lock.sidecar_path().exists());
}

#[test]
fn contenders_learn_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.pid");
    let _guard = PidFileLock::new(&path).acquire().unwrap();
    match PidFileLock::new(&path).acquire_or_holder().unwrap() {
        PidLock::HeldBy(pid) => assert_eq!(pid, std::process::id()),
        PidLock::Acquired(_) => panic!("took a held lock"),
    }
    let err = PidFileLock::new(&path).acquire().unwrap_err();
    assert!(matches!(err, Error::WouldBlock { .. }));
    assert_eq!(err.holder_pid(), Some(std::process::id()));
    // The failed contender left the holder's files alone.
    assert!(path.exists());
}

#[test]
fn an_unreadable_holder_pid_is_an_error_not_ownership() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.pid");
    let _guard = PidFileLock::new(&path).acquire().unwrap();
    fs::remove_file(&path).unwrap();
    let err = PidFileLock::new(&path).acquire_or_holder().unwrap_err();
    assert!(err.is_contention());
    assert_eq!(err.holder_pid(), None);
    fs::write(&path, b"garbage").unwrap();
    assert!(PidFileLock::new(&path).acquire_or_holder().is_err());
}

#[test]
fn waits_up_to_the_timeout_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.pid");
    let _guard = PidFileLock::new(&path).acquire().unwrap();
    let started = Instant::now();
    let err = PidFileLock::new(&path)
        .wait(Wait::up_to(Duration::from_millis(100)))
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(err.holder_pid(), Some(std::process::id()));
}

#[test]
fn a_stale_pid_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.pid");
    fs::write(&path, b"999999").unwrap();
    let lock = PidFileLock::new(&path);
    let _guard = lock.acquire().unwrap();
    assert_eq!(lock.read_pid(), Some(std::process::id()));
}

#[test]
fn read_pid_is_strict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.pid");
    let lock = PidFileLock::new(&path);
    for (content, expected) in [
        (&b"12345"[..], Some(12345)),
        (b" 77 \n", Some(77)),
        (b"", None),
        (b"-1", None),
        (b"0", None),
        (b"+7", None),
        (b"1_000", None),
        (b"abc", None),
    ] {
        fs::write(&path, content).unwrap();
        assert_eq!(lock.read_pid(), expected, "{content:?}");
    }
}

#[test]
fn a_missing_directory_is_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let err = PidFileLock::new(dir.path().join("nope/x.pid"))
        .acquire()
        .unwrap_err();
    assert!(!err.is_contention());
    assert!(matches!(err, Error::Io { .. }));
}
