//! The Redis lock against a real `redis-server`: exclusion, shared mode,
//! fencing, loss, topology refusal, and interoperability with Python's
//! portalocker 4.4.2 in both directions.

mod common;

use std::time::{Duration, Instant};

use common::{Holder, exit_code, lockworker, pyworker, run_ok};
use portalocker::redis::RedisLock;
use portalocker::{Error, Wait};
use portalocker_tests::read_counter;
use portalocker_tests::redis_server::RedisServer;

fn lock(server: &RedisServer, name: &str) -> RedisLock {
    RedisLock::open(&server.url(), name).unwrap()
}

fn holder(
    mut command: std::process::Command,
    server: &RedisServer,
    name: &str,
    options: &[&str],
) -> Holder {
    command
        .args(["redis-hold", &server.url(), name])
        .args(options);
    Holder::start(command)
}

#[test]
fn exclusive_locks_exclude_and_hand_over() {
    let server = RedisServer::start();
    let a = lock(&server, "jobs").acquire().unwrap();
    let err = lock(&server, "jobs")
        .wait(Wait::NONE)
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::WouldBlock { .. }), "{err}");
    let started = Instant::now();
    let err = lock(&server, "jobs")
        .wait(Wait::up_to(Duration::from_millis(300)))
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        lock(&server, "jobs")
            .wait(Wait::NONE)
            .acquire()
            .unwrap_err()
            .is_contention()
    );
    // Another name is independent.
    drop(lock(&server, "other").acquire().unwrap());
    let waiter = std::thread::spawn({
        let url = server.url();
        move || {
            RedisLock::open(&url, "jobs")
                .unwrap()
                .wait(Wait::up_to(Duration::from_secs(30)))
                .acquire()
                .map(drop)
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    a.release().unwrap();
    waiter.join().unwrap().unwrap();
}

#[test]
fn readers_share_and_writers_wait_for_them() {
    let server = RedisServer::start();
    let r1 = lock(&server, "doc").shared().acquire().unwrap();
    let r2 = lock(&server, "doc")
        .shared()
        .wait(Wait::NONE)
        .acquire()
        .unwrap();
    assert!(
        lock(&server, "doc")
            .wait(Wait::NONE)
            .acquire()
            .unwrap_err()
            .is_contention()
    );
    drop((r1, r2));
    let writer = lock(&server, "doc").acquire().unwrap();
    assert!(
        lock(&server, "doc")
            .shared()
            .wait(Wait::NONE)
            .acquire()
            .unwrap_err()
            .is_contention()
    );
    drop(writer);
}

#[test]
fn fencing_tokens_grow() {
    let server = RedisServer::start();
    let fenced = lock(&server, "fenced").fencing(true);
    let first = fenced.acquire().unwrap();
    let t1 = first.fencing_token().unwrap();
    drop(first);
    let t2 = fenced.acquire().unwrap().fencing_token().unwrap();
    assert!(t2 > t1);
    assert_eq!(
        lock(&server, "fenced").acquire().unwrap().fencing_token(),
        None
    );
}

#[test]
fn a_fencing_key_that_is_no_counter_is_an_error_at_once_not_a_wait() {
    // A cut connection at the grant costs an attempt (the wait goes on); a
    // token the server refuses to draw is an error, even waiting forever.
    let server = RedisServer::start();
    server.cli(&["SET", "odd-fence", "not a number"]);
    let fenced = lock(&server, "odd").fencing(true).wait(Wait::FOREVER);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(fenced.acquire().map(drop));
    });
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a refused token made the acquisition wait");
    assert!(matches!(got, Err(Error::Lost { .. })), "{got:?}");
    // Nothing was left behind: the lock is free.
    drop(lock(&server, "odd").wait(Wait::NONE).acquire().unwrap());
}

#[test]
fn a_killed_subscription_is_reported_as_lost() {
    let server = RedisServer::start();
    let lock = lock(&server, "fragile");
    let guard = lock.acquire().unwrap();
    assert!(!guard.is_lost());
    let name = format!("fragile-lock-{}", lock.holder_id());
    server.kill_client_named(&name);
    assert!(
        guard.wait_lost(Duration::from_secs(10)),
        "the loss was not noticed"
    );
    assert!(matches!(guard.ensure_held(), Err(Error::Lost { .. })));
    assert!(guard.release().is_err());
}

