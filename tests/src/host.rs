//! Running guest programs under the host, sync or async, with the grants
//! and limits a test chooses, capturing what they print.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use portalocker_wasmtime::{Limits, LocksCtx, LocksCtxView, LocksView, Usage};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// The store data of a test instance.
pub struct State {
    wasi: WasiCtx,
    locks: LocksCtx,
    table: ResourceTable,
    memory: StoreLimits,
}

impl State {
    /// Store data from its parts.
    pub fn new(wasi: WasiCtx, locks: LocksCtx, table: ResourceTable) -> Self {
        Self {
            wasi,
            locks,
            table,
            memory: StoreLimits::default(),
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl LocksView for State {
    fn locks(&mut self) -> LocksCtxView<'_> {
        LocksCtxView {
            ctx: &mut self.locks,
            table: &mut self.table,
        }
    }
}

/// The shared engine: fuel on, so a runaway guest can be stopped.
/// Without the component model's concurrency, as `portalocker run` makes
/// it for 0.1.0 plugins (concurrency makes their host calls dearer).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.consume_fuel(true).concurrency_support(false);
        Engine::new(&config).expect("engine")
    })
}

/// The engine for 0.2.0 plugins: fuel on, and the component model's
/// concurrency.
pub fn concurrent_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.consume_fuel(true).concurrency_support(true);
        Engine::new(&config).expect("engine")
    })
}

/// A compiled guest program, cached by path: a `.wasm` component is
/// compiled, a `.cwasm` written by [`precompile`] is loaded.
pub fn component(path: &str) -> Component {
    static CACHE: OnceLock<Mutex<HashMap<String, Component>>> = OnceLock::new();
    compiled(engine(), CACHE.get_or_init(Default::default), path)
}

/// A compiled 0.2.0 guest, for [`concurrent_engine`].
pub fn concurrent_component(path: &str) -> Component {
    static CACHE: OnceLock<Mutex<HashMap<String, Component>>> = OnceLock::new();
    compiled(
        concurrent_engine(),
        CACHE.get_or_init(Default::default),
        path,
    )
}

/// `path` compiled for `engine`, through `cache`.
fn compiled(engine: &Engine, cache: &Mutex<HashMap<String, Component>>, path: &str) -> Component {
    if let Some(component) = cache.lock().unwrap().get(path) {
        return component.clone();
    }
    let component = if path.ends_with(".cwasm") {
        // SAFETY: a `.cwasm` here is one the benchmark precompiled with this
        // engine's configuration (see `precompile`), never foreign input.
        unsafe { Component::deserialize_file(engine, path) }
    } else {
        Component::from_file(engine, path)
    }
    .unwrap_or_else(|e| panic!("compiling {path}: {e:?}"));
    cache
        .lock()
        .unwrap()
        .insert(path.to_owned(), component.clone());
    component
}

/// Compile the component at `wasm` for [`engine`] and write it to `cwasm`,
/// so that other processes load it without compiling.
///
/// # Errors
///
/// When the component does not compile or the file cannot be written.
pub fn precompile(wasm: &str, cwasm: &Path) -> wasmtime::Result<()> {
    let bytes = engine().precompile_component(&std::fs::read(wasm)?)?;
    std::fs::write(cwasm, bytes)?;
    Ok(())
}

/// How to run a guest program.
#[derive(Debug, Clone)]
pub struct Run {
    program: String,
    args: Vec<String>,
    grants: Vec<(PathBuf, String)>,
    limits: Limits,
    fuel: u64,
    redis: Option<(String, String)>,
    max_memory: Option<usize>,
}

/// What a run ended with.
#[derive(Debug)]
pub struct Outcome {
    /// `Ok(())` for exit status 0; the trap or exit otherwise.
    pub result: Result<(), String>,
    /// What the guest printed on stdout.
    pub stdout: String,
    /// What the guest printed on stderr.
    pub stderr: String,
}

impl Outcome {
    /// Panic with the guest's output unless it succeeded.
    pub fn assert_ok(&self) {
        assert!(
            self.result.is_ok(),
            "guest failed: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.result,
            self.stdout,
            self.stderr
        );
    }
}

impl Run {
    /// Run `program` (a path from [`crate::programs`]) with `args`.
    pub fn new(program: &str, args: &[&str]) -> Self {
        Self {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            grants: Vec::new(),
            limits: Limits::default(),
            fuel: u64::MAX,
            redis: None,
            max_memory: None,
        }
    }

    /// Grant `host` as `guest` to WASI and to the locks.
    pub fn grant(mut self, host: &Path, guest: &str) -> Self {
        self.grants.push((host.to_path_buf(), guest.to_owned()));
        self
    }

    /// Limit the locks and permits held at once.
    pub fn max_held(mut self, max: usize) -> Self {
        self.limits.max_held = max;
        self
    }

