//! `portalocker run`: a wasm plugin with WASI and the lock imports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portalocker_wasmtime::{LocksCtx, LocksCtxView, LocksView};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::args::RunArgs;
use crate::cache::{self, Cache};
use crate::failure::{Failure, exit};

/// How often the epoch advances when `--timeout` is set.
const EPOCH_TICK: Duration = Duration::from_millis(10);

struct State {
    wasi: WasiCtx,
    locks: LocksCtx,
    table: ResourceTable,
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

/// A `--dir HOST[::GUEST]` grant.
fn parse_dir(spec: &str) -> Result<(PathBuf, String), Failure> {
    let (host, guest) = match spec.split_once("::") {
        Some((host, guest)) => (host, guest),
        None => (spec, spec),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(Failure::usage(format!(
            "--dir {spec:?}: expected HOST or HOST::GUEST"
        )));
    }
    let host = PathBuf::from(host);
    if !host.is_dir() {
        return Err(Failure::usage(format!(
            "--dir {spec:?}: {} is not a directory",
            host.display()
        )));
    }
    Ok((host, guest.to_owned()))
}

/// The `--env NAME=VALUE` pairs.
fn parse_env(args: &RunArgs) -> Result<Vec<(&str, &str)>, Failure> {
    args.env
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| Failure::usage(format!("--env {pair:?}: expected NAME=VALUE")))
        })
        .collect()
}

/// Run the plugin and return its exit status.
///
/// The plugin runs on the async bindings in a runtime of its own, so
/// `--timeout` bounds its whole run, waits in WASI or lock calls included:
/// at the deadline the call in progress is dropped (which cancels it and
/// leaves nothing held), and a busy loop is stopped at its next epoch tick.
///
/// # Errors
///
/// A [`Failure`] for bad arguments, a plugin that cannot be read, compiled
/// or linked, one that traps, or one out of fuel or time.
pub fn run(args: RunArgs) -> Result<u8, Failure> {
    let grants = args
        .dirs
        .iter()
        .map(|d| parse_dir(d))
        .collect::<Result<Vec<_>, _>>()?;
    let env = parse_env(&args)?;
    let bytes = if args.with.is_empty() {
        std::fs::read(&args.plugin).map_err(|e| {
            Failure::because(
                exit::NO_INPUT,
                &format!("reading {}", args.plugin.display()),
                e,
            )
        })?
    } else {
        crate::compose_command::composed(&args.plugin, &args.with, None, &args.config)?
    };
    let concurrent = is_async_plugin(&bytes);
    let engine = engine(&args, concurrent)?;
    let component = load(&engine, &args.plugin, &bytes, !args.no_cache)?;
    let linker = linker(&engine, concurrent)?;
    let mut store = Store::new(&engine, state(&args, &grants, &env)?);
    if let Some(fuel) = args.fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| Failure::because(exit::SOFTWARE, "setting fuel", e))?;
    }
    let outcome = call(&args, &engine, &mut store, &component, &linker, concurrent);
    let _ = std::io::stdout().flush();
    // Dropping the store releases whatever the plugin still held.
    drop(store);
    status(outcome?)
}

/// Whether `bytes` is a 0.2.0 plugin: it imports `portalocker:locks@0.2`
/// or exports WASI 0.3's `run` (its nested components included). Other
/// versions of `run` are not served: such a plugin gets the 0.2 command's
/// entry point, and wasmtime names what is missing.
fn is_async_plugin(bytes: &[u8]) -> bool {
    let is_async = |name: &str| {
        (name.starts_with("portalocker:locks/") && name.contains("@0.2.")) || name == RUN_0_3
    };
    wasmparser::Parser::new(0)
        .parse_all(bytes)
        .map_while(Result::ok)
        .any(|payload| match payload {
            wasmparser::Payload::ComponentImportSection(imports) => imports
                .into_iter()
                .map_while(Result::ok)
                .any(|import| is_async(import.name.name)),
            wasmparser::Payload::ComponentExportSection(exports) => exports
                .into_iter()
                .map_while(Result::ok)
                .any(|export| is_async(export.name.name)),
            _ => false,
        })
}

