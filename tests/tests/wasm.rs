//! Guest programs under the host, in sync and in async mode: real locks,
//! contention with the host and other processes, the sandbox, limits and
//! faults. Each program is `fn main()` plus asserts; a guest panic fails the
//! test with its output.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portalocker::redis::RedisLock;
use portalocker::{BoundedSemaphore, Lock};
use portalocker_tests::host::{Outcome, Run};
use portalocker_tests::programs::*;
use portalocker_tests::read_counter;
use portalocker_tests::redis_server::RedisServer;
use portalocker_wasmtime::Limits;

/// Every guest program has a test of the same name in each mode.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports, reason = "only checks that the test exists")]
        use self::$name as _;
    };
}

/// A grant directory with a symlink to a file inside, one to a file
/// outside and one to a directory outside (the sandbox must refuse all).
fn sandbox() -> (tempfile::TempDir, tempfile::TempDir) {
    let grant = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(grant.path().join("inside.txt"), "in").unwrap();
    std::fs::write(outside.path().join("victim.txt"), "out").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink(
            grant.path().join("inside.txt"),
            grant.path().join("link-in.lock"),
        )
        .unwrap();
        symlink(
            outside.path().join("victim.txt"),
            grant.path().join("link-out.lock"),
        )
        .unwrap();
        symlink(outside.path(), grant.path().join("link-out")).unwrap();
    }
    (grant, outside)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The scenarios, each run by both modes through `$run`.
