//! `portalocker status`: who holds a lock file, a semaphore's slots or a
//! Redis lock, against holders of every kind: the native library, the CLI
//! (whose command inherits the lock), Python's portalocker and a plugin.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Holder, cli, lockworker, pyworker};
use portalocker_tests::programs::{FILE_LOCK_HOLD, REDIS_LOCK_LOSE, SEMAPHORE_HOLD};
use portalocker_tests::redis_server::RedisServer;
use serde_json::Value;

/// `portalocker status ARGS --json`: the exit code and the report.
fn status_json<S: AsRef<OsStr>>(args: &[S]) -> (i32, Value) {
    let output = cli()
        .arg("status")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap(), value)
}

/// `portalocker status ARGS` as text: the exit code and what it printed.
fn status_text<S: AsRef<OsStr>>(args: &[S]) -> (i32, String, String) {
    let output = cli().arg("status").args(args).output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn pids(list: &Value) -> Vec<u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect()
}

/// A plugin under `portalocker run` that holds once it has said its first
/// line, and lets go when its stdin closes ([`Holder::release`]).
fn plugin(args: &[&str]) -> Holder {
    let mut command = cli();
    command.arg("run").args(args);
    Holder::start(command)
}

/// Poll `check` for up to 20 s (a process must reach its wait first).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_free_or_missing_file_is_free_and_bad_paths_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("free.lock");
    let (code, text, _) = status_text(&[&path]);
    assert_eq!(
        (code, text.trim_end()),
        (0, &*format!("{}: free (no lock file)", path.display()))
    );
    std::fs::write(&path, b"").unwrap();
    let (code, report) = status_json(&[&path]);
    assert_eq!(code, 0);
    assert_eq!(report["state"], "free");
    assert_eq!(report["exists"], true);
    // -q prints nothing; the status tells.
    let output = cli().args(["status", "-q"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty() && output.stderr.is_empty());

    let (code, _, stderr) = status_text(&[dir.path()]);
    assert_eq!(code, 74, "a directory");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    let link = dir.path().join("link.lock");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert_eq!(status_text(&[&link]).0, 74, "a symlink is never followed");
    let (code, _, stderr) = status_text::<&str>(&[]);
    assert_eq!(code, 64, "{stderr}");
}

#[test]
fn file_holders_of_every_kind_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.lock");
    for (who, mut command, exclusive) in [
        ("native", lockworker(), true),
        ("native shared", lockworker(), false),
        ("python", pyworker(), true),
        ("python shared", pyworker(), false),
    ] {
        command.arg("hold").arg(&path);
        if !exclusive {
            command.arg("--shared");
        }
        let holder = Holder::start(command);
        let (code, report) = status_json(&[&path]);
        assert_eq!(code, 1, "{who}: {report}");
        let mode = if exclusive { "exclusive" } else { "shared" };
        assert_eq!(report["state"], mode, "{who}");
        assert_eq!(report["locks"][0]["kind"], "flock", "{who}");
        assert_eq!(
            pids(&report["holders"]),
            vec![u64::from(holder.pid())],
            "{who}"
        );
        let (code, text, _) = status_text(&[&path]);
        assert_eq!(code, 1);
        assert!(
            text.contains(&format!("held {mode} (flock)")),
            "{who}: {text}"
        );
        assert!(
            text.contains(&format!("held by pid {} (", holder.pid())),
            "{text}"
        );
        holder.release();
        assert_eq!(status_json(&[&path]).0, 0, "{who}: released");
    }

    // The CLI hands its lock to the command: both hold it, and a waiter
    // is listed as waiting.
    let held = Holder::start({
        let mut command = cli();
        command
            .arg("lock")
            .arg(&path)
            .args(["--", "sh", "-c", "echo ready; read line || true"]);
        command
    });
    let mut waiter = cli()
        .args(["lock", "-s", "-q"])
        .arg(&path)
        .args(["--", "true"])
        .spawn()
        .unwrap();
    eventually("the waiter is listed", || {
        pids(&status_json(&[&path]).1["waiting"]).contains(&u64::from(waiter.id()))
    });
    let (code, report) = status_json(&[&path]);
    assert_eq!(code, 1);
    let holders = pids(&report["holders"]);
    assert_eq!(holders.len(), 2, "portalocker and its command: {report}");
    assert!(holders.contains(&u64::from(held.pid())), "{report}");
    let commands: Vec<&str> = report["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["command"].as_str().unwrap())
        .collect();
    assert!(commands.contains(&"sh"), "{commands:?}");
    held.release();
    assert!(waiter.wait().unwrap().success());

    // A plugin holds through its host process.
    let guest_path = "/data/held.lock";
    let dir_arg = format!("{}::/data", dir.path().display());
    for shared in [false, true] {
        let mut args = vec!["--dir", &dir_arg, FILE_LOCK_HOLD, "--", guest_path];
        if shared {
            args.push("shared");
        }
        let held = plugin(&args);
        let (code, report) = status_json(&[&path]);
        assert_eq!(code, 1);
        assert_eq!(report["state"], if shared { "shared" } else { "exclusive" });
        assert_eq!(pids(&report["holders"]), vec![u64::from(held.pid())]);
        held.release();
    }
    assert_eq!(status_json(&[&path]).0, 0);
}

