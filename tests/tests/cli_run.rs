//! `portalocker run`: plugins as separate processes, excluding and
//! excluded by native processes and Python's portalocker.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};

use common::{Holder, cli, exit_code, lockworker, pyworker, run_ok};
use portalocker::Lock;
use portalocker_tests::programs::*;
use portalocker_tests::read_counter;

fn run_plugin(dir: &std::path::Path, program: &str, args: &[&str]) -> std::process::Command {
    let mut command = cli();
    command
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/data", dir.display()))
        .arg(program)
        .arg("--")
        .args(args);
    command
}

/// Start a holding plugin and wait for it to say "locked".
fn holding_plugin(dir: &std::path::Path, args: &[&str]) -> Child {
    let mut child = run_plugin(dir, FILE_LOCK_HOLD, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    child
}

#[test]
fn a_plugin_holding_a_lock_blocks_native_cli_and_python() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("p.lock");
    let mut plugin = holding_plugin(dir.path(), &["/data/p.lock"]);
    assert_eq!(exit_code(lockworker().arg("try").arg(&lock)), 3);
    assert_eq!(exit_code(pyworker().arg("try").arg(&lock)), 3);
    assert_eq!(
        exit_code(
            cli()
                .args(["lock", "-n", "-q"])
                .arg(&lock)
                .args(["--", "true"])
        ),
        1
    );
    assert!(Lock::new(&lock).try_acquire().unwrap_err().is_contention());
    writeln!(plugin.stdin.take().unwrap(), "go").unwrap();
    assert!(plugin.wait().unwrap().success());
    run_ok(lockworker().arg("try").arg(&lock));
    run_ok(pyworker().arg("try").arg(&lock));
}

#[test]
fn native_and_python_holders_make_a_plugin_fail_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("n.lock");
    for mut command in [lockworker(), pyworker()] {
        command.arg("hold").arg(&lock);
        let holder = Holder::start(command);
        run_ok(&mut run_plugin(
            dir.path(),
            FILE_LOCK_CONTENDED,
            &["/data/n.lock"],
        ));
        holder.release();
    }
}

#[test]
fn plugins_native_and_python_processes_share_one_exact_counter() {
    let dir = tempfile::tempdir().unwrap();
    let (lock, data) = (dir.path().join("c.lock"), dir.path().join("c"));
    let mut workers: Vec<Child> = (0..3)
        .map(|_| {
            run_plugin(
                dir.path(),
                FILE_LOCK_COUNTER,
                &["/data/c.lock", "/data/c", "100"],
            )
            .spawn()
            .unwrap()
        })
        .collect();
    workers.push(
        lockworker()
            .arg("count")
            .arg(&lock)
            .arg(&data)
            .arg("100")
            .spawn()
            .unwrap(),
    );
    workers.push(
        pyworker()
            .arg("count")
            .arg(&lock)
            .arg(&data)
            .arg("100")
            .spawn()
            .unwrap(),
    );
    for mut worker in workers {
        assert!(worker.wait().unwrap().success());
    }
    assert_eq!(read_counter(&data).unwrap(), 500);
}

