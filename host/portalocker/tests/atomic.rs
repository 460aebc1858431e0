//! `open_atomic` / `AtomicFile`: publish without replacing.

mod common;

use std::fs;
use std::io::{ErrorKind, Write};

use portalocker::{AtomicFile, Error, open_atomic};

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn publishes_and_leaves_only_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    open_atomic(&path, |f| f.write_all(b"payload")).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"payload");
    assert_eq!(entries(dir.path()), ["out.bin"]);
}

#[test]
fn refuses_an_existing_destination_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exists.txt");
    fs::write(&path, b"original").unwrap();
    let err = open_atomic(&path, |f| f.write_all(b"new")).unwrap_err();
    assert_eq!(err.io_error().unwrap().kind(), ErrorKind::AlreadyExists);
    assert_eq!(fs::read(&path).unwrap(), b"original");
    assert_eq!(entries(dir.path()), ["exists.txt"]);
}

#[cfg(unix)]
#[test]
fn a_dangling_symlink_counts_as_existing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &path).unwrap();
    let err = AtomicFile::create(&path).unwrap_err();
    assert_eq!(err.io_error().unwrap().kind(), ErrorKind::AlreadyExists);
    assert!(!dir.path().join("nowhere").exists());
}

#[test]
fn a_failing_body_removes_the_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never.txt");
    let err = open_atomic(&path, |f| {
        f.write_all(b"half")?;
        Err::<(), _>(std::io::Error::other("body failed"))
    })
    .unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn dropping_without_commit_removes_the_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = AtomicFile::create(dir.path().join("x")).unwrap();
    file.write_all(b"abandoned").unwrap();
    assert_eq!(entries(dir.path()).len(), 1);
    drop(file);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn a_destination_created_meanwhile_wins_and_the_payload_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.txt");
    let mut file = AtomicFile::create(&path).unwrap();
    file.write_all(b"ours").unwrap();
    let temp = file.temp_path().to_path_buf();
    fs::write(&path, b"winner").unwrap();
    let err = file.commit().unwrap_err();
    assert_eq!(err.io_error().unwrap().kind(), ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("payload preserved at"), "{err}");
    assert!(err.to_string().contains(&*temp.to_string_lossy()));
    assert_eq!(fs::read(&path).unwrap(), b"winner");
    assert_eq!(fs::read(&temp).unwrap(), b"ours");
}

#[test]
fn creates_missing_parents_and_handles_long_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b").join("n".repeat(255));
    open_atomic(&path, |f| f.write_all(b"ok")).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"ok");
}

#[cfg(target_os = "linux")]
#[test]
fn published_files_get_plain_open_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perm");
    open_atomic(&path, |f| f.write_all(b"x")).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        common::plain_open_mode()
    );
}