/// The engine: fuel if `--fuel`, epochs if `--timeout`, and the component
/// model's concurrency only for a 0.2.0 plugin (it makes every host call of
/// a 0.1.0 plugin dearer, and a component boundary more so).
fn engine(args: &RunArgs, concurrent: bool) -> Result<Engine, Failure> {
    let mut config = Config::new();
    config.consume_fuel(args.fuel.is_some());
    config.epoch_interruption(args.timeout.is_some());
    config.concurrency_support(concurrent);
    Engine::new(&config).map_err(|e| Failure::because(exit::SOFTWARE, "creating the engine", e))
}

/// WASI and the lock imports: 0.1.0 in its async flavour and, for a 0.2.0
/// plugin, 0.2.0, concurrent, on the same locks.
fn linker(engine: &Engine, concurrent: bool) -> Result<Linker<State>, Failure> {
    let mut linker = Linker::<State>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| Failure::because(exit::SOFTWARE, "linking WASI", e))?;
    portalocker_wasmtime::add_to_linker_async(&mut linker)
        .map_err(|e| Failure::because(exit::SOFTWARE, "linking the locks", e))?;
    if concurrent {
        portalocker_wasmtime::add_to_linker_concurrent(&mut linker)
            .map_err(|e| Failure::because(exit::SOFTWARE, "linking the locks (0.2.0)", e))?;
    }
    Ok(linker)
}

/// The async entry point of a WASI 0.3 command, which 0.2.0 plugins export.
const RUN_0_3: &str = "wasi:cli/run@0.3.0";

/// Call the plugin's entry point: the async `run` of WASI 0.3 when it
/// exports one (its tasks then wait concurrently), else the WASI 0.2
/// command's `run`.
async fn run_instance(
    store: &mut Store<State>,
    component: &Component,
    linker: &Linker<State>,
    concurrent: bool,
) -> wasmtime::Result<Result<(), ()>> {
    let instance = linker.instantiate_async(&mut *store, component).await?;
    if let Some(interface) = instance.get_export_index(&mut *store, None, RUN_0_3) {
        let run = instance
            .get_export_index(&mut *store, Some(&interface), "run")
            .ok_or_else(|| wasmtime::format_err!("{RUN_0_3} exports no `run`"))?;
        let run = instance.get_typed_func::<(), (Result<(), ()>,)>(&mut *store, &run)?;
        let (result,) = run.call_async(&mut *store, ()).await?;
        return Ok(result);
    }
    if concurrent {
        wasmtime::bail!(
            "the plugin imports portalocker:locks@0.2.0 but exports no {RUN_0_3}: a 0.2.0 \
             plugin's entry point is an async `run` (the guest SDK's `run!` exports it); a \
             WASI 0.2 `fn main()` cannot wait on an async import"
        );
    }
    let command = wasmtime_wasi::p2::bindings::Command::new(&mut *store, &instance)?;
    command.wasi_cli_run().call_run(&mut *store).await
}

