//! The `portalocker` command: exit codes, waiting, notices, semaphores and
//! bad input.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Holder, cli, exit_code, lockworker, run_ok};
use portalocker::Lock;

fn holder(lock: &std::path::Path) -> Holder {
    let mut c = lockworker();
    c.arg("hold").arg(lock);
    Holder::start(c)
}

#[test]
fn runs_the_command_under_the_lock_and_returns_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("cmd.lock");
    assert_eq!(
        exit_code(
            cli()
                .arg("lock")
                .arg(&lock)
                .args(["--", "sh", "-c", "exit 7"])
        ),
        7
    );
    // While the command runs, the lock is held.
    let script = format!(
        "{} try {}; echo $?",
        env!("CARGO_BIN_EXE_lockworker"),
        lock.display()
    );
    let output = cli()
        .arg("lock")
        .arg(&lock)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3");
    drop(
        Lock::new(&lock)
            .try_acquire()
            .expect("released after the command"),
    );
}

#[cfg(unix)]
#[test]
fn a_command_killed_by_a_signal_exits_128_plus_n() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("sig.lock");
    assert_eq!(
        exit_code(
            cli()
                .arg("lock")
                .arg(&lock)
                .args(["--", "sh", "-c", "kill -9 $$"])
        ),
        137
    );
}

/// A terminal's Ctrl-C must reach the command: `portalocker` outlasts
/// SIGINT and SIGQUIT itself, but the command starts with no signal
/// ignored, as under flock(1).
#[cfg(target_os = "linux")]
#[test]
fn the_command_starts_with_no_signal_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("sigign.lock");
    let sem = dir.path().join("sem");
    std::fs::create_dir(&sem).unwrap();
    let read = ["--", "sh", "-c", "grep SigIgn /proc/self/status"];
    let ignored = |mut c: std::process::Command| {
        let output = c.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let mask = u64::from_str_radix(line.trim_start_matches("SigIgn:").trim(), 16).unwrap();
        // sh itself ignores nothing unless it inherited it.
        assert_eq!(
            mask & ((1 << (libc::SIGINT - 1)) | (1 << (libc::SIGQUIT - 1))),
            0,
            "{line}"
        );
    };
    let mut c = cli();
    c.arg("lock").arg(&lock).args(read);
    ignored(c);
    let mut c = cli();
    c.args(["semaphore", "--slots", "2", "--name", "jobs", "--dir"])
        .arg(&sem)
        .args(read);
    ignored(c);
}

#[test]
fn conflicts_exit_with_the_conflict_code() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("busy.lock");
    let _held = holder(&lock);
    assert_eq!(
        exit_code(
            cli()
                .args(["lock", "-n", "-q"])
                .arg(&lock)
                .args(["--", "true"])
        ),
        1
    );
    assert_eq!(
        exit_code(
            cli()
                .args(["lock", "-n", "-q", "-E", "75"])
                .arg(&lock)
                .args(["--", "true"])
        ),
        75
    );
    let started = Instant::now();
    assert_eq!(
        exit_code(
            cli()
                .args(["lock", "-w", "0.3", "-q"])
                .arg(&lock)
                .args(["--", "true"])
        ),
        1
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    // -w 0 is one attempt.
    assert_eq!(
        exit_code(
            cli()
                .args(["lock", "-w", "0", "-q"])
                .arg(&lock)
                .args(["--", "true"])
        ),
        1
    );
}

