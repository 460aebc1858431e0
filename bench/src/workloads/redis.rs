//! Redis locks: W5 (uncontended acquire + release on loopback, with the
//! commands the server ran per cycle) and W6 (processes incrementing a
//! counter under the lock).

use std::time::Instant;

use anyhow::{Context, Result};
use portalocker::redis::RedisLock;
use portalocker_tests::read_counter;

use super::Bench;
use crate::procs::run_group_with;
use crate::report::Better;

/// The number of commands the server has run (`INFO commandstats`), not
/// counting `INFO` itself.
fn commands_run(url: &str) -> Result<f64> {
    let mut conn = redis::Client::open(url)?.get_connection()?;
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut conn)?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| {
            l.split_once("calls=")
                .and_then(|(_, rest)| rest.split(',').next())
                .and_then(|calls| calls.parse::<f64>().ok())
        })
        .sum())
}

/// W5: uncontended acquire + release, with raw `PING` and `SET NX` + `DEL`
/// on one connection as the limit.
pub fn w5(b: &mut Bench<'_>) -> Result<()> {
    let url = b.url();
    let n = b.options.scale(2_000, 300);
    let n_redispy = b.options.scale(2_000, 300);
    let n_portalocker = b.options.scale(5, 2);
    let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
    for _ in 0..b.options.runs {
        let started = Instant::now();
        for _ in 0..n {
            let _: String = redis::cmd("PING").query(&mut conn)?;
        }
        let ping = started.elapsed().as_secs_f64() * 1e6 / n as f64;
        b.report.add(
            "W5",
            "raw-redis",
            "PING",
            "µs",
            Better::Lower,
            ping,
            true,
            "one round trip, sync connection",
        );

        let started = Instant::now();
        for _ in 0..n {
            let set: Option<String> = redis::cmd("SET")
                .arg("w5-raw")
                .arg("1")
                .arg("NX")
                .arg("PX")
                .arg(30_000)
                .query(&mut conn)?;
            set.context("SET NX found the key set")?;
            let _: i64 = redis::cmd("DEL").arg("w5-raw").query(&mut conn)?;
        }
        let raw = started.elapsed().as_secs_f64() * 1e6 / n as f64;
        let add_cycle =
            |b: &mut Bench<'_>, implementation: &str, micros: f64, commands: f64, note: &str| {
                b.report.add(
                    "W5",
                    implementation,
                    "cycle",
                    "µs",
                    Better::Lower,
                    micros,
                    true,
                    note,
                );
                b.report.add(
                    "W5",
                    implementation,
                    "cycle in PINGs",
                    "x",
                    Better::Lower,
                    micros / ping,
                    true,
                    note,
                );
                b.report.add(
                    "W5",
                    implementation,
                    "server commands per cycle",
                    "",
                    Better::Lower,
                    commands,
                    true,
                    note,
                );
            };
        add_cycle(b, "raw-redis", raw, 2.0, "SET NX PX + DEL");

        let name = b.name("w5");
        let lock = RedisLock::open(&url, &name)?;
        drop(lock.acquire()?); // connect outside the timed loop
        let before = commands_run(&url)?;
        let started = Instant::now();
        for _ in 0..n {
            lock.acquire()?.release()?;
        }
        let ours = started.elapsed().as_secs_f64() * 1e6 / n as f64;
        let commands = (commands_run(&url)? - before) / n as f64;
        add_cycle(
            b,
            "ours-native",
            ours,
            commands,
            "RedisLock::acquire + release",
        );

        let name = b.name("w5p");
        let before = commands_run(&url)?;
        let out = crate::plugin::run(
            b.dir.path(),
            Some(&url),
            &["redis-cycles", &name, &n.to_string()],
        )?;
        let commands = (commands_run(&url)? - before) / n as f64;
        add_cycle(
            b,
            "ours-plugin",
            out.parse::<f64>()? / 1e3,
            commands,
            "RedisLock::lock + release in a plugin, timed in the guest",
        );

        for (implementation, peer, k, note) in [
            (
                "redis-py",
                "redispy",
                n_redispy,
                "redis-py Lock (SET NX + Lua release)",
            ),
            (
                "portalocker-4.4.2",
                "portalocker",
                n_portalocker,
                "portalocker RedisLock",
            ),
        ] {
            let name = b.name("w5py");
            let mut before = 0.0;
            let done = run_group_with(
                vec![b.python(&["redis-cycles", peer, &url, &name, &k.to_string()])],
                &mut || {
                    before = commands_run(&url)?;
                    Ok(())
                },
            )?;
            let commands = (commands_run(&url)? - before) / k as f64;
            let micros = done.workers[0].result[0].parse::<f64>()? / 1e3;
            add_cycle(b, implementation, micros, commands, note);
        }
    }
    Ok(())
}