/// Instantiate and run the plugin on a runtime of its own, within
/// `--timeout` if set: `None` when the time ran out.
fn call(
    args: &RunArgs,
    engine: &Engine,
    store: &mut Store<State>,
    component: &Component,
    linker: &Linker<State>,
    concurrent: bool,
) -> Result<Option<wasmtime::Result<Result<(), ()>>>, Failure> {
    // A busy plugin yields at every tick, so the deadline can be checked.
    let _ticker = match args.timeout {
        Some(_) => {
            store.epoch_deadline_async_yield_and_update(1);
            Some(
                Ticker::start(engine.clone())
                    .map_err(|e| Failure::because(exit::SOFTWARE, "starting the clock", e))?,
            )
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::because(exit::SOFTWARE, "starting the runtime", e))?;
    Ok(runtime.block_on(async {
        let run = run_instance(store, component, linker, concurrent);
        match args.timeout {
            Some(limit) => tokio::time::timeout(limit, run).await.ok(),
            None => Some(run.await),
        }
    }))
}

/// The exit status of a plugin run.
fn status(outcome: Option<wasmtime::Result<Result<(), ()>>>) -> Result<u8, Failure> {
    let Some(result) = outcome else {
        return Err(Failure::because(
            exit::TIMEOUT,
            "plugin stopped",
            "its time ran out",
        ));
    };
    match result {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(error) => {
            if let Some(exit) = error.downcast_ref::<I32Exit>() {
                return Ok(u8::try_from(exit.0 & 0xff).unwrap_or(1));
            }
            match error.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => Err(Failure::because(
                    exit::TIMEOUT,
                    "plugin stopped",
                    "it ran out of fuel",
                )),
                Some(Trap::Interrupt) => Err(Failure::because(
                    exit::TIMEOUT,
                    "plugin stopped",
                    "its time ran out",
                )),
                _ => Err(Failure::because(
                    exit::SOFTWARE,
                    "plugin trapped",
                    format!("{error:?}"),
                )),
            }
        }
    }
}

/// The store data: WASI with the grants, arguments and environment, and the
/// locks with the same grants and the limits asked for.
fn state(
    args: &RunArgs,
    grants: &[(PathBuf, String)],
    env: &[(&str, &str)],
) -> Result<State, Failure> {
    let mut wasi = WasiCtx::builder();
    let mut argv = vec![
        args.plugin
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    ];
    argv.extend(args.args.iter().map(|a| a.to_string_lossy().into_owned()));
    // One plugin per process: its file operations may block this thread
    // (no hop through a blocking pool for each), which makes them several
    // times cheaper.
    wasi.inherit_stdio()
        .args(&argv)
        .allow_blocking_current_thread(true);
    for (name, value) in env {
        wasi.env(name, value);
    }
    let mut locks = LocksCtx::builder()
        .max_held(args.max_locks)
        .max_handles(args.max_handles);
    if let Some(wait) = args.max_wait {
        locks = locks.max_wait(wait);
    }
    if let Some(url) = &args.redis {
        locks = locks
            .redis(url, &args.redis_prefix)
            .map_err(|e| Failure::usage(format!("--redis: {e}")))?;
    }
    for (host, guest) in grants {
        let granting = format!("granting {}", host.display());
        wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
            .map_err(|e| Failure::because(exit::IO, &granting, e))?;
        locks = locks
            .preopened_dir(host, guest)
            .map_err(|e| Failure::because(exit::IO, &granting, e))?;
    }
    Ok(State {
        wasi: wasi.build(),
        locks: locks.build(),
        table: ResourceTable::new(),
    })
}

/// Advances the engine's epoch from a thread of its own (a busy plugin
/// holds the runtime's thread) until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("portalocker-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Compile the plugin (`bytes`, read from `path` and composed if asked), or
/// load it from the cache of compiled plugins: a composed plugin is cached
/// like any other, by its bytes.
fn load(engine: &Engine, path: &Path, bytes: &[u8], use_cache: bool) -> Result<Component, Failure> {
    let compile = || {
        Component::new(engine, bytes)
            .map_err(|e| Failure::because(exit::DATA, &format!("compiling {}", path.display()), e))
    };
    let Some(dir) = cache::default_dir().filter(|_| use_cache) else {
        return compile();
    };
    let cache = match Cache::open(&dir) {
        Ok(cache) => cache,
        Err(e) => {
            eprintln!(
                "portalocker: not using the plugin cache {}: {e}",
                dir.display()
            );
            return compile();
        }
    };
    let entry = cache.entry(engine, bytes);
    if let Some(component) = cache.load(engine, &entry) {
        return Ok(component);
    }
    let component = compile()?;
    if let Ok(serialized) = component.serialize() {
        cache.store(&entry, &serialized);
    }
    Ok(component)
}