    /// Limit the longest wait.
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.limits.max_wait = Some(max);
        self
    }

    /// Set every limit.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Grant the Redis server at `url`, lock names prefixed with `prefix`.
    pub fn redis(mut self, url: &str, prefix: &str) -> Self {
        self.redis = Some((url.to_owned(), prefix.to_owned()));
        self
    }

    /// Stop the guest after this much fuel.
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }

    /// Limit the guest's linear memory to `bytes`.
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// A store for this run; with `blocking`, WASI file operations may
    /// block the calling thread (right for the sync host, which runs one
    /// plugin on it, as `portalocker run` does; not for an async host).
    fn store(
        &self,
        engine: &Engine,
        blocking: bool,
    ) -> (Store<State>, MemoryOutputPipe, MemoryOutputPipe) {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let stderr = MemoryOutputPipe::new(1 << 20);
        let mut wasi = WasiCtx::builder();
        let mut argv = vec![self.program.clone()];
        argv.extend(self.args.iter().cloned());
        wasi.args(&argv)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_blocking_current_thread(blocking);
        let mut locks = LocksCtx::builder().limits(self.limits);
        for (host, guest) in &self.grants {
            wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
                .expect("preopen");
            locks = locks.preopened_dir(host, guest).expect("grant");
        }
        if let Some((url, prefix)) = &self.redis {
            locks = locks.redis(url, prefix).expect("redis grant");
        }
        let mut memory = StoreLimitsBuilder::new();
        if let Some(bytes) = self.max_memory {
            memory = memory.memory_size(bytes);
        }
        let state = State {
            wasi: wasi.build(),
            locks: locks.build(),
            table: ResourceTable::new(),
            memory: memory.build(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_fuel(self.fuel).expect("fuel");
        (store, stdout, stderr)
    }

    /// Run with the sync bindings on this thread.
    pub fn sync(&self) -> Outcome {
        static LINKER: OnceLock<Linker<State>> = OnceLock::new();
        let linker = LINKER.get_or_init(|| {
            let mut linker = Linker::<State>::new(engine());
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
            portalocker_wasmtime::add_to_linker_sync(&mut linker).unwrap();
            linker
        });
        let (mut store, stdout, stderr) = self.store(engine(), true);
        let result = (|| {
            let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(
                &mut store,
                &component(&self.program),
                linker,
            )?;
            command.wasi_cli_run().call_run(&mut store)
        })();
        drop(store);
        outcome(result, &stdout, &stderr)
    }

    /// Run with the async bindings on a tokio runtime.
    pub async fn run_async(&self) -> Outcome {
        static LINKER: OnceLock<Linker<State>> = OnceLock::new();
        let linker = LINKER.get_or_init(|| {
            let mut linker = Linker::<State>::new(engine());
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
            portalocker_wasmtime::add_to_linker_async(&mut linker).unwrap();
            linker
        });
        let (mut store, stdout, stderr) = self.store(engine(), false);
        let result = async {
            let command = wasmtime_wasi::p2::bindings::Command::instantiate_async(
                &mut store,
                &component(&self.program),
                linker,
            )
            .await?;
            command.wasi_cli_run().call_run(&mut store).await
        }
        .await;
        drop(store);
        outcome(result, &stdout, &stderr)
    }

    /// Run a 0.2.0 plugin (it exports `wasi:cli/run@0.3.0`) with the
    /// concurrent bindings, 0.1.0's async ones and WASI 0.2 beside them, as
    /// `portalocker run` links them. Also returns what the instance still
    /// held when its `run` returned, before the store is dropped: whatever
    /// the guest let go of must be gone by then.
    pub async fn run_concurrent(&self) -> (Outcome, Usage) {
        static LINKER: OnceLock<Linker<State>> = OnceLock::new();
        let linker = LINKER.get_or_init(|| {
            let mut linker = Linker::<State>::new(concurrent_engine());
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
            portalocker_wasmtime::add_to_linker_async(&mut linker).unwrap();
            portalocker_wasmtime::add_to_linker_concurrent(&mut linker).unwrap();
            linker
        });
        let (mut store, stdout, stderr) = self.store(concurrent_engine(), false);
        let result = async {
            let instance = linker
                .instantiate_async(&mut store, &concurrent_component(&self.program))
                .await?;
            let interface = instance
                .get_export_index(&mut store, None, "wasi:cli/run@0.3.0")
                .ok_or_else(|| wasmtime::format_err!("no wasi:cli/run@0.3.0 export"))?;
            let run = instance
                .get_export_index(&mut store, Some(&interface), "run")
                .ok_or_else(|| wasmtime::format_err!("no run"))?;
            let run = instance.get_typed_func::<(), (Result<(), ()>,)>(&mut store, &run)?;
            let (result,) = run.call_async(&mut store, ()).await?;
            Ok(result)
        }
        .await;
        let usage = store.data().locks.usage();
        drop(store);
        (outcome(result, &stdout, &stderr), usage)
    }

    /// [`Run::run_concurrent`] on a fresh single-threaded runtime.
    pub fn concurrent(&self) -> (Outcome, Usage) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self.run_concurrent())
    }

    /// Run with the async bindings on a fresh single-threaded runtime.
    pub fn in_async(&self) -> Outcome {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self.run_async())
    }
}

fn outcome(
    result: wasmtime::Result<Result<(), ()>>,
    stdout: &MemoryOutputPipe,
    stderr: &MemoryOutputPipe,
) -> Outcome {
    let result = match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(())) => Err("the guest exited with a failure status".to_owned()),
        Err(e) => Err(match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) if exit.0 == 0 => String::new(),
            Some(exit) => format!("exit status {}", exit.0),
            None => format!("{e:?}"),
        }),
    };
    let result = match result {
        Err(message) if message.is_empty() => Ok(()),
        other => other,
    };
    Outcome {
        result,
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
    }
}
