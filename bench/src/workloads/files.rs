//! File locks: W1 (lock and unlock of an open file), W2 (open, lock, unlock
//! and close by path), W3 (processes incrementing a counter under the lock)
//! and W3b (handoff latency between two processes).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Instant;

use anyhow::{Result, bail};
use portalocker::{Lock, LockFlags};
use portalocker_tests::components::{LOCKDEP, NAMESPACE, TRACE};
use portalocker_tests::read_counter;

use super::Bench;
use crate::report::Better;

/// W1: uncontended exclusive lock + unlock of an already-open file.
pub fn w1(b: &mut Bench<'_>) -> Result<()> {
    let n = b.options.scale(200_000, 20_000);
    let n_py = b.options.scale(20_000, 2_000);
    let path = b.path("w1");
    let file = File::create(&path)?;
    let guest = Bench::guest(&path);
    let note = "ns per pair, same file";
    for _ in 0..b.options.runs {
        let fd = file.as_raw_fd();
        let started = Instant::now();
        for _ in 0..n {
            // SAFETY: a valid descriptor.
            let ok = unsafe {
                libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0
                    && libc::flock(fd, libc::LOCK_UN) == 0
            };
            if !ok {
                bail!("raw flock failed: {}", std::io::Error::last_os_error());
            }
        }
        let raw = started.elapsed().as_nanos() as f64 / n as f64;
        b.report.add(
            "W1",
            "raw-flock",
            "pair",
            "ns",
            Better::Lower,
            raw,
            true,
            note,
        );

        let flags = LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING;
        let started = Instant::now();
        for _ in 0..n {
            portalocker::lock(&file, flags)?;
            portalocker::unlock(&file)?;
        }
        let ours = started.elapsed().as_nanos() as f64 / n as f64;
        b.report.add(
            "W1",
            "ours-native",
            "pair",
            "ns",
            Better::Lower,
            ours,
            true,
            note,
        );

        let out = crate::plugin::run(b.dir.path(), None, &["pairs", &guest, &n.to_string()])?;
        let plugin: f64 = out.parse()?;
        b.report.add(
            "W1",
            "ours-plugin",
            "pair",
            "ns",
            Better::Lower,
            plugin,
            true,
            "ns per try-lock + release of one file-lock handle, timed in the guest",
        );

        for (how, implementation, what) in [
            ("try", "ours-plugin-0.2", "try-lock"),
            ("await", "ours-plugin-0.2-await", "awaited lock"),
        ] {
            let out = crate::plugin::run_async_plugin(
                b.dir.path(),
                &["pairs", &guest, &n.to_string(), how],
            )?;
            b.report.add(
                "W1",
                implementation,
                "pair",
                "ns",
                Better::Lower,
                out.parse()?,
                true,
                &format!(
                    "ns per {what} + release of one file-lock handle, a portalocker:locks@0.2.0 \
                     plugin (async component, concurrent host), timed in the guest"
                ),
            );
        }

        // The same plugin through `portalocker run`, as users run it (no
        // fuel metering), alone and behind each middleware
        // (`guest/middleware`, composed on the fly with `--with`): a pair
        // is two calls through a middleware, so its cost per call is half
        // the difference from the plugin alone.
        let trace_file = ("trace.file", "/data/w1-trace.jsonl");
        for (name, mode, layers, config, n) in [
            ("ours-plugin-run", "pairs", vec![], vec![], n),
            (
                "ours-plugin-run+namespace",
                "pairs",
                vec![NAMESPACE],
                vec![("namespace.directory", "/data")],
                n,
            ),
            ("ours-plugin-run+lockdep", "pairs", vec![LOCKDEP], vec![], n),
            // Two lines a pair: n / 10 pairs keep the stderr pipe's
            // lines and the file's to a few MB.
            (
                "ours-plugin-run+trace",
                "pairs",
                vec![TRACE],
                vec![],
                n / 10,
            ),
            (
                "ours-plugin-run+trace-file",
                "pairs",
                vec![TRACE],
                vec![trace_file],
                n / 10,
            ),
            // The floor under trace: the plugin writing as many lines
            // itself.
            (
                "ours-plugin-run-logged",
                "pairs-logged",
                vec![],
                vec![],
                n / 10,
            ),
        ] {
            let args = [mode, &guest, &n.to_string()];
            let out = crate::plugin::run_cli(b.dir.path(), &layers, &config, &args)?;
            b.report.add(
                "W1",
                name,
                "pair",
                "ns",
                Better::Lower,
                out.parse()?,
                true,
                match name {
                    "ours-plugin-run" => {
                        "as ours-plugin, in a `portalocker run` process (no fuel metering)"
                    }
                    "ours-plugin-run+trace" => {
                        "as ours-plugin-run, behind the trace middleware (--with), lines to \
                         standard error, a pipe"
                    }
                    "ours-plugin-run-logged" => {
                        "as ours-plugin-run, the plugin writing a line of a trace line's size \
                         to standard error (a pipe) after each call: what a log line costs, \
                         middleware or not"
                    }
                    "ours-plugin-run+trace-file" => {
                        "as ours-plugin-run, behind the trace middleware (--with), lines \
                         appended to a file"
                    }
                    _ => "as ours-plugin-run, behind that middleware (--with)",
                },
            );
        }

        let done = b.group(vec![b.python(&[
            "pairs",
            &path.to_string_lossy(),
            &n_py.to_string(),
        ])])?;
        let py: f64 = done.workers[0].result[0].parse()?;
        b.report.add(
            "W1",
            "portalocker-4.4.2",
            "pair",
            "ns",
            Better::Lower,
            py,
            true,
            "portalocker.lock/unlock",
        );
    }
    Ok(())
}