fn semaphore_status(dir: &Path, slots: Option<usize>) -> (i32, Value) {
    let mut args: Vec<String> = vec![
        "--semaphore".into(),
        "pool".into(),
        "--dir".into(),
        dir.display().to_string(),
    ];
    if let Some(slots) = slots {
        args.extend(["--slots".into(), slots.to_string()]);
    }
    status_json(&args)
}

#[test]
fn semaphore_slots_name_their_holders() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = semaphore_status(dir.path(), Some(3));
    assert_eq!(code, 0);
    assert_eq!(report["free"], 3);
    let (code, report) = semaphore_status(dir.path(), None);
    assert_eq!((code, report["slots"].as_array().unwrap().len()), (0, 0));

    let d = dir.path().to_str().unwrap();
    let native = Holder::start({
        let mut c = lockworker();
        c.args(["sem-hold", d, "pool", "3"]);
        c
    });
    let python = Holder::start({
        let mut c = pyworker();
        c.args(["sem-hold", d, "pool", "3"]);
        c
    });
    let dir_arg = format!("{d}::/data");
    let guest = plugin(&[
        "--dir",
        &dir_arg,
        SEMAPHORE_HOLD,
        "--",
        "/data",
        "pool",
        "3",
    ]);
    let (code, report) = semaphore_status(dir.path(), Some(3));
    assert_eq!(code, 1, "all three held: {report}");
    assert_eq!(report["free"], 0);
    let mut holders: Vec<u64> = report["slots"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|slot| pids(&slot["holders"]))
        .collect();
    holders.sort_unstable();
    let mut expected = vec![
        u64::from(native.pid()),
        u64::from(python.pid()),
        u64::from(guest.pid()),
    ];
    expected.sort_unstable();
    assert_eq!(holders, expected);
    // Without --slots: the three slot files there are.
    assert_eq!(semaphore_status(dir.path(), None).0, 1);
    let (code, text, _) = status_text(&["--semaphore", "pool", "--dir", d, "--slots", "3"]);
    assert_eq!(code, 1);
    assert!(text.contains("3 slots, 0 free"), "{text}");
    assert!(text.contains("slot 02: held exclusive (flock)"), "{text}");

    python.release();
    let (code, report) = semaphore_status(dir.path(), Some(3));
    assert_eq!((code, report["free"].as_u64()), (0, Some(1)));
    // A larger semaphore over the same files has free slots too.
    assert_eq!(semaphore_status(dir.path(), Some(4)).1["free"], 2);
    native.release();
    guest.release();
    assert_eq!(semaphore_status(dir.path(), Some(3)).1["free"], 3);
}

fn redis_status(server: &RedisServer, name: &str) -> (i32, Value) {
    status_json(&["--redis", name, "--url", &server.url()])
}

