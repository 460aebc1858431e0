//! The Redis lock beyond one server, on real topologies started here: a
//! Redis Cluster of three masters with a replica each (cluster mode, on
//! sharded pub/sub), and a master and replica behind three sentinels.
//! Exclusion across processes on every shard, and a failover, a killed
//! master and a moved slot each the loss of the locks held there, with
//! nobody granted while the old holder's subscription lives.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{lockworker, run_ok};
use portalocker::Wait;
use portalocker::redis::{LossWatch, RedisLock, RedisLockGuard};
use portalocker_tests::host::Run;
use portalocker_tests::programs::REDIS_LOCK_BASIC;
use portalocker_tests::redis_topology::{RedisCluster, RedisSentinels};
use portalocker_tests::{read_counter, write_counter};

/// One topology at a time: each is six or five servers, and a starved
/// node times out of its cluster.
static TOPOLOGY: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    TOPOLOGY.lock().unwrap_or_else(|p| p.into_inner())
}

/// A lock on its own connections (as another process would have).
fn lock(url: &str, name: &str) -> RedisLock {
    RedisLock::open(url, name).unwrap()
}

/// Lock names whose slots are served by `count` different masters.
fn names_on_distinct_masters(cluster: &RedisCluster, count: usize) -> Vec<String> {
    let mut masters = Vec::new();
    let mut names = Vec::new();
    for i in 0.. {
        let name = format!("jobs-{i}");
        let port = cluster
            .master_of(cluster.slot(&format!("{{{name}}}")))
            .port();
        if !masters.contains(&port) {
            masters.push(port);
            names.push(name);
            if names.len() == count {
                break;
            }
        }
    }
    names
}