/// W2: open + lock + unlock + close by path (a lock used as a context).
pub fn w2(b: &mut Bench<'_>) -> Result<()> {
    let n = b.options.scale(50_000, 5_000);
    let n_py = b.options.scale(5_000, 500);
    let path = b.path("w2");
    let guest = Bench::guest(&path);
    let p = path.to_string_lossy().into_owned();
    for _ in 0..b.options.runs {
        let started = Instant::now();
        for _ in 0..n {
            let file = crate::worker::open(&p)?;
            crate::worker::flock(&file, libc::LOCK_EX | libc::LOCK_NB)?;
            crate::worker::flock(&file, libc::LOCK_UN)?;
        }
        let raw = started.elapsed().as_nanos() as f64 / n as f64;
        b.report.add(
            "W2",
            "raw-flock",
            "cycle",
            "ns",
            Better::Lower,
            raw,
            true,
            "open, flock, unlock, close",
        );

        let started = Instant::now();
        for _ in 0..n {
            Lock::new(&path).try_acquire()?.release()?;
        }
        let ours = started.elapsed().as_nanos() as f64 / n as f64;
        b.report.add(
            "W2",
            "ours-native",
            "cycle",
            "ns",
            Better::Lower,
            ours,
            true,
            "Lock::new(path).try_acquire()",
        );

        let out = crate::plugin::run(b.dir.path(), None, &["open-cycles", &guest, &n.to_string()])?;
        b.report.add(
            "W2",
            "ours-plugin",
            "cycle",
            "ns",
            Better::Lower,
            out.parse()?,
            true,
            "FileLock::open + try_lock + release, timed in the guest",
        );

        for (implementation, peer) in [
            ("portalocker-4.4.2", "portalocker"),
            ("filelock", "filelock"),
        ] {
            let done = b.group(vec![b.python(&[
                "open-cycles",
                peer,
                &p,
                &n_py.to_string(),
            ])])?;
            let py: f64 = done.workers[0].result[0].parse()?;
            b.report.add(
                "W2",
                implementation,
                "cycle",
                "ns",
                Better::Lower,
                py,
                true,
                "with Lock(path) / with FileLock(path)",
            );
        }
    }
    Ok(())
}