macro_rules! scenarios {
    ($run:expr) => {
        #[test]
        fn file_lock_basic() {
            let dir = tempfile::tempdir().unwrap();
            $run(&Run::new(FILE_LOCK_BASIC, &["/data"]).grant(dir.path(), "/data")).assert_ok();
        }

        #[test]
        fn file_lock_contended() {
            let dir = tempfile::tempdir().unwrap();
            let _host = Lock::new(dir.path().join("held.lock")).acquire().unwrap();
            $run(&Run::new(FILE_LOCK_CONTENDED, &["/data/held.lock"]).grant(dir.path(), "/data"))
                .assert_ok();
        }

        #[test]
        fn file_lock_hold() {
            // Holding blocks a native process for as long as the plugin
            // holds; stdin is closed here, so it releases at once after.
            let dir = tempfile::tempdir().unwrap();
            let out: Outcome =
                $run(&Run::new(FILE_LOCK_HOLD, &["/data/h.lock"]).grant(dir.path(), "/data"));
            out.assert_ok();
            assert_eq!(out.stdout, "locked\nreleased\n");
            drop(Lock::new(dir.path().join("h.lock")).try_acquire().unwrap());
        }

        #[test]
        fn file_lock_counter() {
            // Four instances in this process and two native processes.
            let dir = tempfile::tempdir().unwrap();
            let run = Run::new(FILE_LOCK_COUNTER, &["/data/c.lock", "/data/c", "100"])
                .grant(dir.path(), "/data");
            let natives: Vec<_> = (0..2)
                .map(|_| {
                    common::lockworker()
                        .arg("count")
                        .arg(dir.path().join("c.lock"))
                        .arg(dir.path().join("c"))
                        .arg("100")
                        .spawn()
                        .unwrap()
                })
                .collect();
            let run = Arc::new(run);
            let instances: Vec<_> = (0..4)
                .map(|_| {
                    let run = Arc::clone(&run);
                    std::thread::spawn(move || $run(&run))
                })
                .collect();
            for instance in instances {
                instance.join().unwrap().assert_ok();
            }
            for mut native in natives {
                assert!(native.wait().unwrap().success());
            }
            assert_eq!(read_counter(&dir.path().join("c")).unwrap(), 600);
        }

        #[test]
        fn file_lock_escape() {
            let (grant, outside) = sandbox();
            let before = entries(grant.path());
            let out: Outcome =
                $run(&Run::new(FILE_LOCK_ESCAPE, &["/grant"]).grant(grant.path(), "/grant"));
            out.assert_ok();
            assert_eq!(
                entries(grant.path()),
                before,
                "the guest created files in the grant"
            );
            assert_eq!(
                entries(outside.path()),
                ["victim.txt"],
                "the guest created files outside"
            );
            assert_eq!(
                std::fs::read_to_string(outside.path().join("victim.txt")).unwrap(),
                "out"
            );
            assert!(!grant.path().parent().unwrap().join("escape.lock").exists());
        }

        #[test]
        fn file_lock_limits() {
            let dir = tempfile::tempdir().unwrap();
            $run(
                &Run::new(FILE_LOCK_LIMITS, &["/data"])
                    .grant(dir.path(), "/data")
                    .max_held(2)
                    .max_wait(Duration::from_secs(1)),
            )
            .assert_ok();
        }

        #[test]
        fn file_lock_fault() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.lock");
            let sem = BoundedSemaphore::new(1, "fault")
                .unwrap()
                .directory(dir.path());
            for (how, fuel) in [
                ("panic", u64::MAX),
                ("exit", u64::MAX),
                ("loop", 20_000_000),
                ("forget", u64::MAX),
            ] {
                let out: Outcome = $run(
                    &Run::new(FILE_LOCK_FAULT, &["/data/f.lock", how])
                        .grant(dir.path(), "/data")
                        .fuel(fuel),
                );
                assert_eq!(out.stdout, "locked\n", "{how}: {out:?}");
                if how != "forget" {
                    assert!(out.result.is_err(), "{how}: {out:?}");
                }
                // The host survived and the instance's locks are free.
                drop(
                    Lock::new(&path)
                        .try_acquire()
                        .unwrap_or_else(|e| panic!("{how}: lock still held: {e}")),
                );
                drop(
                    sem.try_acquire()
                        .unwrap_or_else(|e| panic!("{how}: slot still held: {e}")),
                );
            }
        }

        #[test]
        fn bench_workload() {
            // Every mode of the benchmark's plugin, briefly, with its checks.
            let dir = tempfile::tempdir().unwrap();
            let run = |args: &[&str]| -> Outcome {
                let out: Outcome = $run(&Run::new(BENCH_WORKLOAD, args).grant(dir.path(), "/data"));
                out.assert_ok();
                out
            };
            for mode in ["pairs", "open-cycles"] {
                let out = run(&[mode, "/data/b.lock", "100"]);
                assert!(
                    out.stdout.trim().parse::<u64>().is_ok(),
                    "{mode}: {}",
                    out.stdout
                );
            }
            run(&["count", "/data/c.lock", "/data/c.txt", "25"]);
            assert_eq!(read_counter(&dir.path().join("c.txt")).unwrap(), 25);
            run(&["semaphore", "/data", "s", "2", "10"]);
            let out = run(&["fair", "/data", "f", "2", "30", "100"]);
            let fields: Vec<u128> = out
                .stdout
                .split_whitespace()
                .map(|f| f.parse().unwrap())
                .collect();
            assert!(fields.len() == 3 && fields[0] > 0, "{}", out.stdout);
            assert_eq!(run(&["hold-once", "/data/h.lock"]).stdout, "ok\n");
            // Two instances take turns; the first reports the latencies.
            std::fs::write(dir.path().join("stamps"), [0u8; 16]).unwrap();
            let turns = |me: &'static str| {
                let run = &run;
                move || run(&["handoff", "/data/t.lock", "/data/stamps", "20", me, "100"])
            };
            let (first, _) = std::thread::scope(|s| {
                let first = s.spawn(turns("0"));
                let second = s.spawn(turns("1"));
                (first.join().unwrap(), second.join().unwrap())
            });
            let figures: Vec<i64> = first
                .stdout
                .split_whitespace()
                .map(|f| f.parse().unwrap())
                .collect();
            assert!(
                figures.len() == 3 && figures[0] > 0 && figures[0] <= figures[2],
                "{}",
                first.stdout
            );
            let server = RedisServer::start();
            for args in [
                vec!["redis-cycles", "w5", "5"],
                vec!["redis-count", "w6", "/data/r.txt", "5"],
            ] {
                let out: Outcome = $run(
                    &Run::new(BENCH_WORKLOAD, &args)
                        .grant(dir.path(), "/data")
                        .redis(&server.url(), "bench-"),
                );
                out.assert_ok();
            }
            assert_eq!(read_counter(&dir.path().join("r.txt")).unwrap(), 5);
        }

        #[test]
        fn file_lock_relock() {
            let dir = tempfile::tempdir().unwrap();
            let out: Outcome = $run(
                &Run::new(FILE_LOCK_RELOCK, &["/data/r.lock", "free"]).grant(dir.path(), "/data"),
            );
            out.assert_ok();
            assert_eq!(out.stdout, "released\nok\n");
        }

        #[test]
        fn redis_lock_basic() {
            let server = RedisServer::start();
            $run(&Run::new(REDIS_LOCK_BASIC, &["jobs"]).redis(&server.url(), "plugin:"))
                .assert_ok();
            // The plugin's name lived in the host's namespace.
            assert_eq!(server.cli(&["GET", "plugin:jobs-fence"]).trim(), "2");
            assert_eq!(server.cli(&["EXISTS", "jobs-fence"]).trim(), "0");
        }

        #[test]
        fn redis_lock_contended() {
            let server = RedisServer::start();
            let held = RedisLock::open(&server.url(), "ns:held")
                .unwrap()
                .acquire()
                .unwrap();
            let outside = RedisLock::open(&server.url(), "other")
                .unwrap()
                .acquire()
                .unwrap();
            let run = |name: &str, expect: &str| {
                Run::new(REDIS_LOCK_CONTENDED, &[name, expect]).redis(&server.url(), "ns:")
            };
            $run(&run("held", "held")).assert_ok();
            // A lock outside the namespace is not reachable: "other" is ns:other.
            $run(&run("other", "free")).assert_ok();
            $run(&Run::new(REDIS_LOCK_CONTENDED, &["x", "unsupported"])).assert_ok();
            drop((held, outside));
            $run(&run("held", "free")).assert_ok();
        }

        #[test]
        fn redis_lock_lose() {
            let server = RedisServer::start();
            let out: Outcome =
                $run(&Run::new(REDIS_LOCK_LOSE, &["kept", "held"]).redis(&server.url(), "p:"));
            out.assert_ok();
            assert_eq!(out.stdout, "locked\nok\n");
        }

        #[test]
        fn semaphore_basic() {
            let dir = tempfile::tempdir().unwrap();
            $run(&Run::new(SEMAPHORE_BASIC, &["/data"]).grant(dir.path(), "/data")).assert_ok();
            assert!(dir.path().join("pool.00.lock").exists());
            assert!(dir.path().join("pool.01.lock").exists());
        }

        #[test]
        fn semaphore_hold() {
            // A slot the native side holds is skipped by the plugin.
            let dir = tempfile::tempdir().unwrap();
            let native = BoundedSemaphore::new(2, "shared")
                .unwrap()
                .directory(dir.path())
                .try_acquire()
                .unwrap();
            assert_eq!(native.slot(), 0);
            let out: Outcome = $run(
                &Run::new(SEMAPHORE_HOLD, &["/data", "shared", "2"]).grant(dir.path(), "/data"),
            );
            out.assert_ok();
            assert_eq!(out.stdout, "slot 1\n");
        }

        #[test]
        fn tenant_exhaust() {
            // A plugin opening handles in a loop is stopped by its budget
            // with limit-exceeded, and its own WASI calls keep working.
            let dir = tempfile::tempdir().unwrap();
            let server = RedisServer::start();
            let limits = Limits {
                max_handles: 40,
                max_held: 3,
                max_bytes: 100_000,
                max_redis_connections: 2,
                ..Limits::default()
            };
            for (what, count, expect) in [
                ("semaphores", "100", Some(40)),
                ("held-locks", "100", Some(3)),
                ("long-paths", "100", None),
                ("file-locks", "30", Some(30)),
                ("redis-locks", "30", Some(30)),
                ("redis-held", "10", Some(2)),
            ] {
                let out: Outcome = $run(
                    &Run::new(TENANT_EXHAUST, &[what, count, "/data"])
                        .grant(dir.path(), "/data")
                        .redis(&server.url(), "tenant:")
                        .limits(limits),
                );
                out.assert_ok();
                let (opened, outcome) = opened(&out.stdout);
                match expect {
                    Some(n) if n.to_string() == count => {
                        assert_eq!((opened, outcome.as_str()), (n, "all"), "{what}")
                    }
                    Some(n) => {
                        assert_eq!(opened, n, "{what}: {outcome}");
                        assert!(outcome.contains("LimitExceeded"), "{what}: {outcome}");
                    }
                    None => {
                        // Each long path (3000 bytes) keeps over 6000 on the host.
                        assert!(opened > 0 && opened <= 100_000 / 6000, "{what}: {opened}");
                        assert!(outcome.contains("LimitExceeded"), "{what}: {outcome}");
                        assert!(outcome.contains("bytes"), "{what}: {outcome}");
                    }
                }
                assert!(out.stdout.ends_with("ready\n"), "{what}: {}", out.stdout);
            }
        }

        #[cfg(unix)]
        #[test]
        fn file_lock_special() {
            let dir = tempfile::tempdir().unwrap();
            let outside = tempfile::tempdir().unwrap();
            plant_specials(dir.path(), outside.path());
            let out: Outcome =
                $run(&Run::new(FILE_LOCK_SPECIAL, &["/data"]).grant(dir.path(), "/data"));
            out.assert_ok();
            assert!(out.stdout.ends_with("ok\n"), "{}", out.stdout);
            assert_eq!(entries(outside.path()), ["target"]);
        }

        #[cfg(unix)]
        #[test]
        fn file_lock_paths() {
            let (a, b) = path_shapes();
            let out: Outcome = $run(
                &Run::new(FILE_LOCK_PATHS, PATH_SHAPES)
                    .grant(a.path(), "/data")
                    .grant(b.path(), "."),
            );
            out.assert_ok();
            assert_path_shapes(a.path(), b.path());
        }

        #[test]
        fn redis_lock_names() {
            let server = RedisServer::start();
            $run(&Run::new(REDIS_LOCK_NAMES, &["secret-ns:"]).redis(&server.url(), "secret-ns:"))
                .assert_ok();
        }

        #[test]
        fn plugin_stall() {
            // The stalls end on their own here; `portalocker run --timeout`
            // cuts them short (tests/cli_run.rs).
            for args in [&["sleep", "0.01"][..], &["stdin"], &["spin", "1000"]] {
                let out: Outcome = $run(&Run::new(PLUGIN_STALL, args));
                out.assert_ok();
                assert_eq!(out.stdout, "started\ndone\n");
            }
        }

        #[test]
        fn wait_and_hold() {
            // Free locks are taken and let go (tests/cancel.rs cuts them).
            let dir = tempfile::tempdir().unwrap();
            let server = RedisServer::start();
            for args in [
                &["file", "exclusive", "/data/w.lock"][..],
                &["file", "shared", "/data/w.lock"],
                &["semaphore", "exclusive", "/data"],
                &["redis", "shared", "w"],
                &["redis", "exclusive", "w"],
            ] {
                let out: Outcome = $run(
                    &Run::new(WAIT_AND_HOLD, args)
                        .grant(dir.path(), "/data")
                        .redis(&server.url(), "p:"),
                );
                out.assert_ok();
                assert_eq!(out.stdout, "held\n", "{args:?}");
            }
            drop(Lock::new(dir.path().join("w.lock")).try_acquire().unwrap());
        }

        #[test]
        fn misbehave() {
            // One instance misbehaves while holding the lock three others
            // count under, on the same host: it gets its documented trap or
            // error, its lock is freed, and the others count exactly.
            let held = Limits::default().max_held;
            for (program, how, expect) in [
                (FILE_LOCK_FAULT, "panic", "trap"),
                (FILE_LOCK_FAULT, "exit", "trap"),
                (FILE_LOCK_FAULT, "loop", "trap"),
                (MISBEHAVE, "oom", "trap"),
                (MISBEHAVE, "stale", "trap"),
                (MISBEHAVE, "foreign", "trap"),
                (MISBEHAVE, "lock-first", "ok"),
                (MISBEHAVE, "absurd-wait", "LimitExceeded"),
                (MISBEHAVE, "hold-max", "LimitExceeded"),
            ] {
                let dir = tempfile::tempdir().unwrap();
                let counter = Arc::new(
                    Run::new(FILE_LOCK_COUNTER, &["/data/c.lock", "/data/c", "50"])
                        .grant(dir.path(), "/data"),
                );
                let max = (held - 1).to_string();
                let bad = Run::new(program, &["/data/c.lock", how, &max])
                    .grant(dir.path(), "/data")
                    .max_wait(Duration::from_secs(60))
                    .max_memory(64 << 20)
                    .fuel(if how == "loop" { 50_000_000 } else { u64::MAX });
                let bad = std::thread::spawn(move || $run(&bad));
                let good: Vec<_> = (0..3)
                    .map(|_| {
                        let run = Arc::clone(&counter);
                        std::thread::spawn(move || $run(&run))
                    })
                    .collect();
                let out: Outcome = bad.join().unwrap();
                assert!(out.stdout.starts_with("locked\n"), "{how}: {out:?}");
                match expect {
                    // A trap, or exit status 3 for `exit`.
                    "trap" => assert!(out.result.is_err(), "{how}: {out:?}"),
                    expected => {
                        out.assert_ok();
                        assert!(out.stdout.contains(expected), "{how}: {out:?}");
                    }
                }
                for instance in good {
                    let done: Outcome = instance.join().unwrap();
                    done.assert_ok();
                }
                assert_eq!(read_counter(&dir.path().join("c")).unwrap(), 150, "{how}");
                drop(
                    Lock::new(dir.path().join("c.lock"))
                        .try_acquire()
                        .unwrap_or_else(|e| panic!("{how}: lock still held: {e}")),
                );
            }
        }

        #[test]
        fn crash_holder() {
            // Each journaled kind, undisturbed: a clean journal with every
            // increment (tests/crash_matrix.rs adds the faults).
            let dir = tempfile::tempdir().unwrap();
            let server = RedisServer::start();
            let kinds: [&[&str]; 5] = [
                &["file", "/data/x.lock"],
                &["read", "/data/x.lock"],
                &["sem", "/data", "slots", "2"],
                &["redis", "j"],
                &["redis-read", "j"],
            ];
            for kind in kinds {
                let _ = std::fs::remove_file(dir.path().join("journal.log"));
                let mut args = vec!["/data/journal.log", "g", "3", "100"];
                args.extend_from_slice(kind);
                let out: Outcome = $run(
                    &Run::new(CRASH_HOLDER, &args)
                        .grant(dir.path(), "/data")
                        .redis(&server.url(), "p:"),
                );
                out.assert_ok();
                let journals: &[&str] = if kind[0] == "sem" {
                    &["journal.0", "journal.1"]
                } else {
                    &["journal.log"]
                };
                let mut found = portalocker_tests::journal::Findings::default();
                for journal in journals {
                    let path = dir.path().join(journal);
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let _ = std::fs::remove_file(&path);
                    found.merge(portalocker_tests::journal::check(
                        &text,
                        &Default::default(),
                    ));
                }
                assert!(found.violations.is_empty(), "{kind:?}: {found:?}");
                let commits = if kind[0].ends_with("read") { 0 } else { 3 };
                assert_eq!(found.commits, commits, "{kind:?}: {found:?}");
            }
        }

        #[test]
        fn lock_orders() {
            // Under the host alone every order is allowed (the lockdep
            // middleware's refusal is in tests/compose.rs).
            let dir = tempfile::tempdir().unwrap();
            let out: Outcome = $run(
                &Run::new(LOCK_ORDERS, &["/data/a.lock", "/data/b.lock"])
                    .grant(dir.path(), "/data"),
            );
            out.assert_ok();
            assert_eq!(
                out.stdout,
                "A,B: ok\nA,B: ok\nB,A: ok\nB,try A: ok\nA,A: Error::TimedOut\n"
            );
        }

        #[test]
        fn lock_semantics() {
            // The same program passes under the test provider
            // (tests/compose.rs).
            let dir = tempfile::tempdir().unwrap();
            let server = RedisServer::start();
            let out: Outcome = $run(
                &Run::new(LOCK_SEMANTICS, &["/data", "redis"])
                    .grant(dir.path(), "/data")
                    .redis(&server.url(), "plugin:"),
            );
            out.assert_ok();
            assert_eq!(out.stdout, "ok\n");
        }

        #[test]
        fn lock_names() {
            // Names as given, without a namespace middleware: the lock
            // file, the slot file and the Redis lock are where they say.
            let dir = tempfile::tempdir().unwrap();
            let server = RedisServer::start();
            let specs = [
                "file:/data/n.lock",
                "sem:pool:/data",
                "redis:names",
                "file:/elsewhere/x.lock",
            ];
            let out: Outcome = $run(
                &Run::new(LOCK_NAMES, &specs)
                    .grant(dir.path(), "/data")
                    .redis(&server.url(), "plugin:"),
            );
            out.assert_ok();
            let lines: Vec<&str> = out.stdout.lines().collect();
            assert_eq!(
                &lines[..3],
                &[
                    "file:/data/n.lock: ok",
                    "sem:pool:/data: ok",
                    "redis:names: ok"
                ]
            );
            assert!(
                lines[3].starts_with("file:/elsewhere/x.lock: Error::AccessDenied("),
                "{lines:?}"
            );
            assert_eq!(lines[4], "held");
            assert!(dir.path().join("n.lock").exists());
            assert!(dir.path().join("pool.00.lock").exists());
        }

        portalocker_tests::foreach_program!(assert_test_exists);
    };
}