#[test]
fn says_what_it_waits_for_and_who_holds_it_unless_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("notice.lock");
    let held = holder(&lock);
    let output = cli()
        .args(["lock", "-w", "0.6"])
        .arg(&lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("waiting for exclusive lock on"), "{stderr}");
    if cfg!(target_os = "linux") {
        assert!(
            stderr.contains(&format!("held by PID {}", held.pid())),
            "{stderr}"
        );
    }
    assert!(stderr.contains("timed out after 600ms"), "{stderr}");
    let output = cli()
        .args(["lock", "-q", "-w", "0.5"])
        .arg(&lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn waits_as_long_as_it_takes_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("wait.lock");
    let held = holder(&lock);
    let mut waiter = cli()
        .arg("lock")
        .arg(&lock)
        .args(["--", "echo", "ran"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It says it waits (so it got past the silent moment), then runs once
    // the holder lets go.
    let mut notice = String::new();
    BufReader::new(waiter.stderr.take().unwrap())
        .read_line(&mut notice)
        .unwrap();
    assert!(notice.contains("waiting for"), "{notice}");
    held.release();
    let output = waiter.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ran");
}

#[test]
fn shared_locks_share_and_exclude_exclusive_ones() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("sh.lock");
    let _reader = Holder::start({
        let mut c = lockworker();
        c.arg("hold").arg(&lock).arg("--shared");
        c
    });
    run_ok(
        cli()
            .args(["lock", "-s", "-n"])
            .arg(&lock)
            .args(["--", "true"]),
    );
    assert_eq!(
        exit_code(
            cli()
                .args(["lock", "-n", "-q"])
                .arg(&lock)
                .args(["--", "true"])
        ),
        1
    );
}

#[test]
fn locks_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(cli().arg("lock").arg(dir.path()).args(["--", "true"]));
}

#[test]
fn semaphore_slots_are_portalockers_files_and_the_command_sees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let output = cli()
        .args([
            "semaphore",
            "--slots",
            "2",
            "--name",
            "build",
            "--dir",
            d,
            "--",
            "sh",
            "-c",
        ])
        .arg("echo $PORTALOCKER_SLOT")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "0");
    assert!(dir.path().join("build.00.lock").exists());
    let _a = Holder::start({
        let mut c = lockworker();
        c.args(["sem-hold", d, "build", "2"]);
        c
    });
    let output = cli()
        .args([
            "semaphore",
            "--slots",
            "2",
            "--name",
            "build",
            "--dir",
            d,
            "-n",
            "--",
            "sh",
            "-c",
        ])
        .arg("echo $PORTALOCKER_SLOT")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
    let _b = Holder::start({
        let mut c = lockworker();
        c.args(["sem-hold", d, "build", "2"]);
        c
    });
    let args = [
        "semaphore",
        "--slots",
        "2",
        "--name",
        "build",
        "--dir",
        d,
        "-w",
        "0.2",
        "-q",
        "-E",
        "9",
        "--",
        "true",
    ];
    assert_eq!(exit_code(cli().args(args)), 9);
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_no_side_effect() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let lock = dir.path().join("x.lock");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["lock", "-w", "-1", lock.to_str().unwrap(), "--", "true"],
            64,
            "finite number of seconds",
        ),
        (
            vec!["lock", "-w", "nan", lock.to_str().unwrap(), "--", "true"],
            64,
            "finite number of seconds",
        ),
        (
            vec!["lock", "-w", "1e12", lock.to_str().unwrap(), "--", "true"],
            64,
            "absurd",
        ),
        (vec!["lock", lock.to_str().unwrap()], 64, "CMD"),
        (
            vec![
                "lock",
                "-n",
                "-w",
                "1",
                lock.to_str().unwrap(),
                "--",
                "true",
            ],
            64,
            "cannot be used with",
        ),
        (
            vec![
                "semaphore",
                "--slots",
                "0",
                "--name",
                "a",
                "--dir",
                d,
                "--",
                "true",
            ],
            64,
            "between 1 and",
        ),
        (
            vec![
                "semaphore",
                "--slots",
                "99999999",
                "--name",
                "a",
                "--dir",
                d,
                "--",
                "true",
            ],
            64,
            "between 1 and",
        ),
        (
            vec![
                "semaphore",
                "--slots",
                "2",
                "--name",
                "../esc",
                "--dir",
                d,
                "--",
                "true",
            ],
            64,
            "plain file name",
        ),
        (
            vec![
                "semaphore",
                "--slots",
                "2",
                "--name",
                "",
                "--dir",
                d,
                "--",
                "true",
            ],
            64,
            "must not be empty",
        ),
    ];
    for (args, code, message) in cases {
        let output = cli().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "bad input created files"
    );
    assert!(!dir.path().parent().unwrap().join("esc.00.lock").exists());
}

