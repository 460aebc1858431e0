//! The Redis lock under faults, against a real `redis-server` and the real
//! Python portalocker: wedged holders with many waiters, a server that
//! restarts, pauses or freezes, killed connections, a partition, a delayed
//! fencing command, a killed `portalocker`, mixed-language fairness and the
//! release-notice channel. Each case is bounded in time; each prints what
//! the holder and the waiters saw and when (`--nocapture` shows it).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Holder, cli, lockworker, pyworker};
use portalocker::redis::RedisLock;
use portalocker::{Error, Wait};
use portalocker_tests::proxy::Proxy;
use portalocker_tests::redis_server::RedisServer;

/// Which implementation a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rust,
    Python,
}

fn worker(kind: Kind) -> Command {
    match kind {
        Kind::Rust => lockworker(),
        Kind::Python => pyworker(),
    }
}

/// A waiter process: waits up to `timeout` seconds, holds `hold_ms`.
fn waiter(kind: Kind, url: &str, name: &str, timeout: u32, hold_ms: u32) -> Child {
    worker(kind)
        .args([
            "redis-wait",
            url,
            name,
            &timeout.to_string(),
            &hold_ms.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a waiter")
}

/// How a waiter ended: `Some(ms waited)` if it got the lock and still held
/// it when it let go, `None` on a timeout. Fails on anything else.
fn waited(child: Child, what: &str) -> Option<u64> {
    let output = child.wait_with_output().expect("a waiter");
    let out = String::from_utf8_lossy(&output.stdout);
    match output.status.code() {
        Some(0) => {
            let got = out
                .lines()
                .find_map(|l| l.strip_prefix("got "))
                .and_then(|l| l.split(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("{what}: {out}"));
            assert!(
                out.contains("held"),
                "{what}: a waiter lost its lock: {out}"
            );
            Some(got)
        }
        Some(3) => None,
        other => panic!("{what}: waiter failed with {other:?}: {out}"),
    }
}

/// A holder process wedged with SIGSTOP (its subscription stays, it
/// answers nothing); SIGKILLed when dropped, even by a failing test.
struct Wedged(Option<Holder>);

impl Wedged {
    fn start(kind: Kind, url: &str, name: &str) -> Self {
        let mut command = worker(kind);
        command.args(["redis-hold", url, name]);
        let holder = Holder::start(command);
        let pid = i32::try_from(holder.pid()).unwrap();
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        Self(Some(holder))
    }
}

impl Drop for Wedged {
    fn drop(&mut self) {
        if let Some(holder) = self.0.take() {
            holder.kill();
        }
    }
}

#[test]
fn a_wedged_holder_is_reaped_for_two_six_and_ten_waiters() {
    let server = RedisServer::start();
    let url = server.url();
    for (n, mixed) in [(2, false), (6, false), (10, false), (6, true)] {
        let name = format!("wedged-{n}-{mixed}");
        let holder = Wedged::start(Kind::Python, &url, &name);
        let started = Instant::now();
        let waiters: Vec<(Kind, Child)> = (0..n)
            .map(|i| {
                let kind = if mixed && i % 2 == 1 {
                    Kind::Python
                } else {
                    Kind::Rust
                };
                (kind, waiter(kind, &url, &name, 40, 20))
            })
            .collect();
        let mut got: Vec<(Kind, u64)> = waiters
            .into_iter()
            .map(|(kind, child)| {
                let what = format!("{n} waiters (mixed: {mixed}), a {kind:?} one");
                (
                    kind,
                    waited(child, &what).unwrap_or_else(|| panic!("{what}: timed out")),
                )
            })
            .collect();
        got.sort_by_key(|(_, ms)| *ms);
        eprintln!(
            "wedged holder, {n} waiters{}: first in after {} ms, last after {} ms, all in {:?}",
            if mixed { " (Rust and Python)" } else { "" },
            got[0].1,
            got[got.len() - 1].1,
            started.elapsed()
        );
        drop(holder);
    }
}

/// The client ids of the connections the Rust waiters opened (redis-rs
/// names its library on each connection), picked by `keep`.
fn rust_clients(server: &RedisServer, keep: impl Fn(&str) -> bool) -> Vec<String> {
    server.clients(|line| line.contains("lib-name=redis-rs") && keep(line))
}

/// Something done to the server.
type Fault = dyn Fn(&mut RedisServer);

#[test]
fn transient_trouble_costs_an_attempt_not_the_wait() {
    let mut server = RedisServer::start();
    let url = server.url();
    let faults: [(&str, &Fault); 7] = [
        ("a 2 s CLIENT PAUSE", &|s| {
            s.cli(&["CLIENT", "PAUSE", "2000"]);
        }),
        ("a 2 s SIGSTOP of the server", &|s| {
            s.freeze();
            std::thread::sleep(Duration::from_secs(2));
            s.thaw();
        }),
        ("CLIENT KILL of every connection of the waiter", &|s| {
            for id in rust_clients(s, |_| true) {
                s.cli(&["CLIENT", "KILL", "ID", &id]);
            }
        }),
        ("CLIENT KILL of its command connection", &|s| {
            for id in rust_clients(s, |l| l.contains(" sub=0 ") && l.contains(" name= ")) {
                s.cli(&["CLIENT", "KILL", "ID", &id]);
            }
        }),
        ("CLIENT KILL of its notice and reply connections", &|s| {
            for id in rust_clients(s, |l| !l.contains(" sub=0 ") && l.contains(" name= ")) {
                s.cli(&["CLIENT", "KILL", "ID", &id]);
            }
        }),
        ("CLIENT KILL of its lock connection", &|s| {
            for id in rust_clients(s, |l| {
                l.contains(" name=portalocker-rs-idle ") || l.contains("-lock-")
            }) {
                s.cli(&["CLIENT", "KILL", "ID", &id]);
            }
        }),
        ("a server restart", &|s| s.restart()),
    ];
    for (i, (fault, inflict)) in faults.iter().enumerate() {
        let name = format!("weather-{i}");
        let holder = Holder::start({
            let mut c = pyworker();
            c.args(["redis-hold", &url, &name]);
            c
        });
        let started = Instant::now();
        let child = waiter(Kind::Rust, &url, &name, 20, 10);
        std::thread::sleep(Duration::from_millis(400));
        inflict(&mut server);
        let inflicted = started.elapsed();
        // The holder lets go (after a restart it already lost the lock).
        drop(holder);
        let got = waited(child, fault).unwrap_or_else(|| panic!("{fault}: the waiter timed out"));
        eprintln!("{fault} at {inflicted:?}: the waiter got the lock after {got} ms");
    }
}

#[test]
fn a_partitioned_holder_learns_of_its_loss_before_a_peer_takes_the_lock() {
    let server = RedisServer::start();
    for (trial, peer) in [
        Kind::Rust,
        Kind::Rust,
        Kind::Rust,
        Kind::Python,
        Kind::Python,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("partition-{trial}");
        let proxy = Proxy::start(server.port());
        let guard = RedisLock::open(&proxy.url(), &name)
            .unwrap()
            .acquire()
            .unwrap();
        let child = waiter(peer, &server.url(), &name, 20, 10);
        std::thread::sleep(Duration::from_millis(300));
        let cut = Instant::now();
        proxy.freeze();
        assert!(
            guard.wait_lost(Duration::from_secs(10)),
            "the holder never learned of the partition"
        );
        let learned = cut.elapsed();
        let reason = guard.ensure_held().unwrap_err();
        let got = waited(child, "the peer").expect("the peer gets the lock");
        // The peer's wait started 300 ms before the cut.
        let granted = Duration::from_millis(got).saturating_sub(Duration::from_millis(300));
        eprintln!(
            "partition, {peer:?} peer: the holder learned after {learned:?} ({reason}); \
             the peer got the lock {granted:?} after the cut"
        );
        assert!(
            learned < granted,
            "the lock was granted before the holder knew"
        );
        drop(guard);
    }
}

#[test]
fn a_short_server_stall_is_no_loss() {
    let server = RedisServer::start();
    let guard = RedisLock::open(&server.url(), "stall")
        .unwrap()
        .acquire()
        .unwrap();
    server.cli(&["CLIENT", "PAUSE", "200"]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(!guard.is_lost(), "{:?}", guard.ensure_held());
    guard.release().unwrap();
}

#[test]
fn a_fenced_grant_draws_its_token_only_while_it_holds() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    proxy.delay(b"INCRBY", Duration::from_millis(400));
    let lock = RedisLock::open(&proxy.url(), "fenced")
        .unwrap()
        .fencing(true);
    let holder_id = lock.holder_id().to_owned();
    let acquiring = std::thread::spawn(move || lock.acquire());
    until_delayed(&proxy, "INCRBY");
    // While its token is on the way, the holder's lock connection is cut:
    // that token is never drawn. The acquisition was never held, so it
    // goes on (a cut costs an attempt, not the wait) and holds with the
    // first token the server drew.
    server.kill_client_named(&format!("fenced-lock-{holder_id}"));
    let guard = acquiring
        .join()
        .unwrap()
        .expect("the acquisition went on after its connection was cut");
    let token = guard.fencing_token().unwrap();
    assert_eq!(
        (
            token,
            server.cli(&["GET", "fenced-fence"]).trim().to_owned()
        ),
        (1, "1".to_owned()),
        "the cut connection drew a token"
    );
    assert!(!guard.is_lost());
    drop(guard);
    // A Python writer after it draws a later token.
    let python = Holder::start({
        let mut c = pyworker();
        c.args(["redis-hold", &server.url(), "fenced", "fencing"]);
        c
    });
    let python_token: u64 = python
        .said
        .strip_prefix("locked ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        python_token > token,
        "Python's {python_token} after our {token}"
    );
    python.release();
}

/// Wait until the proxy has held back a chunk (at most 10 s).
fn until_delayed(proxy: &Proxy, what: &str) {
    let started = Instant::now();
    while proxy.delayed() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {what} went out"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A peer's reaper may kill a contender's connection in the middle of an
/// attempt (portalocker's kills one that joined just after its ping, when
/// the count kept still). A try then answers as a try does, with
/// contention or the lock, never "Redis unavailable": the server is there.
/// First the connection is killed as it leaves after losing the round: the
/// round's verdict (contention) stands. Then it is killed as its grant's
/// token is on the way: one more attempt, at once, gets the lock.
#[test]
fn a_try_whose_connection_a_reaper_kills_answers_as_a_try() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let holder = RedisLock::open(&server.url(), "reaped")
        .unwrap()
        .acquire()
        .unwrap();
    proxy.delay(b"UNSUBSCRIBE", Duration::from_millis(400));
    let lock = RedisLock::open(&proxy.url(), "reaped")
        .unwrap()
        .wait(Wait::NONE);
    let name = format!("reaped-lock-{}", lock.holder_id());
    let trying = std::thread::spawn(move || lock.acquire().map(drop));
    until_delayed(&proxy, "UNSUBSCRIBE");
    server.kill_client_named(&name);
    let err = trying.join().unwrap().unwrap_err();
    assert!(
        matches!(err, Error::WouldBlock { .. }),
        "a try killed as it left: {err}"
    );
    assert!(
        server
            .clients(|line| line.contains(&format!(" name={name}")))
            .is_empty(),
        "the try left its connection behind"
    );
    assert_eq!(
        server.cli(&["PUBSUB", "NUMSUB", "reaped"]).lines().nth(1),
        Some("1"),
        "only the holder is subscribed"
    );
    drop(holder);

    let proxy = Proxy::start(server.port());
    proxy.delay(b"INCRBY", Duration::from_millis(400));
    let lock = RedisLock::open(&proxy.url(), "reaped")
        .unwrap()
        .fencing(true)
        .wait(Wait::NONE);
    let name = format!("reaped-lock-{}", lock.holder_id());
    let trying = std::thread::spawn(move || lock.acquire());
    until_delayed(&proxy, "INCRBY");
    server.kill_client_named(&name);
    let guard = trying
        .join()
        .unwrap()
        .expect("a try killed as it was granted tries once more");
    assert_eq!(guard.fencing_token(), Some(1), "the cut grant drew a token");
    assert!(!guard.is_lost());
}

/// The PID a command wrote to `file`, once it is there.
fn pid_in(file: &std::path::Path) -> i32 {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the command did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn a_killed_portalocker_never_leaves_its_command_without_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start();
    let url = server.url();
    let lock = dir.path().join("f.lock");
    let d = dir.path().to_str().unwrap().to_owned();
    let l = lock.to_str().unwrap().to_owned();
    let cases: [(&str, Vec<&str>); 3] = [
        ("lock", vec!["lock", l.as_str()]),
        (
            "semaphore",
            vec![
                "semaphore",
                "--slots",
                "1",
                "--name",
                "s",
                "--dir",
                d.as_str(),
            ],
        ),
        (
            "redis-lock",
            vec!["redis-lock", "--url", url.as_str(), "cmd"],
        ),
    ];
    for (what, args) in cases {
        let pid_file = dir.path().join(format!("{what}.pid"));
        let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
        let mut portalocker = cli()
            .args(&args)
            .args(["--", "sh", "-c", &script])
            .spawn()
            .unwrap();
        let command = pid_in(&pid_file);
        portalocker.kill().unwrap();
        portalocker.wait().unwrap();
        match what {
            // The command holds the lock through the descriptor it
            // inherited, as with flock(1), until it ends.
            "lock" | "semaphore" => {
                assert!(alive(command), "{what}: the command died");
                let try_it = if what == "lock" {
                    portalocker::Lock::new(&lock).try_acquire().map(drop)
                } else {
                    portalocker::BoundedSemaphore::new(1, "s")
                        .unwrap()
                        .directory(dir.path())
                        .try_acquire()
                        .map(drop)
                };
                assert!(
                    try_it.unwrap_err().is_contention(),
                    "{what}: free while the command runs"
                );
                // SAFETY: kill(2) on the command we started.
                unsafe { libc::kill(command, libc::SIGKILL) };
                let started = Instant::now();
                while alive(command) {
                    assert!(started.elapsed() < Duration::from_secs(10));
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            // Its lock died with portalocker's connection: so does it.
            _ => {
                let started = Instant::now();
                while alive(command) {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "{what}: the command outlived portalocker and its lock"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        eprintln!("{what}: portalocker SIGKILLed; the command kept the lock or ended with it");
    }
    drop(portalocker::Lock::new(&lock).try_acquire().unwrap());
}

/// Two looping holders (`kind`, 200 ms sections) and one Python waiter with
/// a 10 s timeout: how long the waiter waited, if it got in.
fn python_waits_among(kind: Kind, url: &str, name: &str) -> Option<u64> {
    let loops: Vec<Child> = (0..2)
        .map(|_| {
            worker(kind)
                .args(["redis-loop", url, name, "200", "12"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let got = waited(waiter(Kind::Python, url, name, 10, 10), "the Python waiter");
    for mut looping in loops {
        let _ = looping.kill();
        let _ = looping.wait();
    }
    got
}

#[test]
fn python_waiters_get_their_turn_among_rust_contenders() {
    let server = RedisServer::start();
    let url = server.url();
    let mut among_rust = Vec::new();
    for trial in 0..4 {
        let got = python_waits_among(Kind::Rust, &url, &format!("fair-rust-{trial}"));
        among_rust.push(got);
        assert!(
            got.is_some(),
            "trial {trial}: Python starved behind two Rust loops"
        );
    }
    let among_python: Vec<_> = (0..2)
        .map(|trial| python_waits_among(Kind::Python, &url, &format!("fair-py-{trial}")))
        .collect();
    eprintln!(
        "a Python waiter among two looping holders: among Rust ones it waited {among_rust:?} ms, \
         among Python ones {among_python:?} ms"
    );
}

#[test]
fn the_release_notice_channel_is_no_lock_name() {
    let server = RedisServer::start();
    let url = server.url();
    let holder = RedisLock::open(&url, "jobs").unwrap().acquire().unwrap();
    // A Rust waiter listens for release notices of `jobs`.
    let child = waiter(Kind::Rust, &url, "jobs", 20, 10);
    std::thread::sleep(Duration::from_millis(300));
    // The old notice channel's name is an ordinary lock again, free for
    // Python and Rust alike.
    let old = "jobs:portalocker-rs:released";
    let status = pyworker().args(["redis-try", &url, old]).status().unwrap();
    assert!(status.success(), "Python could not take {old}");
    drop(
        RedisLock::open(&url, old)
            .unwrap()
            .wait(Wait::NONE)
            .acquire()
            .unwrap(),
    );
    drop(holder);
    waited(child, "the waiter").expect("the waiter gets jobs");
}