#[test]
fn a_restarted_server_never_leaves_two_believing_holders() {
    let mut server = RedisServer::start();
    let first = lock(&server, "restart").acquire().unwrap();
    server.restart();
    assert!(
        first.wait_lost(Duration::from_secs(10)),
        "the holder did not learn of the restart"
    );
    let second = lock(&server, "restart").acquire().unwrap();
    assert!(first.is_lost() && !second.is_lost());
}

#[test]
fn replicas_are_refused() {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let err = lock(&replica, "r").acquire().unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
}

#[test]
fn cluster_nodes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nodes.conf");
    let node = RedisServer::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        config.to_str().unwrap(),
    ]);
    let err = lock(&node, "c").acquire().unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("cluster"), "{err}");
}

#[test]
fn bad_names_and_urls_are_refused() {
    for name in ["", "a\nb"] {
        assert!(matches!(
            RedisLock::open("redis://127.0.0.1:1/", name),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        RedisLock::open("nonsense://", "x"),
        Err(Error::InvalidArgument(_))
    ));
    // An unreachable server is retried until the deadline, then reported
    // as unavailable, not as contention.
    let err = RedisLock::open("redis://127.0.0.1:1/", "x")
        .unwrap()
        .wait(Wait::up_to(Duration::from_millis(300)))
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::RedisUnavailable(_)), "{err}");
    assert!(!err.is_contention());
}

#[test]
fn python_and_rust_exclude_each_other() {
    let server = RedisServer::start();
    let py = holder(pyworker(), &server, "shared-job", &[]);
    assert!(
        lock(&server, "shared-job")
            .wait(Wait::NONE)
            .acquire()
            .unwrap_err()
            .is_contention()
    );
    assert!(
        lock(&server, "shared-job")
            .shared()
            .wait(Wait::NONE)
            .acquire()
            .unwrap_err()
            .is_contention()
    );
    py.release();
    let ours = lock(&server, "shared-job").acquire().unwrap();
    assert_eq!(
        exit_code(pyworker().args(["redis-try", &server.url(), "shared-job"])),
        3
    );
    assert_eq!(
        exit_code(pyworker().args(["redis-try", &server.url(), "shared-job", "shared"])),
        3
    );
    drop(ours);
    run_ok(pyworker().args(["redis-try", &server.url(), "shared-job"]));
}

#[test]
fn python_and_rust_readers_share_and_gate_writers() {
    let server = RedisServer::start();
    let py_reader = holder(pyworker(), &server, "doc", &["shared"]);
    let ours = lock(&server, "doc")
        .shared()
        .wait(Wait::NONE)
        .acquire()
        .unwrap();
    assert_eq!(
        exit_code(pyworker().args(["redis-try", &server.url(), "doc"])),
        3
    );
    assert!(
        lock(&server, "doc")
            .wait(Wait::NONE)
            .acquire()
            .unwrap_err()
            .is_contention()
    );
    drop(ours);
    py_reader.release();
    let rust_reader = holder(lockworker(), &server, "doc", &["shared"]);
    run_ok(pyworker().args(["redis-try", &server.url(), "doc", "shared"]));
    assert_eq!(
        exit_code(pyworker().args(["redis-try", &server.url(), "doc"])),
        3
    );
    rust_reader.release();
}

#[test]
fn python_and_rust_fenced_holders_draw_one_sequence() {
    // Python writers, Rust writers and Rust readers (our extension: a
    // fenced shared grant draws a token too) draw from one counter.
    let server = RedisServer::start();
    let mut tokens = Vec::new();
    for round in 0..6 {
        let rust = lock(&server, "fence").fencing(true);
        let token = match round % 3 {
            0 => {
                let py = holder(pyworker(), &server, "fence", &["fencing"]);
                let token = py.said.trim_start_matches("locked ").parse::<u64>();
                py.release();
                token.unwrap()
            }
            1 => rust.acquire().unwrap().fencing_token().unwrap(),
            _ => rust.shared().acquire().unwrap().fencing_token().unwrap(),
        };
        tokens.push(token);
    }
    assert!(tokens.windows(2).all(|w| w[1] > w[0]), "{tokens:?}");
}