#[test]
fn unrunnable_commands_and_unopenable_locks() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("r.lock");
    assert_eq!(
        exit_code(
            cli()
                .arg("lock")
                .arg(&lock)
                .args(["--", "/no/such/command"])
        ),
        127
    );
    let not_executable = dir.path().join("script.txt");
    std::fs::write(&not_executable, "echo hi").unwrap();
    assert_eq!(
        exit_code(cli().arg("lock").arg(&lock).arg("--").arg(&not_executable)),
        126
    );
    let output = cli()
        .arg("lock")
        .arg(dir.path().join("missing/x.lock"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(74));
    assert!(String::from_utf8_lossy(&output.stderr).contains("No such file"));
}

#[cfg(unix)]
#[test]
fn a_planted_symlink_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let link = dir.path().join("l.lock");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let output = cli()
        .arg("lock")
        .arg(&link)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(74));
    assert!(String::from_utf8_lossy(&output.stderr).contains("symbolic link"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
}

#[cfg(unix)]
#[test]
fn sigterm_is_passed_to_the_command_and_the_lock_held_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("term.lock");
    let mut child = cli()
        .arg("lock")
        .arg(&lock)
        .args([
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 5' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "got-term");
    assert_eq!(child.wait().unwrap().code(), Some(5));
    drop(Lock::new(&lock).try_acquire().unwrap());
}

/// A FIFO planted where a lock file or a slot should be: refused at once
/// (exit 74, saying so), the command never run.
#[cfg(unix)]
#[test]
fn fifos_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let mkfifo = |path: &std::path::Path| {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    };
    mkfifo(&dir.path().join("fifo.lock"));
    mkfifo(&dir.path().join("pool.00.lock"));
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let d = dir.path().to_str().unwrap();
    for args in [
        vec!["lock", "-w", "30"],
        vec![
            "semaphore",
            "--slots",
            "2",
            "--name",
            "pool",
            "--dir",
            d,
            "-w",
            "30",
        ],
    ] {
        let mut command = cli();
        command.args(&args);
        if args[0] == "lock" {
            command.arg(dir.path().join("fifo.lock"));
        }
        let mut child = command
            .args(["--", "sh", "-c", &touch])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("{args:?}: blocked on a FIFO");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(74), "{args:?}: {err}");
        assert!(err.contains("FIFO"), "{args:?}: {err}");
        assert!(!marker.exists(), "{args:?}: the command ran");
    }
}

/// `portalocker completions SHELL` prints a script for each shell clap
/// knows, naming every subcommand; `portalocker man` prints a roff manual
/// page with them. Both come from the same definitions as `--help`.
#[test]
fn completions_and_the_manual_page_cover_every_subcommand() {
    let subcommands = [
        "lock",
        "semaphore",
        "redis-lock",
        "run",
        "compose",
        "completions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = cli().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for subcommand in subcommands {
            assert!(
                script.contains(subcommand),
                "{shell} completions lack {subcommand}"
            );
        }
    }
    assert_eq!(exit_code(cli().args(["completions", "tcsh"])), 64);
    let out = cli().arg("man").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // roff writes a hyphen as `\-`.
    let page = String::from_utf8(out.stdout).unwrap().replace("\\-", "-");
    assert!(page.contains(".TH portalocker 1"), "{page}");
    for subcommand in subcommands {
        assert!(
            page.contains(subcommand),
            "the manual page lacks {subcommand}"
        );
    }
}