#[test]
fn a_plugin_skips_semaphore_slots_python_holds() {
    let dir = tempfile::tempdir().unwrap();
    let py = Holder::start({
        let mut c = pyworker();
        c.arg("sem-hold").arg(dir.path()).args(["mixed", "2"]);
        c
    });
    assert_eq!(py.said, "slot 0");
    let output = run_plugin(dir.path(), SEMAPHORE_HOLD, &["/data", "mixed", "2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "slot 1");
    py.release();
}

#[test]
fn limits_and_faults_end_the_plugin_and_free_its_locks() {
    let dir = tempfile::tempdir().unwrap();
    let with = |flags: &[&str], program: &str, args: &[&str]| {
        let mut command = cli();
        command
            .arg("run")
            .arg("--dir")
            .arg(format!("{}::/data", dir.path().display()))
            .args(flags)
            .arg(program)
            .arg("--")
            .args(args);
        command
    };
    run_ok(&mut with(
        &["--max-locks", "2", "--max-wait", "1"],
        FILE_LOCK_LIMITS,
        &["/data"],
    ));
    let lock = dir.path().join("f.lock");
    for (flags, how, code) in [
        (&["--fuel", "50000000"][..], "loop", 124),
        (&["--timeout", "0.5"][..], "loop", 124),
        (&[][..], "panic", 70),
        (&[][..], "exit", 1),
    ] {
        let output = with(flags, FILE_LOCK_FAULT, &["/data/f.lock", how])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(code),
            "{how}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), "locked\n", "{how}");
        drop(
            Lock::new(&lock)
                .try_acquire()
                .unwrap_or_else(|e| panic!("{how}: still held: {e}")),
        );
    }
}

#[test]
fn a_second_start_uses_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        run_ok(
            run_plugin(dir.path(), FILE_LOCK_BASIC, &["/data"])
                .env("PORTALOCKER_CACHE_DIR", cache.path()),
        );
    }
    let cached: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].to_string_lossy().ends_with(".cwasm"));
    // A corrupt cache entry is recompiled, not trusted.
    std::fs::write(cache.path().join(&cached[0]), b"garbage").unwrap();
    run_ok(
        run_plugin(dir.path(), FILE_LOCK_BASIC, &["/data"])
            .env("PORTALOCKER_CACHE_DIR", cache.path()),
    );
}

#[test]
fn bad_run_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("x.wasm");
    std::fs::write(&not_wasm, b"not wasm").unwrap();
    let d = dir.path().to_str().unwrap();
    for (args, code) in [
        (vec!["run", "--dir", "/no/such/dir", FILE_LOCK_BASIC], 64),
        (vec!["run", "--dir", "", FILE_LOCK_BASIC], 64),
        (vec!["run", "--env", "NOEQUALS", FILE_LOCK_BASIC], 64),
        (vec!["run", "--max-wait", "-3", FILE_LOCK_BASIC], 64),
        (
            vec!["run", "--fuel", "5", "--timeout", "1", FILE_LOCK_BASIC],
            64,
        ),
        (vec!["run", "--dir", d, "/no/such/plugin.wasm"], 66),
        (vec!["run", "--dir", d, not_wasm.to_str().unwrap()], 65),
    ] {
        let output = cli().args(&args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.stderr.is_empty());
    }
}