/// `opened N OUTCOME` from `tenant_exhaust`'s output.
fn opened(stdout: &str) -> (usize, String) {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("opened "))
        .unwrap_or_else(|| panic!("no count in {stdout:?}"));
    let (n, outcome) = line.split_once(' ').unwrap();
    (n.parse().unwrap(), outcome.to_owned())
}

/// A FIFO and a directory where lock files should be, a FIFO as slot 0 of
/// semaphore `pool` and a symlink to `outside` as slot 0 of `links`.
#[cfg(unix)]
fn plant_specials(dir: &Path, outside: &Path) {
    let mkfifo = |path: &Path| {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    };
    mkfifo(&dir.join("fifo.lock"));
    mkfifo(&dir.join("pool.00.lock"));
    std::fs::create_dir(dir.join("dir.lock")).unwrap();
    std::fs::write(outside.join("target"), "").unwrap();
    std::os::unix::fs::symlink(outside.join("target"), dir.join("links.00.lock")).unwrap();
}

/// The shapes `file_lock_paths` checks, with grants `/data` (A) and `.` (B).
const PATH_SHAPES: &[&str] = &[
    // Relative, yet in the named grant (wasi-libc strips the root).
    "data/m.txt=/data/m.txt",
    // `..` after a symlink: resolved through the directory, not lexically.
    "/data/lnk/../m2.txt=/data/sub/m2.txt",
    "/data/./sub//m3.txt=/data/sub/m3.txt",
    "//data/m4.txt=/data/m4.txt",
    "./y.txt=y.txt",
    "/z.txt=z.txt",
    "!./data/m5.txt",
    "^/data/sub/../../escape.txt",
];

