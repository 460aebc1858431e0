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
use portalocker_wasmtime::{LocksCtx, LocksCtxBuilder};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
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

/// Run the benchmark plugin as users run it, a `portalocker run` process
/// (no fuel metering, the compiled plugin cached in `dir`), composed
/// behind `middleware` (each `--with`, configured by `config`), with
/// `dir` granted as `/data`; what it printed. Its standard error, where
/// the trace middleware writes by default, is a pipe this process drains.
///
/// # Errors
///
/// When the command cannot start or the plugin fails.
pub fn run_cli(
    dir: &Path,
    middleware: &[&str],
    config: &[(&str, &str)],
    args: &[&str],
) -> Result<String> {
    let mut command = std::process::Command::new(crate::setup::portalocker_cli());
    command
        .env("PORTALOCKER_CACHE_DIR", dir.join("cli-cache"))
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/data", dir.display()));
    for layer in middleware {
        command.args(["--with", layer]);
    }
    for (key, value) in config {
        command.arg("--config").arg(format!("{key}={value}"));
    }
    let out = command.arg(BENCH_WORKLOAD).arg("--").args(args).output()?;
    if !out.status.success() {
        bail!(
            "portalocker run failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Run the 0.2.0 scenarios component (`tests/programs/aio`) with `args`
/// and `dir` granted as `/data`, on the concurrent host; what it printed.
///
/// # Errors
///
/// When the plugin fails.
pub fn run_async_plugin(dir: &Path, args: &[&str]) -> Result<String> {
    let (outcome, _) = Run::new(portalocker_tests::components::AIO, args)
        .grant(dir, "/data")
        .concurrent();
    if let Err(e) = &outcome.result {
        bail!("the 0.2.0 plugin failed: {e}\n{}", outcome.stderr);
    }
    Ok(outcome.stdout.trim().to_owned())
}

/// W7 figures, in microseconds per start.
pub struct Start {
    /// `InstancePre::instantiate` alone, pooling allocator.
    pub instantiate: f64,
    /// A fresh store with WASI and lock contexts (built from templates)
    /// plus instantiation, pooling allocator: what an embedder starting
    /// many plugins pays.
    pub start: f64,
    /// `start` on wasmtime's default (on-demand) allocator.
    pub start_on_demand: f64,
    /// `start` plus running one try-lock + release.
    pub start_and_cycle: f64,
}

/// An engine like the tests' (fuel on, no component-model concurrency, as
/// `portalocker run` makes it for 0.1.0 plugins) whose instances come from
/// a pooling allocator: memories and tables are reserved once and reused.
fn pooled_engine() -> Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(16)
        .total_core_instances(256)
        .total_memories(64)
        .total_tables(256);
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .concurrency_support(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// The benchmark plugin, prepared for `engine`.
fn prepared(engine: &Engine) -> Result<CommandPre<State>> {
    let program = program();
    let component = if program.ends_with(".cwasm") {
        // SAFETY: the benchmark's own precompiled plugin (see
        // `precompile_into`), compiled with the same settings.
        unsafe { Component::deserialize_file(engine, program)? }
    } else {
        Component::from_file(engine, program)?
    };
    let mut linker = Linker::<State>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    portalocker_wasmtime::add_to_linker_sync(&mut linker)?;
    Ok(CommandPre::new(linker.instantiate_pre(&component)?)?)
}

/// The per-plugin contexts, made from templates built once: the granted
/// directory is opened once for WASI and once for the locks, not per start.
struct Templates {
    files: WasiFilesystemCtx,
    locks: LocksCtxBuilder,
}

impl Templates {
    fn new(dir: &Path) -> Result<Self> {
        let mut wasi = WasiCtx::builder();
        wasi.preopened_dir(dir, "/data", FsPerms::ReadWrite)?;
        let files = wasi.build().filesystem().clone();
        let locks = LocksCtx::builder().preopened_dir(dir, "/data")?;
        Ok(Self { files, locks })
    }

    fn store(&self, engine: &Engine, args: &[&str]) -> Result<Store<State>> {
        let mut wasi = WasiCtx::builder().args(args).build();
        *wasi.filesystem() = self.files.clone();
        let state = State::new(wasi, self.locks.build(), ResourceTable::new());
        let mut store = Store::new(engine, state);
        store.set_fuel(u64::MAX)?;
        Ok(store)
    }
}

/// Measure W7 over `n` starts.
///
/// # Errors
///
/// When the plugin cannot be linked or fails.
pub fn w7(dir: &Path, n: u32) -> Result<Start> {
    let pooled = pooled_engine()?;
    let pre = prepared(&pooled)?;
    let on_demand = prepared(engine())?;
    let templates = Templates::new(dir)?;
    let args = ["bench", "pairs", "/data/w7.lock", "1"];
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    let starts = |engine: &Engine, pre: &CommandPre<State>| -> Result<(Duration, Duration)> {
        let mut instantiate = Duration::ZERO;
        let started = Instant::now();
        for _ in 0..n {
            let mut store = templates.store(engine, &args)?;
            let t = Instant::now();
            let _ = pre.instantiate(&mut store)?;
            instantiate += t.elapsed();
        }
        Ok((instantiate, started.elapsed()))
    };
    let (_, start_on_demand) = starts(engine(), &on_demand)?;
    let (instantiate, start) = starts(&pooled, &pre)?;
    let started = Instant::now();
    for _ in 0..n {
        let mut store = templates.store(&pooled, &args)?;
        let command = pre.instantiate(&mut store)?;
        if command.wasi_cli_run().call_run(&mut store)?.is_err() {
            bail!("the plugin failed its lock cycle");
        }
    }
    let with_cycle = started.elapsed();
    Ok(Start {
        instantiate: per(instantiate),
        start: per(start),
        start_on_demand: per(start_on_demand),
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
