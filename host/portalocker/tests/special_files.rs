//! Lock paths that name a FIFO, a socket or a directory: every lock kind
//! refuses them without blocking (opening a FIFO for writing would wait
//! for a reader forever) and leaves them as they were.

#![cfg(unix)]

use std::ffi::CString;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use portalocker::{BoundedSemaphore, Error, FileMode, Lock, PidFileLock, TemporaryFileLock};

/// Long enough that only a hang misses it: the calls under test never wait.
const HANG: Duration = Duration::from_secs(20);

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
}

/// Run `call` on a thread and fail the test if it has not returned within
/// [`HANG`].
fn without_hanging<T: Send + 'static>(what: &str, call: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("{what} blocked on a special file"))
}

fn assert_refused(err: &Error, what: &str) {
    let io = err
        .io_error()
        .unwrap_or_else(|| panic!("expected an I/O refusal, got {err}"));
    assert_eq!(io.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains(what), "{err}");
    assert!(err.to_string().contains("regular file"), "{err}");
}

fn specials(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("fifo.lock");
    mkfifo(&fifo);
    let socket = dir.join("socket.lock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::mem::forget(listener);
    let directory = dir.join("dir.lock");
    std::fs::create_dir(&directory).unwrap();
    vec![
        (fifo, "a FIFO"),
        (socket, "a socket"),
        (directory, "a directory"),
    ]
}

#[test]
fn locks_by_path_refuse_fifos_sockets_and_directories_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    for (path, what) in specials(dir.path()) {
        for mode in [FileMode::Append, FileMode::Read, FileMode::Write] {
            let lock = Lock::new(&path).mode(mode);
            let err = without_hanging("Lock::acquire", move || lock.acquire().unwrap_err());
            assert_refused(&err, what);
        }
        let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
        assert!(!kind.is_file(), "{} was replaced", path.display());
    }
}

#[test]
fn a_fifo_with_a_reader_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("read.lock");
    mkfifo(&fifo);
    // A reader makes a non-blocking open for writing succeed: the type
    // check, not the open, must refuse it.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let lock = Lock::new(&fifo);
    let err = without_hanging("Lock::acquire", move || lock.acquire().unwrap_err());
    assert_refused(&err, "a FIFO");
}

#[test]
fn a_fifo_slot_is_refused_by_the_semaphore() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("pool.00.lock"));
    let sem = BoundedSemaphore::new(2, "pool")
        .unwrap()
        .directory(dir.path());
    let err = without_hanging("BoundedSemaphore::try_acquire", move || {
        sem.try_acquire().unwrap_err()
    });
    assert_refused(&err, "a FIFO");
    assert!(err.to_string().contains("pool.00.lock"), "{err}");
}

#[test]
fn pid_and_temporary_locks_refuse_fifos_and_read_no_pid_from_one() {
    let dir = tempfile::tempdir().unwrap();
    // A FIFO as the PID file: nobody holds the sidecar, so the lock is
    // taken, but publishing the PID replaces the FIFO by rename; a FIFO as
    // the sidecar is refused.
    let pid_path = dir.path().join("daemon.pid");
    mkfifo(&pid_path);
    let reader = PidFileLock::new(&pid_path);
    let read = without_hanging("PidFileLock::read_pid", move || reader.read_pid());
    assert_eq!(read, None);
    let sidecar_fifo = dir.path().join("other.pid.lock");
    mkfifo(&sidecar_fifo);
    let other = PidFileLock::new(dir.path().join("other.pid"));
    let err = without_hanging("PidFileLock::acquire", move || other.acquire().unwrap_err());
    assert_refused(&err, "a FIFO");
    let temp_fifo = dir.path().join("temp.lock");
    mkfifo(&temp_fifo);
    let temp = TemporaryFileLock::new(&temp_fifo);
    let err = without_hanging("TemporaryFileLock::acquire", move || {
        temp.acquire().unwrap_err()
    });
    assert_refused(&err, "a FIFO");
    assert!(
        std::fs::symlink_metadata(&temp_fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the temporary lock removed a file it did not create"
    );
}

#[test]
fn opened_lock_files_are_blocking_again() {
    let dir = tempfile::tempdir().unwrap();
    let guard = Lock::new(dir.path().join("plain.lock")).acquire().unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL on a descriptor the guard owns.
    let flags = unsafe { libc::fcntl(guard.file().as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0);
    assert_eq!(flags & libc::O_NONBLOCK, 0);
}