#[test]
fn cluster_locks_exclude_across_processes_on_every_shard_and_plain_mode_refuses_a_node() {
    let _one = one_at_a_time();
    let cluster = RedisCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let names = names_on_distinct_masters(&cluster, 3);
    let mut workers = Vec::new();
    for name in &names {
        let data = dir.path().join(name);
        write_counter(&data, 0).unwrap();
        for _ in 0..3 {
            workers.push(
                lockworker()
                    .args(["redis-count", &cluster.url(), name])
                    .arg(&data)
                    .arg("30")
                    .spawn()
                    .unwrap(),
            );
        }
    }
    for mut worker in workers {
        assert!(worker.wait().unwrap().success());
    }
    for name in &names {
        assert_eq!(read_counter(&dir.path().join(name)).unwrap(), 90, "{name}");
    }
    // The command line takes the same locks through one node's plain URL.
    let out = common::cli()
        .args([
            "redis-lock",
            "--cluster",
            "--url",
            &cluster.node_url(),
            "--fencing",
        ])
        .arg(&names[0])
        .args(["--", "sh", "-c", "echo $PORTALOCKER_FENCING_TOKEN"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Keys and channels share the lock's slot: the fencing counter lives
    // beside it, on the master of `{name}`.
    let key = format!("{{{}}}-fence", names[0]);
    let master = cluster.master_of(cluster.slot(&key));
    assert_eq!(
        master.cli(&["GET", &key]).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    );

    // A plugin takes cluster locks through the host (exclusive, shared,
    // fenced, contended: the scenario of a single server), in the
    // namespace the host gives it.
    Run::new(REDIS_LOCK_BASIC, &["jobs"])
        .redis(&cluster.url(), "plugin:")
        .sync()
        .assert_ok();
    let key = "{plugin:jobs}-fence";
    assert_eq!(
        cluster
            .master_of(cluster.slot(key))
            .cli(&["GET", key])
            .trim(),
        "2"
    );

    // Who holds a cluster lock, asked through one node's plain URL.
    let held = lock(&cluster.url(), &names[1]).acquire().unwrap();
    let status = common::cli()
        .args([
            "status",
            "--json",
            "--cluster",
            "--url",
            &cluster.node_url(),
            "--redis",
        ])
        .arg(&names[1])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{report}");
    assert!(report.contains(held.holder_id()), "{report}");
    drop(held);

    // Without cluster mode a cluster node is refused, and names whose
    // hash tag would be empty are refused in it.
    let err = lock(&cluster.node_url(), "jobs").try_acquire().unwrap_err();
    assert!(matches!(err, portalocker::Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("redis+cluster://"), "{err}");
    assert!(matches!(
        RedisLock::open(&cluster.url(), "}jobs"),
        Err(portalocker::Error::InvalidArgument(_))
    ));
    // A standalone server is no cluster.
    let single = portalocker_tests::redis_server::RedisServer::start();
    let url = single.url().replace("redis://", "redis+cluster://");
    let err = lock(&url, "jobs").try_acquire().unwrap_err();
    assert!(
        err.to_string().contains("not a Redis Cluster node"),
        "{err}"
    );
}

/// Who holds the lock now, by their loss watches: a grant while another
/// holder still believes it holds (its loss not yet known) is a double
/// grant.
#[derive(Default)]
struct Believers {
    holding: Mutex<Vec<(usize, LossWatch)>>,
    double: AtomicUsize,
    rounds: AtomicUsize,
}

impl Believers {
    fn enter(&self, who: usize, guard: &RedisLockGuard) {
        let mut holding = self.holding.lock().unwrap();
        if holding.iter().any(|(_, watch)| !watch.is_lost()) {
            self.double.fetch_add(1, Ordering::SeqCst);
        }
        holding.push((who, guard.loss_watch()));
        self.rounds.fetch_add(1, Ordering::SeqCst);
    }

    fn leave(&self, who: usize) {
        self.holding.lock().unwrap().retain(|(w, _)| *w != who);
    }
}

/// Contenders that take and release `name` until `stop`, each on its own
/// connections, checking that nobody else believes it holds.
fn churn(
    url: &str,
    name: &str,
    believers: &Arc<Believers>,
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<()>> {
    (0..3)
        .map(|who| {
            let (lock, believers, stop) = (
                lock(url, name).wait(Wait::up_to(Duration::from_secs(2))),
                Arc::clone(believers),
                Arc::clone(stop),
            );
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok(guard) = lock.acquire() else { continue };
                    believers.enter(who, &guard);
                    thread::sleep(Duration::from_millis(2));
                    believers.leave(who);
                    drop(guard);
                }
            })
        })
        .collect()
}

/// Hold `name`, then let `topology_change` run while a second lock waits:
/// the holder learns of its loss, the waiter is granted only once the
/// holder's subscription is gone, and contenders churning meanwhile never
/// overlap with a holder that believes it holds. Returns the time from
/// the change to the holder learning of its loss.
fn loss_on(url: &str, name: &str, topology_change: impl FnOnce()) -> Duration {
    let holder = lock(url, name).fencing(true).acquire().unwrap();
    let watch = holder.loss_watch();
    let waiter = {
        let (lock, watch) = (lock(url, name).fencing(true), watch.clone());
        thread::spawn(move || {
            let guard = lock.acquire_timeout(Duration::from_secs(60)).unwrap();
            (guard.fencing_token(), watch.is_lost(), Instant::now())
        })
    };
    thread::sleep(Duration::from_millis(200));
    assert!(!waiter.is_finished(), "granted while held");
    let changed = Instant::now();
    topology_change();
    let mut detector = watch.clone();
    let detected = thread::spawn(move || {
        detector.wait();
        Instant::now()
    });
    assert!(
        holder.wait_lost(Duration::from_secs(30)),
        "the holder never learned of its loss"
    );
    let learned = detected.join().unwrap().saturating_duration_since(changed);
    let (token, holder_lost_at_grant, granted) = waiter.join().unwrap();
    assert!(
        holder_lost_at_grant,
        "the waiter was granted {:?} after the change, while the holder believed it held (it learned of its loss {learned:?} after the change)",
        granted.saturating_duration_since(changed)
    );
    assert!(token.is_some());
    assert!(holder.release().is_err(), "the release reports the loss");
    learned
}

#[test]
fn a_cluster_failover_is_the_loss_of_the_locks_held_there() {
    let _one = one_at_a_time();
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let name = "nightly";
    let slot = cluster.slot(&format!("{{{name}}}"));
    let believers = Arc::new(Believers::default());
    let stop = Arc::new(AtomicBool::new(false));
    let churners = churn(&url, "churned", &believers, &stop);
    let churned_slot = cluster.slot("{churned}");
    let mut learned = Vec::new();
    for _ in 0..1 {
        let master = cluster.master_of(slot);
        let replica = cluster.replica_of(master);
        learned.push(loss_on(&url, name, || cluster.failover(replica, slot)));
        // The churned lock's shard fails over too, under its contenders.
        let master = cluster.master_of(churned_slot);
        let replica = cluster.replica_of(master);
        cluster.failover(replica, churned_slot);
        cluster.wait_until_settled();
    }
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for churner in churners {
        churner.join().unwrap();
    }
    let rounds = believers.rounds.load(Ordering::SeqCst);
    assert!(rounds >= 100, "only {rounds} rounds");
    assert_eq!(
        believers.double.load(Ordering::SeqCst),
        0,
        "double grants in {rounds} rounds"
    );
    eprintln!("figure: cluster failover to loss learned: {learned:?} ({rounds} churn rounds)");
}

#[test]
fn killing_a_clusters_master_is_the_loss_of_its_locks() {
    let _one = one_at_a_time();
    let mut cluster = RedisCluster::start();
    let url = cluster.url();
    let slot = cluster.slot("{killed}");
    let master = cluster.master_of(slot).port();
    let replica = cluster.replica_of(cluster.node(master)).port();
    let cluster = Mutex::new(&mut cluster);
    let learned = loss_on(&url, "killed", || cluster.lock().unwrap().kill(master));
    cluster.lock().unwrap().wait_for_master(slot, replica);
    eprintln!("figure: cluster master killed to loss learned: {learned:?}");
}

#[test]
fn moving_a_held_locks_slot_is_its_loss() {
    let _one = one_at_a_time();
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let slot = cluster.slot("{moved}");
    let from = cluster.master_of(slot).port();
    let to = cluster
        .nodes()
        .iter()
        .find(|n| n.port() != from && n.cli(&["ROLE"]).starts_with("master"))
        .unwrap();
    let learned = loss_on(&url, "moved", || cluster.migrate(slot, to));
    // The lock lives on the new master now, its fencing counter with it.
    let guard = lock(&url, "moved").fencing(true).acquire().unwrap();
    assert_eq!(cluster.master_of(slot).port(), to.port());
    assert!(guard.fencing_token().unwrap() >= 3);
    eprintln!("figure: slot moved to loss learned: {learned:?}");
}

#[test]
fn sentinel_locks_exclude_and_a_failover_is_their_loss() {
    let _one = one_at_a_time();
    let group = RedisSentinels::start();
    let url = group.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("count");
    write_counter(&data, 0).unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            lockworker()
                .args(["redis-count", &url, "sentinel-count"])
                .arg(&data)
                .arg("30")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut worker in workers {
        assert!(worker.wait().unwrap().success());
    }
    assert_eq!(read_counter(&data).unwrap(), 90);
    let mut learned = Vec::new();
    for _ in 0..1 {
        let old = group.master_port();
        learned.push(loss_on(&url, "sentinel-held", || {
            group.failover();
        }));
        assert_ne!(group.master_port(), old);
        group.wait_until_replicated();
    }
    // The command line follows the master too.
    run_ok(common::cli().args(["redis-lock", "--url", &url, "sentinel-held", "--", "true"]));
    eprintln!("figure: sentinel failover to loss learned: {learned:?}");
}
