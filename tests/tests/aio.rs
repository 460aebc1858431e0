//! `portalocker:locks@0.2.0`: async plugins (one component running the
//! scenarios of `programs/aio`), in the host and through `portalocker run`,
//! beside native processes, Python's portalocker and 0.1.0 plugins on the
//! same locks.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{cli, lockworker, pyworker};
use portalocker::redis::RedisLock;
use portalocker::{BoundedSemaphore, Lock, LockMode, Wait};
use portalocker_tests::components::{AIO, ASYNC_TASKS};
use portalocker_tests::host::{Outcome, Run};
use portalocker_tests::programs::FILE_LOCK_COUNTER;
use portalocker_tests::read_counter;
use portalocker_tests::redis_server::RedisServer;

/// `portalocker run` of `plugin` with `dir` granted as `/data`.
fn run_plugin(dir: &Path, plugin: &str, args: &[&str]) -> Command {
    let mut command = cli();
    command
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/data", dir.display()))
        .arg(plugin)
        .arg("--")
        .args(args);
    command
}

/// Start `command` with piped stdio.
fn spawn(command: &mut Command) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

fn line(out: &mut impl BufRead) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// Everything a finished 0.2.0 run let go of is gone from its budget.
fn assert_ok_and_empty((out, usage): (Outcome, portalocker_wasmtime::Usage)) -> Outcome {
    out.assert_ok();
    assert_eq!(usage.held, 0, "{usage:?}");
    assert_eq!(usage.handles, 0, "{usage:?}");
    assert_eq!(usage.redis_connections, 0, "{usage:?}");
    out
}

#[test]
fn every_call_of_the_interface() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_ok_and_empty(
        Run::new(AIO, &["calls", "/data"])
            .grant(dir.path(), "/data")
            .concurrent(),
    );
    assert_eq!(out.stdout, "ok\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("calls.lock.fence")).unwrap(),
        "2\n"
    );
}

/// One counter, one lock: native processes (drawing file fencing tokens
/// from the same counter), Python's portalocker, 0.1.0 plugins, and 0.2.0
/// plugins in this host and in `portalocker run` processes. The count is
/// exact, and every fenced holder's token is above the last one written.
#[test]
fn an_exact_counter_across_native_python_and_both_plugin_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (lock, data, tokens) = (
        dir.path().join("c.lock"),
        dir.path().join("c"),
        dir.path().join("tokens"),
    );
    let mut children: Vec<Child> = Vec::new();
    for _ in 0..2 {
        children.push(
            lockworker()
                .arg("fenced-count")
                .args([&lock, &data, &tokens])
                .arg("100")
                .spawn()
                .unwrap(),
        );
        children.push(
            pyworker()
                .arg("count")
                .args([&lock, &data])
                .arg("50")
                .spawn()
                .unwrap(),
        );
        children.push(
            run_plugin(
                dir.path(),
                AIO,
                &["counter", "/data/c.lock", "/data/c", "/data/tokens", "50"],
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        );
    }
    let in_host: Vec<_> = (0..2)
        .map(|_| {
            let run = Run::new(
                AIO,
                &["counter", "/data/c.lock", "/data/c", "/data/tokens", "100"],
            )
            .grant(dir.path(), "/data");
            std::thread::spawn(move || {
                assert_ok_and_empty(run.concurrent());
            })
        })
        .chain((0..1).map(|_| {
            let run = Run::new(FILE_LOCK_COUNTER, &["/data/c.lock", "/data/c", "100"])
                .grant(dir.path(), "/data");
            std::thread::spawn(move || run.in_async().assert_ok())
        }))
        .collect();
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    for instance in in_host {
        instance.join().unwrap();
    }
    // 2×100 native, 2×50 Python, 2×50 CLI plugins, 2×100 in-host 0.2.0, 100 0.1.0.
    assert_eq!(read_counter(&data).unwrap(), 200 + 100 + 100 + 200 + 100);
    // Every fenced holder drew one token: 200 native, 100 + 200 plugins.
    assert_eq!(read_counter(&tokens).unwrap(), 500);
}

