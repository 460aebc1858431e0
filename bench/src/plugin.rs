//! The plugin side: the benchmark plugin (`tests/programs/src/bin/
//! bench_workload.rs`) under the host, W7 (plugin start) and W8 (many
//! plugin instances waiting in one async host).

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use portalocker::{Lock, Wait};
use portalocker_tests::host::{Run, State, component, engine, precompile};
use portalocker_tests::programs::BENCH_WORKLOAD;
use portalocker_wasmtime::LocksCtx;
use wasmtime::Store;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{FsPerms, WasiCtx};

/// The environment variable naming the precompiled plugin for workers.
pub const CWASM_VAR: &str = "PORTALOCKER_BENCH_CWASM";

/// The plugin to run: the precompiled one when the orchestrator made it,
/// else the component.
pub fn program() -> &'static str {
    static PROGRAM: OnceLock<String> = OnceLock::new();
    PROGRAM.get_or_init(|| std::env::var(CWASM_VAR).unwrap_or_else(|_| BENCH_WORKLOAD.to_owned()))
}

/// Compile the plugin now (not inside a timed section).
pub fn warm() {
    let _ = component(program());
}

/// Precompile the plugin into `dir` for the workers; returns its path.
///
/// # Errors
///
/// When compiling or writing fails.
pub fn precompile_into(dir: &Path) -> Result<String> {
    let cwasm = dir.join("bench_workload.cwasm");
    precompile(BENCH_WORKLOAD, &cwasm)?;
    Ok(cwasm.to_string_lossy().into_owned())
}

/// Run the plugin in this process with `dir` granted as `/data` (and Redis
/// when given); returns what it printed.
///
/// # Errors
///
/// When the plugin fails.
pub fn run(dir: &Path, redis: Option<&str>, args: &[&str]) -> Result<String> {
    let mut run = Run::new(program(), args).grant(dir, "/data");
    if let Some(url) = redis {
        run = run.redis(url, "");
    }
    let outcome = run.sync();
    if let Err(e) = &outcome.result {
        bail!("the plugin failed: {e}\n{}", outcome.stderr);
    }
    Ok(outcome.stdout.trim().to_owned())
}

/// W7 figures, in microseconds per start: wasmtime's own instantiation of
/// the prepared component, a fresh store with WASI and lock contexts plus
/// instantiation (`start`), and that plus one lock cycle.
pub struct Start {
    /// `InstancePre::instantiate` alone.
    pub instantiate: f64,
    /// Store, WASI and lock contexts, and instantiation.
    pub start: f64,
    /// `start` plus running one try-lock + release.
    pub start_and_cycle: f64,
}

/// Measure W7 over `n` starts.
///
/// # Errors
///
/// When the plugin cannot be linked or fails.
pub fn w7(dir: &Path, n: u32) -> Result<Start> {
    let mut linker = Linker::<State>::new(engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    portalocker_wasmtime::add_to_linker_sync(&mut linker)?;
    let pre = CommandPre::new(linker.instantiate_pre(&component(program()))?)?;
    let args = ["bench", "pairs", "/data/w7.lock", "1"];
    let store = || -> Result<Store<State>> {
        let wasi = WasiCtx::builder()
            .args(&args)
            .preopened_dir(dir, "/data", FsPerms::ReadWrite)?
            .build();
        let locks = LocksCtx::builder().preopened_dir(dir, "/data")?.build();
        let mut store = Store::new(engine(), State::new(wasi, locks, ResourceTable::new()));
        store.set_fuel(u64::MAX)?;
        Ok(store)
    };
    let mut instantiate = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..n {
        let mut store = store()?;
        let t = Instant::now();
        let _ = pre.instantiate(&mut store)?;
        instantiate += t.elapsed();
    }
    let start = started.elapsed();
    let started = Instant::now();
    for _ in 0..n {
        let mut store = store()?;
        let command = pre.instantiate(&mut store)?;
        if command.wasi_cli_run().call_run(&mut store)?.is_err() {
            bail!("the plugin failed its lock cycle");
        }
    }
    let with_cycle = started.elapsed();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    Ok(Start {
        instantiate: per(instantiate),
        start: per(start),
        start_and_cycle: per(with_cycle),
    })
}

/// What W8 measured in one process.
pub struct Waiters {
    /// Threads the process gained while the waiters waited.
    pub threads: f64,
    /// Resident memory gained per waiter, in KiB.
    pub rss_kib_per_waiter: f64,
    /// Acquisitions per second once the lock is released: each waiter takes
    /// it and lets it go in turn.
    pub handoffs_per_sec: f64,
}

fn status_field(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// W8: `n` waiters blocked on one lock that this process holds, then
/// released to take it one after another. `kind` is `plugin` (plugin
/// instances in one async host), `tasks` (our `acquire_async` on tokio
/// tasks) or `threads` (a thread per waiter, each in a blocking `flock`).
///
/// # Errors
///
/// When a waiter fails, or not every waiter got the lock.
pub fn w8(kind: &str, dir: &Path, n: usize) -> Result<Waiters> {
    let path = dir.join("w8.lock");
    let holder = Lock::new(&path).try_acquire()?;
    warm();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Let the runtime's threads start before the baseline.
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    let (threads0, rss0) = (status_field("Threads:"), status_field("VmRSS:"));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..n {
        let done = std::sync::Arc::clone(&done);
        match kind {
            "plugin" => {
                let run = Run::new(program(), &["hold-once", "/data/w8.lock"]).grant(dir, "/data");
                tasks.push(runtime.spawn(async move {
                    let outcome = run.run_async().await;
                    if outcome.result.is_ok() && outcome.stdout == "ok\n" {
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }));
            }
            "tasks" => {
                let lock = Lock::new(&path).wait(Wait::FOREVER);
                tasks.push(runtime.spawn(async move {
                    if lock.acquire_async().await.is_ok() {
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }));
            }
            "threads" => {
                let path = path.clone();
                threads.push(std::thread::Builder::new().stack_size(64 * 1024).spawn(
                    move || {
                        let Ok(file) = crate::worker::open(&path.to_string_lossy()) else {
                            return;
                        };
                        if crate::worker::flock(&file, libc::LOCK_EX).is_ok()
                            && crate::worker::flock(&file, libc::LOCK_UN).is_ok()
                        {
                            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    },
                )?);
            }
            other => bail!("unknown W8 kind {other:?}"),
        }
    }
    // Let every waiter reach its wait.
    std::thread::sleep(Duration::from_millis(if kind == "plugin" {
        3000
    } else {
        1000
    }));
    let (threads1, rss1) = (status_field("Threads:"), status_field("VmRSS:"));
    let released = Instant::now();
    holder.release()?;
    for task in tasks {
        runtime.block_on(task)?;
    }
    for thread in threads {
        let _ = thread.join();
    }
    let elapsed = released.elapsed();
    let got = done.load(std::sync::atomic::Ordering::SeqCst);
    if got != n {
        bail!("{got} of {n} waiters got the lock");
    }
    Ok(Waiters {
        threads: threads1 - threads0,
        rss_kib_per_waiter: (rss1 - rss0) / n as f64,
        handoffs_per_sec: n as f64 / elapsed.as_secs_f64(),
    })
}