#[test]
fn portalocker_hands_run_to_the_plugin_host_and_says_when_it_is_missing() {
    // `portalocker` links no wasm runtime: `run` is the plugin host's, in
    // the same process (same PID, so signals and exit statuses pass).
    let dir = tempfile::tempdir().unwrap();
    let out = cli()
        .args(["run", "--dir", &format!("{}::/data", dir.path().display())])
        .args([FILE_LOCK_BASIC, "--", "/data"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Installed alone, it says what is missing and how to install it, and
    // the lock commands still work.
    let alone = tempfile::tempdir().unwrap();
    let exe = alone.path().join("portalocker");
    let program = cli().get_program().to_owned();
    std::fs::copy(&program, &exe).unwrap();
    let out = std::process::Command::new(&exe)
        .env("PATH", alone.path())
        .args(["run", FILE_LOCK_BASIC])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("portalocker-run") && stderr.contains("cargo install"),
        "{stderr}"
    );
    let lock = dir.path().join("x.lock");
    let status = std::process::Command::new(&exe)
        .arg("lock")
        .arg(&lock)
        .args(["--", "/bin/true"])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_replaced_lock_file_is_locked_anew_not_through_the_old_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("swap.lock");
    let mut plugin = run_plugin(dir.path(), FILE_LOCK_RELOCK, &["/data/swap.lock", "held"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(plugin.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "released");
    // A tmp cleaner removes the lock file; someone creates and holds a new one.
    std::fs::remove_file(&lock).unwrap();
    let holder = Holder::start({
        let mut c = lockworker();
        c.arg("hold").arg(&lock);
        c
    });
    writeln!(plugin.stdin.take().unwrap(), "go").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ok");
    assert!(plugin.wait().unwrap().success());
    holder.release();
}

#[test]
fn a_plugin_takes_redis_locks_in_its_namespace_only() {
    let server = portalocker_tests::redis_server::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let run = |prefix: &str, name: &str, expect: &str| {
        let mut command = cli();
        command
            .args(["run", "--redis", &server.url(), "--redis-prefix", prefix])
            .arg("--dir")
            .arg(format!("{}::/data", dir.path().display()))
            .arg(REDIS_LOCK_CONTENDED)
            .args(["--", name, expect]);
        command
    };
    // Python holds "team-a:build": a plugin in team-a's namespace sees it
    // held; one in team-b's namespace, asking for the same name, does not.
    let py = Holder::start({
        let mut c = pyworker();
        c.args(["redis-hold", &server.url(), "team-a:build"]);
        c
    });
    run_ok(&mut run("team-a:", "build", "held"));
    run_ok(&mut run("team-b:", "build", "free"));
    py.release();
    run_ok(&mut run("team-a:", "build", "free"));
    // Without --redis the plugin is told Redis is unsupported.
    let mut command = cli();
    command
        .arg("run")
        .arg(REDIS_LOCK_CONTENDED)
        .args(["--", "x", "unsupported"]);
    run_ok(&mut command);
    assert_eq!(
        exit_code(cli().args(["run", "--redis", "nonsense", REDIS_LOCK_CONTENDED])),
        64
    );
}

#[test]
fn a_plugin_learns_that_its_redis_lock_was_lost() {
    let server = portalocker_tests::redis_server::RedisServer::start();
    let mut plugin = cli()
        .args(["run", "--redis", &server.url(), "--redis-prefix", "p:"])
        .arg(REDIS_LOCK_LOSE)
        .args(["--", "doomed", "lost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(plugin.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    server.kill_client_named("p:doomed-lock-");
    writeln!(plugin.stdin.take().unwrap(), "go").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ok");
    assert!(plugin.wait().unwrap().success());
}

/// Wait for `child`, killing it (and failing) if it outlives `guard`: the
/// test's protection against a hang, far longer than the run should take.
fn wait_or_kill(
    child: &mut Child,
    guard: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > guard {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {guard:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_timeout_bounds_the_whole_run_waits_in_wasi_and_lock_calls_included() {
    let dir = tempfile::tempdir().unwrap();
    let held = Lock::new(dir.path().join("held.lock")).acquire().unwrap();
    for (what, program, args, said) in [
        (
            "a WASI sleep",
            PLUGIN_STALL,
            &["sleep", "60"][..],
            "started\n",
        ),
        (
            "a blocking stdin read",
            PLUGIN_STALL,
            &["stdin"][..],
            "started\n",
        ),
        (
            "a busy loop",
            PLUGIN_STALL,
            &["spin", "100000000000000"][..],
            "started\n",
        ),
        ("a lock wait", FILE_LOCK_HOLD, &["/data/held.lock"][..], ""),
    ] {
        let mut child = cli()
            .args(["run", "--timeout", "1", "--dir"])
            .arg(format!("{}::/data", dir.path().display()))
            .arg(program)
            .arg("--")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Stdin stays open and silent: the read never ends on its own.
        let _stdin = child.stdin.take();
        let status = wait_or_kill(&mut child, std::time::Duration::from_secs(30), what);
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(124), "{what}: {err}");
        assert_eq!(out, said, "{what}");
        assert!(err.contains("its time ran out"), "{what}: {err}");
    }
    drop(held);
}

#[cfg(target_os = "linux")]
mod tenancy {
    //! A hostile plugin under `portalocker run`, measured from outside:
    //! what it makes the host process hold stays within its budget.

    use super::*;
    use portalocker_tests::redis_server::RedisServer;

    /// A running `tenant_exhaust` plugin, stopped at `start`.
    struct Tenant {
        child: Child,
        out: BufReader<std::process::ChildStdout>,
    }

    impl Tenant {
        fn start(dir: &std::path::Path, flags: &[&str], args: &[&str]) -> Self {
            let mut child = cli()
                .arg("run")
                .arg("--dir")
                .arg(format!("{}::/data", dir.display()))
                .args(flags)
                .arg(TENANT_EXHAUST)
                .arg("--")
                .args(args)
                .arg("/data")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            assert_eq!(line(&mut out), "start");
            Self { child, out }
        }

        /// Let it loop; the `opened N OUTCOME` it reports once it is ready.
        fn exhaust(&mut self) -> String {
            writeln!(self.child.stdin.as_mut().unwrap(), "go").unwrap();
            let opened = line(&mut self.out);
            assert_eq!(line(&mut self.out), "ready", "{opened}");
            opened
        }

        fn descriptors(&self) -> usize {
            std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
                .unwrap()
                .count()
        }

        fn rss_kib(&self) -> u64 {
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap()
        }

        fn finish(mut self) {
            drop(self.child.stdin.take());
            assert!(self.child.wait().unwrap().success());
        }
    }

    fn line(out: &mut impl BufRead) -> String {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    #[test]
    fn opening_semaphores_and_locks_pins_no_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        // Before: every semaphore handle kept a directory descriptor.
        let mut tenant = Tenant::start(dir.path(), &["--max-locks", "1"], &["semaphores", "20000"]);
        let before = tenant.descriptors();
        let opened = tenant.exhaust();
        let max = portalocker_wasmtime::DEFAULT_MAX_HANDLES;
        assert!(opened.starts_with(&format!("opened {max} ")), "{opened}");
        assert!(opened.contains("LimitExceeded"), "{opened}");
        let after = tenant.descriptors();
        assert!(after <= before + 4, "{before} -> {after} descriptors");
        tenant.finish();
        // Before: every file lock locked once kept its descriptor.
        let mut tenant = Tenant::start(dir.path(), &[], &["file-locks", "1000"]);
        let before = tenant.descriptors();
        assert_eq!(tenant.exhaust(), "opened 1000 all");
        let after = tenant.descriptors();
        let kept = portalocker_wasmtime::DEFAULT_MAX_IDLE_DESCRIPTORS;
        assert!(
            after <= before + kept + 4,
            "{before} -> {after} descriptors"
        );
        tenant.finish();
    }

    #[test]
    fn a_host_out_of_descriptors_answers_with_an_error_value() {
        // The process may open only 64 files: the plugin, allowed to hold
        // 1000 locks, runs the host out of descriptors. It gets
        // limit-exceeded, and neither it nor the host panics.
        let dir = tempfile::tempdir().unwrap();
        let program = cli().get_program().to_owned();
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 64 && exec \"$@\"")
            .arg("sh")
            .arg(program)
            .arg("run")
            .arg("--dir")
            .arg(format!("{}::/data", dir.path().display()))
            .args(["--max-locks", "1000", "--max-handles", "5000"])
            .arg(TENANT_EXHAUST)
            .args(["--", "held-locks", "1000", "/data"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{:?}: {out}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            out.contains("LimitExceeded") && out.contains("out of file descriptors"),
            "{out}"
        );
        assert!(out.ends_with("ready\n"), "{out}");
    }

    #[test]
    fn the_handle_limit_is_a_flag() {
        let dir = tempfile::tempdir().unwrap();
        let mut tenant =
            Tenant::start(dir.path(), &["--max-handles", "10"], &["semaphores", "100"]);
        let opened = tenant.exhaust();
        assert!(
            opened.starts_with("opened 10 ") && opened.contains("LimitExceeded"),
            "{opened}"
        );
        tenant.finish();
    }

    #[test]
    fn names_and_paths_take_bounded_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut tenant = Tenant::start(
            dir.path(),
            &["--max-handles", "1000000"],
            &["long-paths", "60000"],
        );
        let before = tenant.rss_kib();
        let opened = tenant.exhaust();
        assert!(
            opened.contains("LimitExceeded") && opened.contains("bytes"),
            "{opened}"
        );
        let grown = tenant.rss_kib().saturating_sub(before);
        // The budget is 1 MiB of names; the guest's own copies and the
        // table add a few more. Before: 60,000 handles took 729 MiB.
        assert!(grown < 48 * 1024, "the host grew by {grown} KiB");
        tenant.finish();
    }

    fn clients(server: &RedisServer) -> usize {
        server.cli(&["CLIENT", "LIST"]).lines().count()
    }

    #[test]
    fn redis_handles_share_connections_and_holds_are_bounded() {
        let server = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let url = server.url();
        let redis = ["--redis", url.as_str()];
        // Before: each handle kept its own connections (two per handle).
        let mut tenant = Tenant::start(dir.path(), &redis, &["redis-locks", "300"]);
        assert_eq!(tenant.exhaust(), "opened 300 all");
        let idle = portalocker::redis::DEFAULT_MAX_IDLE;
        // Three shared, the idle ones kept, and redis-cli itself.
        assert!(
            clients(&server) <= 3 + idle + 1,
            "{}",
            server.cli(&["CLIENT", "LIST"])
        );
        tenant.finish();
        let mut tenant = Tenant::start(dir.path(), &redis, &["redis-held", "100"]);
        let opened = tenant.exhaust();
        let max = portalocker_wasmtime::DEFAULT_MAX_REDIS_CONNECTIONS;
        assert!(
            opened.starts_with(&format!("opened {max} ")) && opened.contains("LimitExceeded"),
            "{opened}"
        );
        assert!(
            clients(&server) <= 3 + max + idle + 1,
            "{}",
            server.cli(&["CLIENT", "LIST"])
        );
        tenant.finish();
    }
}

#[cfg(unix)]
mod cache {
    //! The compiled-plugin cache: private, keyed by a digest, checked.

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn run_with_cache(cache: &std::path::Path) -> std::process::Output {
        let dir = tempfile::tempdir().unwrap();
        let output = run_plugin(dir.path(), FILE_LOCK_BASIC, &["/data"])
            .env("PORTALOCKER_CACHE_DIR", cache)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn entries(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(cache)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    }

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn entries_are_private_and_named_by_a_digest() {
        let base = tempfile::tempdir().unwrap();
        let cache = base.path().join("new/plugins");
        run_with_cache(&cache);
        assert_eq!(mode(&cache), 0o700);
        let entries = entries(&cache);
        assert_eq!(entries.len(), 1, "{entries:?}");
        let name = entries[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let stem = name.strip_suffix(".cwasm").unwrap();
        assert!(
            stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
        assert_eq!(mode(&entries[0]), 0o600);
    }

    #[test]
    fn a_cache_others_may_write_is_not_used() {
        let cache = tempfile::tempdir().unwrap();
        std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let output = run_with_cache(cache.path());
        assert!(String::from_utf8_lossy(&output.stderr).contains("not using the plugin cache"));
        assert!(entries(cache.path()).is_empty());
    }

    #[test]
    fn tampered_or_exposed_entries_are_recompiled_not_loaded() {
        let cache = tempfile::tempdir().unwrap();
        std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        run_with_cache(cache.path());
        let entry = entries(cache.path()).remove(0);
        let good = std::fs::read(&entry).unwrap();
        // A payload that does not match its digest (same length).
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        std::fs::write(&entry, &bad).unwrap();
        run_with_cache(cache.path());
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            good,
            "the entry was not replaced"
        );
        // An entry others may write.
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        run_with_cache(cache.path());
        assert_eq!(mode(&entry), 0o600);
        // A symlink in its place.
        std::fs::remove_file(&entry).unwrap();
        let elsewhere = cache.path().join("elsewhere");
        std::fs::write(&elsewhere, &good).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        run_with_cache(cache.path());
        assert!(
            !std::fs::symlink_metadata(&entry)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