/// One Redis lock: native processes, Python's portalocker (fenced) and
/// 0.2.0 plugins (in this host and in `portalocker run` processes, fenced,
/// through `lock`, `lock-for` and `try-lock` in turn) keep one exact
/// counter, and the fenced holders of both languages draw one growing
/// sequence of tokens.
#[test]
fn an_exact_redis_counter_across_native_python_and_plugins() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (data, tokens) = (dir.path().join("c"), dir.path().join("tokens"));
    let mut children: Vec<Child> = Vec::new();
    children.push(
        lockworker()
            .args(["redis-count", &server.url(), "p:count"])
            .arg(&data)
            .arg("60")
            .spawn()
            .unwrap(),
    );
    children.push(
        pyworker()
            .args(["redis-count", &server.url(), "p:count"])
            .arg(&data)
            .args(["30", "fencing"])
            .arg(format!("tokens={}", tokens.display()))
            .spawn()
            .unwrap(),
    );
    children.push(
        cli()
            .args([
                "run",
                "--redis",
                &server.url(),
                "--redis-prefix",
                "p:",
                "--dir",
            ])
            .arg(format!("{}::/data", dir.path().display()))
            .arg(AIO)
            .args([
                "--",
                "redis-counter",
                "count",
                "/data/c",
                "/data/tokens",
                "60",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let run = Run::new(
        AIO,
        &["redis-counter", "count", "/data/c", "/data/tokens", "60"],
    )
    .grant(dir.path(), "/data")
    .redis(&server.url(), "p:");
    let in_host = std::thread::spawn(move || {
        assert_ok_and_empty(run.concurrent());
    });
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    in_host.join().unwrap();
    assert_eq!(read_counter(&data).unwrap(), 60 + 30 + 60 + 60);
    // The plugins' 120 exclusive holds and Python's 30 each drew a token
    // (the plugins' shared ones drew some more).
    assert!(read_counter(&tokens).unwrap() >= 150);
}

/// Eight tasks of one component wait on eight locks at once, in a
/// `portalocker run` process (one thread for the runtime): each is woken
/// when its own lock frees, in the order the locks free.
#[test]
fn tasks_waiting_on_different_locks_are_each_woken_on_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut held: Vec<Option<portalocker::LockGuard>> = (0..8)
        .map(|i| {
            Some(
                Lock::new(dir.path().join(format!("w{i}.lock")))
                    .acquire()
                    .unwrap(),
            )
        })
        .collect();
    let (mut child, mut out) = spawn(&mut run_plugin(dir.path(), AIO, &["wake", "/data", "8"]));
    // Let every task start waiting, then free the locks out of order.
    std::thread::sleep(Duration::from_millis(300));
    for i in [5, 2, 7, 0, 3, 6, 1, 4] {
        held[i].take().unwrap().release().unwrap();
        assert_eq!(line(&mut out), format!("got {i}"));
    }
    assert!(child.wait().unwrap().success());
}

/// The example: two tasks, one holding a fenced lock and one waiting on it
/// with a timeout, then taking it over.
#[test]
fn the_two_task_example_runs() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_plugin(dir.path(), ASYNC_TASKS, &["/data/journal.lock"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "holder: locked with token 1\n\
         waiter: timed out while the holder held the lock\n\
         holder: releasing\n\
         waiter: locked with token 2\n"
    );
}

#[test]
fn an_unlinked_or_replaced_lock_file_is_lost() {
    for how in ["unlink", "replace"] {
        let dir = tempfile::tempdir().unwrap();
        let out = assert_ok_and_empty(
            Run::new(AIO, &["lost-file", "/data/l.lock", how])
                .grant(dir.path(), "/data")
                .concurrent(),
        );
        assert_eq!(
            out.stdout,
            "lost: \"/data/l.lock\" was unlinked or replaced: someone else can lock it now\n",
            "{how}"
        );
    }
}

#[test]
fn an_unlinked_slot_file_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_ok_and_empty(
        Run::new(AIO, &["lost-slot", "/data"])
            .grant(dir.path(), "/data")
            .concurrent(),
    );
    assert!(
        out.stdout
            .starts_with("lost: \"/data/s.00.lock\" was unlinked"),
        "{}",
        out.stdout
    );
}

