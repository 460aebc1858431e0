//! `TemporaryFileLock`: created on acquire, removed on release, and never
//! split across two inodes.

//!
//! Every test runs on Windows too (under Wine in CI) except the three that
//! need Unix: inode numbers, unlinking an open file, and symlinks a test
//! can plant.

#[cfg(unix)]
use std::fs;
#[cfg(unix)]
use std::os::unix::fs::MetadataExt;
#[cfg(unix)]
use std::thread;
use std::time::Duration;

use portalocker::{Error, Lock, TemporaryFileLock, Wait};

#[test]
fn exists_only_while_held_across_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.lock");
    for _ in 0..2 {
        let guard = TemporaryFileLock::new(&path).acquire().unwrap();
        assert!(path.exists());
        guard.verify().unwrap();
        guard.release().unwrap();
        assert!(!path.exists());
    }
    drop(TemporaryFileLock::new(&path).acquire().unwrap());
    assert!(!path.exists(), "drop did not remove the file");
}

#[test]
fn contention_fails_at_once_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t2.lock");
    let _held = TemporaryFileLock::new(&path).acquire().unwrap();
    let err = TemporaryFileLock::new(&path).acquire().unwrap_err();
    assert!(matches!(err, Error::WouldBlock { .. }), "{err}");
    // The failed contender did not remove the holder's file.
    assert!(path.exists());
    let err = TemporaryFileLock::new(&path)
        .wait(Wait::up_to(Duration::from_millis(50)))
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err}");
    assert!(path.exists());
}

#[test]
#[cfg(unix)]
fn unlinks_before_unlocking() {
    // After release, a waiter that had opened the old inode must not end up
    // holding it while someone else holds the new file at the path.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("order.lock");
    let holder = TemporaryFileLock::new(&path).acquire().unwrap();
    let old_inode = fs::metadata(&path).unwrap().ino();
    let waiter_path = path.clone();
    let waiter = thread::spawn(move || {
        let guard = TemporaryFileLock::new(&waiter_path)
            .wait(Wait::up_to(Duration::from_secs(60)))
            .acquire()
            .unwrap();
        let held_inode = guard.file().metadata().unwrap().ino();
        let named_inode = fs::metadata(&waiter_path).unwrap().ino();
        // A fresh contender sees it held.
        let err = TemporaryFileLock::new(&waiter_path).acquire().unwrap_err();
        (held_inode, named_inode, err.is_contention())
    });
    thread::sleep(Duration::from_millis(100));
    holder.release().unwrap();
    let (held, named, contended) = waiter.join().unwrap();
    assert_eq!(
        held, named,
        "the waiter holds an inode the path no longer names"
    );
    assert!(contended);
    let _ = old_inode;
}

#[test]
#[cfg(unix)]
fn external_unlink_compromises_and_release_spares_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.lock");
    let guard = TemporaryFileLock::new(&path).acquire().unwrap();
    fs::remove_file(&path).unwrap();
    assert!(matches!(guard.verify(), Err(Error::Compromised { .. })));
    // Someone else now creates and holds a lock at the path.
    let other = TemporaryFileLock::new(&path).acquire().unwrap();
    guard.release().unwrap();
    assert!(
        path.exists(),
        "a stale release removed the new holder's file"
    );
    other.verify().unwrap();
    drop(other);
    assert!(!path.exists());
}

#[test]
fn a_plain_lock_on_the_path_contends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mix.lock");
    let _held = TemporaryFileLock::new(&path).acquire().unwrap();
    assert!(Lock::new(&path).try_acquire().unwrap_err().is_contention());
}

#[test]
#[cfg(unix)]
fn refuses_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("victim");
    fs::write(&target, b"data").unwrap();
    let path = dir.path().join("link.lock");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    assert!(TemporaryFileLock::new(&path).acquire().is_err());
    assert_eq!(fs::read(&target).unwrap(), b"data");
    assert!(
        fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