/// Grant A with `sub/deep` and `lnk -> sub/deep`; grant B with a `data`
/// directory of its own (where a lexical or relative-first resolver would
/// wrongly land).
#[cfg(unix)]
fn path_shapes() -> (tempfile::TempDir, tempfile::TempDir) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::create_dir_all(a.path().join("sub/deep")).unwrap();
    std::os::unix::fs::symlink("sub/deep", a.path().join("lnk")).unwrap();
    std::fs::create_dir(b.path().join("data")).unwrap();
    (a, b)
}

/// Where `file_lock_paths` must have written, and nowhere else.
#[cfg(unix)]
fn assert_path_shapes(a: &Path, b: &Path) {
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))
    };
    assert_eq!(read(a.join("m.txt")), "marker 0");
    assert_eq!(read(a.join("sub/m2.txt")), "marker 1");
    assert_eq!(read(a.join("sub/m3.txt")), "marker 2");
    assert_eq!(read(a.join("m4.txt")), "marker 3");
    assert_eq!(read(b.join("y.txt")), "marker 4");
    assert_eq!(read(b.join("z.txt")), "marker 5");
    assert!(!b.join("data/m.txt").exists());
    assert!(!a.join("m2.txt").exists());
    assert!(!a.join("m5.txt").exists() && !b.join("data/m5.txt").exists());
    assert!(!a.parent().unwrap().join("escape.txt").exists());
}