#[test]
fn redis_holders_readers_and_waiters_are_named() {
    let server = RedisServer::start();
    let url = server.url();
    let (code, report) = redis_status(&server, "jobs");
    assert_eq!((code, report["state"].as_str()), (0, Some("free")));
    assert_eq!(report["holder"], Value::Null);

    // Exclusive holders: Rust (fenced, so the counter shows), Python, a
    // plugin.
    let rust = Holder::start({
        let mut c = lockworker();
        c.args(["redis-hold", &url, "jobs", "fencing"]);
        c
    });
    let (code, report) = redis_status(&server, "jobs");
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["state"], "exclusive");
    let client = &report["holder"]["client"];
    assert!(
        client["name"].as_str().unwrap().starts_with("jobs-lock-"),
        "{report}"
    );
    assert!(client["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(client["age_secs"].as_u64().is_some());
    assert_eq!(report["fencing_counter"], "1");
    let (_, text, _) = status_text(&["--redis", "jobs", "--url", &url]);
    assert!(text.contains(": held exclusive"), "{text}");
    assert!(text.contains("fencing counter: 1"), "{text}");
    drop(rust);
    eventually("the Rust holder is gone", || {
        redis_status(&server, "jobs").0 == 0
    });

    let python = Holder::start({
        let mut c = pyworker();
        c.args(["redis-hold", &url, "jobs"]);
        c
    });
    let (code, report) = redis_status(&server, "jobs");
    assert_eq!(
        (code, report["state"].as_str()),
        (1, Some("exclusive")),
        "{report}"
    );
    assert!(
        report["holder"]["client"]["name"]
            .as_str()
            .unwrap()
            .starts_with("jobs-lock-")
    );
    python.release();
    eventually("the Python holder is gone", || {
        redis_status(&server, "jobs").0 == 0
    });

    let guest = plugin(&[
        "--redis",
        &url,
        "--redis-prefix",
        "p:",
        REDIS_LOCK_LOSE,
        "--",
        "jobs",
        "held",
    ]);
    let (code, report) = redis_status(&server, "p:jobs");
    assert_eq!(
        (code, report["state"].as_str()),
        (1, Some("exclusive")),
        "{report}"
    );
    assert_eq!(redis_status(&server, "jobs").0, 0, "another name is free");
    guest.release();

    // Readers, Rust and Python, and a writer waiting for them to leave.
    let readers = [
        Holder::start({
            let mut c = lockworker();
            c.args(["redis-hold", &url, "shelf", "shared"]);
            c
        }),
        Holder::start({
            let mut c = pyworker();
            c.args(["redis-hold", &url, "shelf", "shared"]);
            c
        }),
    ];
    let (code, report) = redis_status(&server, "shelf");
    assert_eq!(
        (code, report["state"].as_str()),
        (1, Some("shared")),
        "{report}"
    );
    assert_eq!(report["readers"].as_array().unwrap().len(), 2, "{report}");
    let mut writer = cli()
        .args(["redis-lock", "-q", "--url", &url, "shelf", "--", "true"])
        .spawn()
        .unwrap();
    eventually("the writer is listed as waiting", || {
        let report = redis_status(&server, "shelf").1;
        report["waiting"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["role"] == "pending" && w["elected"] == true)
    });
    for reader in readers {
        reader.release();
    }
    assert!(writer.wait().unwrap().success());
    eventually("everyone is gone", || redis_status(&server, "shelf").0 == 0);
}

#[test]
fn redis_status_errors_are_clear() {
    let (code, _, stderr) = status_text(&["--redis", "bad name", "--url", "redis://127.0.0.1:1/"]);
    assert_eq!(code, 64, "{stderr}");
    let (code, _, stderr) =
        status_text(&["--redis", "jobs", "--url", "redis://u:secret@127.0.0.1:1/"]);
    assert_eq!(code, 74, "{stderr}");
    assert!(stderr.contains("cannot inspect Redis lock"), "{stderr}");
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
    // Status is read-only: it leaves nothing on a server.
    let server = RedisServer::start();
    redis_status(&server, "quiet");
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0");
}