/// A Redis holder learns of its loss through the future: its connection
/// killed, then the server restarted. Its token continues the sequence a
/// native fenced holder drew from.
#[test]
fn a_redis_lock_is_lost_when_killed_or_the_server_restarts() {
    let mut server = RedisServer::start();
    let native = RedisLock::open(&server.url(), "p:doomed")
        .unwrap()
        .fencing(true)
        .acquire()
        .unwrap();
    let before = native.fencing_token().unwrap();
    native.release().unwrap();
    for restart in [false, true] {
        let (mut child, mut out) = spawn(
            cli()
                .args(["run", "--redis", &server.url(), "--redis-prefix", "p:"])
                .arg(AIO)
                .args(["--", "lost-redis", "doomed"]),
        );
        let locked = line(&mut out);
        let token: u64 = locked.strip_prefix("locked ").unwrap().parse().unwrap();
        assert!(token > before, "{token} after {before}");
        if restart {
            server.restart();
        } else {
            server.kill_client_named("p:doomed-lock-");
        }
        let lost = line(&mut out);
        assert!(lost.starts_with("lost: "), "{lost}");
        assert!(child.wait().unwrap().success());
    }
}

/// A lock path through a directory: the directory is renamed away and a new
/// one made with a held lock file of the same name. The plugin's next lock
/// must find that file held, never lock the old one through the descriptor
/// the host kept (the kept descriptor's watch sees the file's own names,
/// not its directory's).
#[test]
fn a_kept_descriptor_is_not_reused_after_its_directory_was_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let (mut plugin, mut out) = spawn(&mut run_plugin(
        dir.path(),
        AIO,
        &["relock", "/data/sub/r.lock"],
    ));
    assert_eq!(line(&mut out), "released");
    std::fs::rename(&sub, dir.path().join("old")).unwrap();
    std::fs::create_dir(&sub).unwrap();
    let held = Lock::new(sub.join("r.lock")).acquire().unwrap();
    writeln!(plugin.stdin.take().unwrap(), "go").unwrap();
    assert_eq!(line(&mut out), "ok");
    assert!(plugin.wait().unwrap().success());
    drop(held);
}

#[test]
fn loss_watches_are_counted_against_the_handle_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = portalocker_wasmtime::Limits {
        max_handles: 16,
        ..Default::default()
    };
    let out = assert_ok_and_empty(
        Run::new(AIO, &["watch-budget", "/data/b.lock"])
            .grant(dir.path(), "/data")
            .limits(limits)
            .concurrent(),
    );
    // The lock and its guard are two of the sixteen handles.
    assert_eq!(out.stdout, "watches 14\n");
}

/// Whether some process holds a `flock` on `path` (`/proc/locks`).
fn flocked(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let id = format!(":{:x}:{} ", meta.dev() & 0xff, meta.ino());
    let id_major = format!(
        "{:02x}:{:02x}:{} ",
        meta.dev() >> 8,
        meta.dev() & 0xff,
        meta.ino()
    );
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.contains(&id) || l.contains(&id_major))
}

/// A native contender taking and freeing `take` in a loop until stopped,
/// so the plugin's cancellations race real grants.
fn flapper(
    stop: &Arc<AtomicBool>,
    mut take: impl FnMut() + Send + 'static,
) -> std::thread::JoinHandle<usize> {
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let mut rounds = 0;
        while !stop.load(Ordering::Relaxed) {
            take();
            rounds += 1;
            // Free for a while too, so that waits are granted.
            std::thread::sleep(Duration::from_micros(fastrand::u64(0..500)));
        }
        rounds
    })
}

/// The counts a `cancel` run printed: (granted, cancelled).
fn cancel_counts(out: &Outcome) -> (u64, u64) {
    let first = out.stdout.lines().next().unwrap_or_default();
    let words: Vec<&str> = first.split(' ').collect();
    match words.as_slice() {
        ["granted", g, "cancelled", c] => (g.parse().unwrap(), c.parse().unwrap()),
        _ => panic!("unexpected output {:?}", out.stdout),
    }
}

