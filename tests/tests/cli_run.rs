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