/// W5 on a Redis Cluster (3 masters, a replica each, started here): the
/// uncontended cycle in cluster mode (sharded pub/sub, the replica's
/// count asked too) against the same cycle on a single node of the run.
pub fn w5_cluster(b: &mut Bench<'_>) -> Result<()> {
    let cluster = portalocker_tests::redis_topology::RedisCluster::start();
    let n = b.options.scale(2_000, 300);
    let single_url = b.url();
    let single = RedisLock::open(&single_url, &b.name("w5c-single"))?;
    let clustered = RedisLock::open(&cluster.url(), &b.name("w5c"))?;
    drop(single.acquire()?);
    drop(clustered.acquire()?);
    for _ in 0..b.options.runs {
        let cycle = |lock: &RedisLock| -> Result<f64> {
            let started = Instant::now();
            for _ in 0..n {
                lock.acquire()?.release()?;
            }
            Ok(started.elapsed().as_secs_f64() * 1e6 / n as f64)
        };
        let on_single = cycle(&single)?;
        let on_cluster = cycle(&clustered)?;
        b.report.add(
            "W5",
            "ours-cluster",
            "cycle",
            "µs",
            Better::Lower,
            on_cluster,
            true,
            "RedisLock::acquire + release on a 3x2 Redis Cluster",
        );
        b.report.add(
            "W5",
            "ours-cluster",
            "cycle against one node",
            "x",
            Better::Lower,
            on_cluster / on_single,
            true,
            "the same cycle on a standalone server in the same run",
        );
    }
    Ok(())
}

/// W6: 2 processes x K increments of a counter under the Redis lock; the
/// count must be exact. Target: at least redis-py's rate in every run.
pub fn w6(b: &mut Bench<'_>) -> Result<()> {
    let url = b.url();
    let fast = b.options.scale(300, 50);
    let py_portalocker = b.options.scale(10, 4);
    for run in 0..b.options.runs {
        let mut rates = Vec::new();
        for (implementation, k, note) in [
            ("ours-native", fast, "RedisLock, Wait::FOREVER"),
            (
                "ours-plugin",
                fast,
                "RedisLock::lock in a plugin per process",
            ),
            ("redis-py", fast, "redis-py Lock, polling every 1 ms"),
            ("portalocker-4.4.2", py_portalocker, "portalocker RedisLock"),
        ] {
            let name = b.name("w6");
            let data = b.path("w6.txt");
            let (d, gd, ks) = (
                data.to_string_lossy().into_owned(),
                Bench::guest(&data),
                k.to_string(),
            );
            let commands = (0..2)
                .map(|_| match implementation {
                    "ours-native" => b.native(&["redis-count", &url, &name, &d, &ks]),
                    "ours-plugin" => b.plugin(true, &["redis-count", &name, &gd, &ks]),
                    "redis-py" => b.python(&["redis-count", "redispy", &url, &name, &d, &ks]),
                    _ => b.python(&["redis-count", "portalocker", &url, &name, &d, &ks]),
                })
                .collect();
            let done = b.group(commands)?;
            let count = read_counter(&data)?;
            let correct = count == 2 * k;
            let rate = count as f64 / done.span_secs();
            rates.push((implementation, rate));
            b.report.add(
                "W6",
                implementation,
                "ops, 2 processes",
                "ops/s",
                Better::Higher,
                rate,
                correct,
                note,
            );
        }
        eprintln!("W6 run {run}: {rates:?}");
    }
    Ok(())
}