/// Rounds, scaled by `PORTALOCKER_STRESS`.
fn rounds(base: u64) -> u64 {
    let scale = std::env::var("PORTALOCKER_STRESS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1);
    base * scale.max(1)
}

/// 10,000 waits cancelled inside plugins at random points (the guest drops
/// the call's future; wasmtime drops the host's), racing a native contender
/// that takes and frees the same lock: file locks (exclusive and shared),
/// a one-slot semaphore and a Redis lock. After each run nothing is held:
/// the instance's budget is back to zero before its store is dropped, no
/// `flock` remains on the files, nothing is subscribed to the Redis lock
/// and no connection is named after it.
#[test]
fn ten_thousand_cancelled_waits_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seed = fastrand::u64(..);
    eprintln!("seed {seed}");
    let stop = Arc::new(AtomicBool::new(false));
    let run = |kind: &str, target: &str, n: u64| {
        Run::new(
            AIO,
            &["cancel", kind, target, &n.to_string(), &seed.to_string()],
        )
        .grant(dir.path(), "/data")
    };

    // File locks.
    let path = dir.path().join("f.lock");
    let contender = {
        let lock = Lock::new(&path);
        flapper(&stop, move || {
            let mode = if fastrand::bool() {
                LockMode::Exclusive
            } else {
                LockMode::Shared
            };
            let lock = match mode {
                LockMode::Exclusive => lock.clone(),
                LockMode::Shared => lock.clone().shared(),
            };
            let guard = lock.wait(Wait::FOREVER).acquire().unwrap();
            std::thread::sleep(Duration::from_micros(fastrand::u64(0..300)));
            drop(guard);
        })
    };
    let out = assert_ok_and_empty(run("file", "/data/f.lock", rounds(4000)).concurrent());
    let (granted, cancelled) = cancel_counts(&out);
    assert_eq!(cancelled, rounds(4000));
    stop.store(true, Ordering::Relaxed);
    let contended = contender.join().unwrap();
    assert!(!flocked(&path), "a cancelled wait left a lock on the file");
    eprintln!("file: granted {granted}, cancelled {cancelled}, contender {contended}");
    assert!(granted > 0 && cancelled > 0);

    // A one-slot semaphore.
    stop.store(false, Ordering::Relaxed);
    let contender = {
        let sem = BoundedSemaphore::new(1, "c").unwrap().directory(dir.path());
        flapper(&stop, move || {
            let permit = sem.clone().wait(Wait::FOREVER).acquire().unwrap();
            std::thread::sleep(Duration::from_micros(fastrand::u64(0..300)));
            drop(permit);
        })
    };
    let out = assert_ok_and_empty(run("semaphore", "/data", rounds(3000)).concurrent());
    let (granted, cancelled) = cancel_counts(&out);
    assert_eq!(cancelled, rounds(3000));
    stop.store(true, Ordering::Relaxed);
    contender.join().unwrap();
    assert!(!flocked(&dir.path().join("c.00.lock")));
    eprintln!("semaphore: granted {granted}, cancelled {cancelled}");
    assert!(granted > 0 && cancelled > 0);

    // A Redis lock.
    let server = RedisServer::start();
    stop.store(false, Ordering::Relaxed);
    let contender = {
        let lock = RedisLock::open(&server.url(), "p:cut").unwrap();
        flapper(&stop, move || {
            let guard = lock.clone().wait(Wait::FOREVER).acquire().unwrap();
            std::thread::sleep(Duration::from_micros(fastrand::u64(0..300)));
            guard.release().unwrap();
        })
    };
    let out = assert_ok_and_empty(
        Run::new(
            AIO,
            &[
                "cancel",
                "redis",
                "cut",
                &rounds(3000).to_string(),
                &seed.to_string(),
            ],
        )
        .redis(&server.url(), "p:")
        .concurrent(),
    );
    let (granted, cancelled) = cancel_counts(&out);
    assert_eq!(cancelled, rounds(3000));
    stop.store(true, Ordering::Relaxed);
    contender.join().unwrap();
    eprintln!("redis: granted {granted}, cancelled {cancelled}");
    assert!(granted > 0 && cancelled > 0);
    let numsub = server.cli(&["PUBSUB", "NUMSUB", "p:cut"]);
    assert_eq!(numsub.lines().nth(1).map(str::trim), Some("0"), "{numsub}");
    let named: Vec<String> = server
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|l| l.contains(" name=p:cut-lock"))
        .map(str::to_owned)
        .collect();
    assert!(named.is_empty(), "connections left: {named:?}");
}

/// A 0.2.0 plugin in `portalocker run` excludes a native holder, and
/// stops at `--timeout` while waiting.
#[test]
fn a_waiting_plugin_stops_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let held = Lock::new(dir.path().join("c.lock")).acquire().unwrap();
    let mut command = cli();
    command
        .args(["run", "--timeout", "1", "--dir"])
        .arg(format!("{}::/data", dir.path().display()))
        .arg(AIO)
        .args(["--", "counter", "/data/c.lock", "/data/c", "/data/t", "1"]);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(124), "{output:?}");
    drop(held);
    assert_eq!(read_counter(&dir.path().join("c")).unwrap(), 0);
    let _ = std::io::stdout().flush();
}