mod sync_ {
    use super::*;
    scenarios!(Run::sync);
}

mod async_ {
    use super::*;
    scenarios!(Run::in_async);
}

/// Many instances waiting on one lock in one async host: a single-threaded
/// runtime serves them all, no thread per waiter.
#[test]
fn many_async_waiters_on_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let run =
        Run::new(FILE_LOCK_COUNTER, &["/data/m.lock", "/data/m", "5"]).grant(dir.path(), "/data");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut instances = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let run = run.clone();
            instances.spawn(async move { run.run_async().await });
        }
        while let Some(outcome) = instances.join_next().await {
            outcome.unwrap().assert_ok();
        }
    });
    assert_eq!(read_counter(&dir.path().join("m")).unwrap(), 250);
}

/// Refusals name the guest's path, never the host's.
#[test]
fn refusals_do_not_leak_host_paths() {
    let (grant, _outside) = sandbox();
    let out = Run::new(FILE_LOCK_ESCAPE, &["/grant"])
        .grant(grant.path(), "/grant")
        .sync();
    out.assert_ok();
    let host = grant.path().to_string_lossy().into_owned();
    assert!(
        out.stdout
            .contains("/grant/link-out.lock: Error::AccessDenied"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(&host),
        "host path leaked: {}",
        out.stdout
    );
}