/// W3: P processes x K increments of a counter file, each under the
/// exclusive lock; the count must be exact.
pub fn w3(b: &mut Bench<'_>) -> Result<()> {
    for processes in [2u64, 8] {
        let metric: &'static str = if processes == 2 {
            "ops, 2 processes"
        } else {
            "ops, 8 processes"
        };
        let fast = b
            .options
            .scale(if processes == 2 { 5_000 } else { 1_000 }, 200);
        let py_1ms = b
            .options
            .scale(if processes == 2 { 1_000 } else { 150 }, 50);
        let py_default = b.options.scale(if processes == 2 { 200 } else { 40 }, 20);
        for _ in 0..b.options.runs {
            let impls: [(&str, u64, &str); 5] = [
                ("raw-flock", fast, "blocking flock on a kept descriptor"),
                ("ours-native", fast, "Lock, Wait::FOREVER"),
                (
                    "ours-plugin",
                    fast,
                    "FileLock::lock in a plugin per process",
                ),
                (
                    "portalocker-4.4.2",
                    py_default,
                    "Lock, default 0.25 s check interval",
                ),
                ("portalocker-4.4.2-1ms", py_1ms, "Lock, 1 ms check interval"),
            ];
            for (implementation, k, note) in impls {
                let lock = b.path("w3.lock");
                let data = b.path("w3.txt");
                let (l, d, ks) = (
                    lock.to_string_lossy().into_owned(),
                    data.to_string_lossy().into_owned(),
                    k.to_string(),
                );
                let (gl, gd) = (Bench::guest(&lock), Bench::guest(&data));
                let commands = (0..processes)
                    .map(|_| match implementation {
                        "raw-flock" => b.native(&["raw-count", &l, &d, &ks]),
                        "ours-native" => b.native(&["count", &l, &d, &ks]),
                        "ours-plugin" => b.plugin(false, &["count", &gl, &gd, &ks]),
                        "portalocker-4.4.2" => b.python(&["count", &l, &d, &ks, "0.25"]),
                        _ => b.python(&["count", &l, &d, &ks, "0.001"]),
                    })
                    .collect();
                let done = b.group(commands)?;
                let count = read_counter(&data)?;
                let correct = count == processes * k;
                if !correct {
                    eprintln!(
                        "W3 {implementation}: count {count}, expected {}",
                        processes * k
                    );
                }
                let rate = count as f64 / done.span_secs();
                b.report.add(
                    "W3",
                    implementation,
                    metric,
                    "ops/s",
                    Better::Higher,
                    rate,
                    correct,
                    note,
                );
            }
        }
    }
    Ok(())
}

/// W3b: handoff latency between two strictly alternating processes.
pub fn w3b(b: &mut Bench<'_>) -> Result<()> {
    let rounds = b.options.scale(2_000, 300);
    let impls: [(&str, u64, &str); 6] = [
        ("raw-flock", rounds, "blocking flock"),
        ("ours-native", rounds, "portalocker::lock, blocking"),
        ("ours-native-timed", rounds, "lock_timeout (a timed wait)"),
        (
            "ours-plugin",
            rounds,
            "FileLock::lock in a plugin per process (wall-clock stamps); a guest cannot \
             yield (WASI 0.2 has no sched_yield), so the instance whose turn it is not \
             re-locks at once and delays the woken one (ours-native without its \
             sched_yield measured 55 us p50)",
        ),
        (
            "portalocker-4.4.2-1ms",
            b.options.scale(300, 50),
            "Lock, 1 ms check interval",
        ),
        (
            "portalocker-4.4.2",
            b.options.scale(8, 4),
            "Lock, default 0.25 s check interval",
        ),
    ];
    for _ in 0..b.options.runs {
        for (implementation, rounds, note) in impls {
            let lock = b.path("w3b.lock");
            let stamps = b.path("w3b.stamps");
            std::fs::write(&stamps, [0u8; 16])?;
            let (l, s, r) = (
                lock.to_string_lossy().into_owned(),
                stamps.to_string_lossy().into_owned(),
                rounds.to_string(),
            );
            let hold = "300";
            let commands = ["0", "1"]
                .iter()
                .map(|me| match implementation {
                    "raw-flock" => b.native(&["handoff", "raw", &l, &s, &r, me, hold]),
                    "ours-native" => b.native(&["handoff", "ours", &l, &s, &r, me, hold]),
                    "ours-native-timed" => {
                        b.native(&["handoff", "ours-timed", &l, &s, &r, me, hold])
                    }
                    "ours-plugin" => b.plugin(
                        false,
                        &[
                            "handoff",
                            &Bench::guest(&lock),
                            &Bench::guest(&stamps),
                            &r,
                            me,
                            hold,
                        ],
                    ),
                    "portalocker-4.4.2-1ms" => {
                        b.python(&["handoff", &l, &s, &r, me, "0.001", hold])
                    }
                    _ => b.python(&["handoff", &l, &s, &r, me, "0.25", hold]),
                })
                .collect();
            let done = b.group(commands)?;
            let result = &done.workers[0].result;
            let figures: Vec<f64> = result.iter().filter_map(|v| v.parse().ok()).collect();
            let correct = figures.len() == 3 && figures[0] > 0.0;
            for (i, metric) in ["handoff p50", "handoff p90", "handoff max"]
                .into_iter()
                .enumerate()
            {
                let value = figures.get(i).copied().unwrap_or(0.0) / 1e3;
                b.report.add(
                    "W3b",
                    implementation,
                    metric,
                    "µs",
                    Better::Lower,
                    value,
                    correct,
                    note,
                );
            }
        }
    }
    Ok(())
}