#[test]
fn writers_racing_on_a_free_channel_exactly_one_wins() {
    let server = RedisServer::start();
    for round in 0..3 {
        let name = format!("race-{round}");
        // Two Python and two Rust processes try at once; a winner holds for
        // a second so that every attempt overlaps it.
        let racers: Vec<_> = (0..4)
            .map(|i| {
                let mut command = if i % 2 == 0 { pyworker() } else { lockworker() };
                command
                    .args(["redis-try", &server.url(), &name, "hold=3000"])
                    .spawn()
                    .unwrap()
            })
            .collect();
        let codes: Vec<i32> = racers
            .into_iter()
            .map(|mut r| r.wait().unwrap().code().unwrap())
            .collect();
        assert_eq!(
            codes.iter().filter(|c| **c == 0).count(),
            1,
            "round {round}: {codes:?}"
        );
        assert_eq!(
            codes.iter().filter(|c| **c == 3).count(),
            3,
            "round {round}: {codes:?}"
        );
    }
}

#[test]
fn a_sigkilled_python_holder_is_taken_over_fast() {
    let server = RedisServer::start();
    let py = holder(pyworker(), &server, "crash", &[]);
    py.kill();
    let started = Instant::now();
    drop(
        lock(&server, "crash")
            .wait(Wait::up_to(Duration::from_secs(10)))
            .acquire()
            .unwrap(),
    );
    eprintln!("takeover after SIGKILL: {:?}", started.elapsed());
}

#[cfg(unix)]
#[test]
fn a_sigstopped_python_holder_is_reaped() {
    let server = RedisServer::start();
    let py = holder(pyworker(), &server, "wedged", &[]);
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(py.pid() as i32, libc::SIGSTOP) };
    let got = lock(&server, "wedged")
        .wait(Wait::up_to(Duration::from_secs(15)))
        .acquire();
    // SAFETY: as above.
    unsafe { libc::kill(py.pid() as i32, libc::SIGKILL) };
    drop(got.expect("the wedged Python holder was not reaped"));
}

#[cfg(unix)]
#[test]
fn our_sigstopped_holder_is_reaped_by_python_and_learns_it() {
    let server = RedisServer::start();
    let mut ours = holder(lockworker(), &server, "paused", &[]);
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(ours.pid() as i32, libc::SIGSTOP) };
    let python = Holder::start({
        let mut c = pyworker();
        c.args(["redis-hold", &server.url(), "paused"]);
        c
    });
    // SAFETY: as above.
    unsafe { libc::kill(ours.pid() as i32, libc::SIGCONT) };
    // Give the resumed holder a moment to read its dead socket.
    std::thread::sleep(Duration::from_millis(1000));
    ours.tell("report");
    let said = ours.finish();
    assert!(
        said.contains("lost"),
        "our paused holder did not learn of its loss: {said:?}"
    );
    python.release();
}

#[test]
fn a_mixed_soak_counts_exactly() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("count");
    let mut workers = Vec::new();
    for i in 0..4 {
        let mut command = if i % 2 == 0 { lockworker() } else { pyworker() };
        command
            .args(["redis-count", &server.url(), "soak"])
            .arg(&data)
            .arg("40");
        workers.push(command.spawn().unwrap());
    }
    for mut worker in workers {
        assert!(worker.wait().unwrap().success());
    }
    assert_eq!(read_counter(&data).unwrap(), 160);
}

