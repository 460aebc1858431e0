//! Interoperability with the real Python portalocker 4.4.2: each side
//! excludes the other on the same lock file, semaphore and PID file, and a
//! counter shared by Python and Rust processes is exact.

mod common;

use std::time::Duration;

use common::{Holder, cli, exit_code, lockworker, pyworker, run_ok};
use portalocker::{BoundedSemaphore, Lock, PidFileLock, PidLock, Wait};
use portalocker_tests::read_counter;

fn py_holder(args: &[&str], path: &std::path::Path) -> Holder {
    let mut command = pyworker();
    command.arg(args[0]).arg(path).args(&args[1..]);
    Holder::start(command)
}

#[test]
fn a_python_holder_blocks_our_lock_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("py.lock");
    let holder = py_holder(&["hold"], &path);
    let err = Lock::new(&path)
        .wait(Wait::up_to(Duration::from_millis(100)))
        .acquire()
        .unwrap_err();
    assert!(err.is_contention(), "{err}");
    assert!(
        Lock::new(&path)
            .shared()
            .try_acquire()
            .unwrap_err()
            .is_contention()
    );
    assert_eq!(
        exit_code(
            cli()
                .args(["lock", "-n", "-E", "42"])
                .arg(&path)
                .args(["--", "true"])
        ),
        42
    );
    assert_eq!(
        exit_code(
            cli()
                .args(["lock", "-w", "0.2", "-q"])
                .arg(&path)
                .args(["--", "true"])
        ),
        1
    );
    holder.release();
    drop(Lock::new(&path).try_acquire().unwrap());
    run_ok(cli().args(["lock", "-n"]).arg(&path).args(["--", "true"]));
}

#[test]
fn our_holder_blocks_python() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rs.lock");
    let guard = Lock::new(&path).acquire().unwrap();
    assert_eq!(exit_code(pyworker().arg("try").arg(&path)), 3);
    guard.release().unwrap();
    run_ok(pyworker().arg("try").arg(&path));
    // Through the CLI: Python waits on a lock the CLI holds for its command.
    let mut cli_holder = cli()
        .args(["lock"])
        .arg(&path)
        .args(["--", "sh", "-c", "echo locked; read _ || true"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(cli_holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    assert_eq!(exit_code(pyworker().arg("try").arg(&path)), 3);
    drop(cli_holder.stdin.take());
    assert!(cli_holder.wait().unwrap().success());
    run_ok(pyworker().arg("try").arg(&path));
}

#[test]
fn shared_locks_coexist_across_languages_and_exclude_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.lock");
    let py_reader = py_holder(&["hold", "--shared"], &path);
    let ours = Lock::new(&path)
        .shared()
        .try_acquire()
        .expect("a Python reader blocked our reader");
    assert!(Lock::new(&path).try_acquire().unwrap_err().is_contention());
    assert_eq!(exit_code(pyworker().arg("try").arg(&path)), 3);
    drop(ours);
    py_reader.release();
    run_ok(pyworker().arg("try").arg(&path));
}

#[test]
fn semaphore_slots_are_shared_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Python takes slot 0 of 2; we get slot 1, then nothing.
    let py = py_holder(&["sem-hold", "pool", "2"], dir.path());
    assert_eq!(py.said, "slot 0");
    let sem = BoundedSemaphore::new(2, "pool")
        .unwrap()
        .directory(dir.path());
    let ours = sem.try_acquire().unwrap();
    assert_eq!(ours.slot(), 1);
    assert!(sem.try_acquire().unwrap_err().is_contention());
    // Python sees the semaphore full too.
    assert_eq!(exit_code(pyworker().args(["sem-try", d, "pool", "2"])), 3);
    // The CLI as well.
    assert_eq!(
        exit_code(cli().args([
            "semaphore",
            "--slots",
            "2",
            "--name",
            "pool",
            "--dir",
            d,
            "-n",
            "-q",
            "--",
            "true"
        ])),
        1
    );
    py.release();
    drop(ours);
    // And our slot holder blocks Python's sweep of a one-slot semaphore.
    let rust = Holder::start({
        let mut c = lockworker();
        c.args(["sem-hold", d, "solo", "1"]);
        c
    });
    assert_eq!(exit_code(pyworker().args(["sem-try", d, "solo", "1"])), 3);
    rust.release();
    run_ok(pyworker().args(["sem-try", d, "solo", "1"]));
}

#[test]
fn pid_file_locks_report_holders_across_languages() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("svc.pid");
    let py = py_holder(&["pid-hold"], &pidfile);
    match PidFileLock::new(&pidfile).acquire_or_holder().unwrap() {
        PidLock::HeldBy(pid) => assert_eq!(pid, py.pid()),
        PidLock::Acquired(_) => panic!("took a PID lock Python holds"),
    }
    py.release();
    assert!(!pidfile.exists());
    let rust = Holder::start({
        let mut c = lockworker();
        c.arg("pid-hold").arg(&pidfile);
        c
    });
    let output = pyworker().arg("pid-try").arg(&pidfile).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("held-by {}", rust.pid())
    );
    rust.release();
}

#[test]
fn a_counter_shared_by_python_and_rust_processes_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (lock, data) = (dir.path().join("mixed.lock"), dir.path().join("mixed"));
    let mut workers = Vec::new();
    for i in 0..6 {
        let mut command = if i % 2 == 0 { lockworker() } else { pyworker() };
        command.arg("count").arg(&lock).arg(&data).arg("150");
        workers.push(command.spawn().unwrap());
    }
    // The CLI joins in with a shell increment.
    let script = format!(
        "for i in $(seq 50); do {cli} lock {lock} -- sh -c 'n=$(cat {data} 2>/dev/null || echo 0); echo $((n+1)) > {data}'; done",
        cli = common_cli_path(),
        lock = lock.display(),
        data = data.display()
    );
    workers.push(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .spawn()
            .unwrap(),
    );
    for mut worker in workers {
        assert!(worker.wait().unwrap().success());
    }
    assert_eq!(read_counter(&data).unwrap(), 6 * 150 + 50);
}

#[test]
fn a_python_semaphore_and_ours_never_exceed_the_slots_together() {
    let dir = tempfile::tempdir().unwrap();
    let track = dir.path().join("track");
    std::fs::create_dir(&track).unwrap();
    let d = dir.path().to_str().unwrap();
    let mut workers = Vec::new();
    for i in 0..6 {
        let mut command = if i % 2 == 0 { lockworker() } else { pyworker() };
        command
            .args(["sem-count", d, "mixed", "3", "15"])
            .arg(&track);
        workers.push(command.spawn().unwrap());
    }
    for mut worker in workers {
        assert!(worker.wait().unwrap().success());
    }
    let peak = read_counter(&track.join("peak")).unwrap();
    assert!((1..=3).contains(&peak), "peak {peak} on a 3-slot semaphore");
    assert_eq!(read_counter(&track.join("inside")).unwrap(), 0);
}

fn common_cli_path() -> String {
    format!("{:?}", cli().get_program())
        .trim_matches('"')
        .to_owned()
}