#[test]
fn the_cli_runs_commands_under_the_redis_lock() {
    let server = RedisServer::start();
    let output = common::cli()
        .args([
            "redis-lock",
            "--url",
            &server.url(),
            "--fencing",
            "cli-job",
            "--",
            "sh",
            "-c",
        ])
        .arg("echo token=$PORTALOCKER_FENCING_TOKEN")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "token=1");
    // REDIS_URL is the default server; the command's status comes back.
    let code = common::cli()
        .env("REDIS_URL", server.url())
        .args(["redis-lock", "cli-job", "--", "sh", "-c", "exit 6"])
        .status()
        .unwrap()
        .code();
    assert_eq!(code, Some(6));
    // A Python holder makes it fail with the conflict code.
    let py = holder(pyworker(), &server, "cli-job", &[]);
    let args = [
        "redis-lock",
        "--url",
        &server.url(),
        "-n",
        "-q",
        "-E",
        "9",
        "cli-job",
        "--",
        "true",
    ];
    assert_eq!(exit_code(common::cli().args(args)), 9);
    let started = Instant::now();
    let args = [
        "redis-lock",
        "--url",
        &server.url(),
        "-w",
        "0.4",
        "-q",
        "cli-job",
        "--",
        "true",
    ];
    assert_eq!(exit_code(common::cli().args(args)), 1);
    assert!(started.elapsed() >= Duration::from_millis(400));
    py.release();
    // Bad input.
    assert_eq!(
        exit_code(common::cli().args(["redis-lock", "--url", &server.url(), "", "--", "true"])),
        64
    );
}

#[cfg(unix)]
#[test]
fn the_cli_stops_the_command_when_the_lock_is_lost() {
    use std::io::{BufRead, BufReader};
    let server = RedisServer::start();
    let mut child = common::cli()
        .args([
            "redis-lock",
            "--url",
            &server.url(),
            "doomed",
            "--",
            "sh",
            "-c",
        ])
        .arg("trap 'echo got-term; exit 5' TERM; echo ready; while :; do sleep 0.05; done")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    server.kill_client_named("doomed-lock-");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "got-term");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&output.stderr).contains("was lost"));
}

/// A holder's connection is exempt from client eviction (`CLIENT NO-EVICT`,
/// flag `e` in `CLIENT LIST`), so memory pressure from other clients never
/// frees its lock; a server that refuses the command (here an ACL without
/// it) still gets a working lock.
#[test]
fn holders_are_exempt_from_client_eviction_where_the_server_allows() {
    let server = RedisServer::start();
    let flags_of_holder = |name: &str| {
        let list = server.cli(&["CLIENT", "LIST"]);
        let line = list
            .lines()
            .find(|l| l.contains(&format!(" name={name}-lock-")))
            .unwrap_or_else(|| panic!("no holder connection of {name}: {list}"))
            .to_owned();
        line.split(' ')
            .find_map(|kv| kv.strip_prefix("flags="))
            .unwrap()
            .to_owned()
    };
    let guard = lock(&server, "evict").acquire().unwrap();
    assert!(flags_of_holder("evict").contains('e'), "not exempt");
    guard.release().unwrap();

    assert_eq!(
        server
            .cli(&[
                "ACL",
                "SETUSER",
                "app",
                "on",
                ">pw",
                "~*",
                "&*",
                "+@all",
                "-client|no-evict"
            ])
            .trim(),
        "OK"
    );
    let url = format!("redis://app:pw@127.0.0.1:{}/", server.port());
    let guard = RedisLock::open(&url, "evict2").unwrap().acquire().unwrap();
    assert!(!flags_of_holder("evict2").contains('e'));
    let err = RedisLock::open(&url, "evict2")
        .unwrap()
        .wait(Wait::NONE)
        .acquire()
        .unwrap_err();
    assert!(err.is_contention(), "{err}");
    guard.release().unwrap();
    RedisLock::open(&url, "evict2")
        .unwrap()
        .try_acquire()
        .unwrap()
        .release()
        .unwrap();
}

/// The suite runs on the server it was asked to (`scripts/test.sh` runs it
/// on Redis and on Valkey): Valkey says `valkey_version`, Redis does not.
#[test]
fn the_server_is_the_one_asked_for() {
    let server = RedisServer::start();
    let info = server.cli(&["INFO", "server"]);
    let valkey = portalocker_tests::redis_server::server_binary().contains("valkey");
    assert_eq!(info.contains("valkey_version:"), valkey, "{info}");
}
