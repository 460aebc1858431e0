//! `portalocker run`: a wasm plugin with WASI and the lock imports.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
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
use crate::commands::Failure;

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

fn usage(message: String) -> Failure {
    Failure { code: 64, message }
}

fn failed(code: u8, context: &str, error: impl std::fmt::Display) -> Failure {
    Failure {
        code,
        message: format!("{context}: {error}"),
    }
}

/// A `--dir HOST[::GUEST]` grant.
fn parse_dir(spec: &str) -> Result<(PathBuf, String), Failure> {
    let (host, guest) = match spec.split_once("::") {
        Some((host, guest)) => (host, guest),
        None => (spec, spec),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(usage(format!(
            "--dir {spec:?}: expected HOST or HOST::GUEST"
        )));
    }
    let host = PathBuf::from(host);
    if !host.is_dir() {
        return Err(usage(format!(
            "--dir {spec:?}: {} is not a directory",
            host.display()
        )));
    }
    Ok((host, guest.to_owned()))
}

/// Run the plugin and return its exit status.
pub fn run(args: RunArgs) -> Result<u8, Failure> {
    let grants = args
        .dirs
        .iter()
        .map(|d| parse_dir(d))
        .collect::<Result<Vec<_>, _>>()?;
    let env = args
        .env
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| usage(format!("--env {pair:?}: expected NAME=VALUE")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut config = Config::new();
    config.consume_fuel(args.fuel.is_some());
    config.epoch_interruption(args.timeout.is_some());
    let engine = Engine::new(&config).map_err(|e| failed(70, "creating the engine", e))?;
    let component = load(&engine, &args.plugin, !args.no_cache)?;

    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| failed(70, "linking WASI", e))?;
    portalocker_wasmtime::add_to_linker_sync(&mut linker)
        .map_err(|e| failed(70, "linking the locks", e))?;

    let mut wasi = WasiCtx::builder();
    let mut argv = vec![
        args.plugin
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    ];
    argv.extend(args.args.iter().map(|a| a.to_string_lossy().into_owned()));
    wasi.inherit_stdio().args(&argv);
    for (name, value) in &env {
        wasi.env(name, value);
    }
    let mut locks = LocksCtx::builder().max_held(args.max_locks);
    if let Some(url) = &args.redis {
        locks = locks
            .redis(url, &args.redis_prefix)
            .map_err(|e| usage(format!("--redis: {e}")))?;
    }
    for (host, guest) in &grants {
        wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
            .map_err(|e| failed(74, &format!("granting {}", host.display()), e))?;
        locks = locks
            .preopened_dir(host, guest)
            .map_err(|e| failed(74, &format!("granting {}", host.display()), e))?;
    }
    // A plugin blocked in a lock call cannot be interrupted, so --timeout
    // also bounds every wait.
    if let Some(wait) = [args.max_wait, args.timeout].into_iter().flatten().min() {
        locks = locks.max_wait(wait);
    }
    let state = State {
        wasi: wasi.build(),
        locks: locks.build(),
        table: ResourceTable::new(),
    };
    let mut store = Store::new(&engine, state);
    if let Some(fuel) = args.fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| failed(70, "setting fuel", e))?;
    }
    let ticker = args.timeout.map(|timeout| {
        let ticks = (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        Ticker::start(engine.clone())
    });

    let result = (|| {
        let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(
            &mut store, &component, &linker,
        )?;
        command.wasi_cli_run().call_run(&mut store)
    })();
    drop(ticker);
    let _ = std::io::stdout().flush();
    // Dropping the store releases whatever the plugin still held.
    drop(store);
    match result {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(error) => {
            if let Some(exit) = error.downcast_ref::<I32Exit>() {
                return Ok(u8::try_from(exit.0 & 0xff).unwrap_or(1));
            }
            match error.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => Err(failed(124, "plugin stopped", "it ran out of fuel")),
                Some(Trap::Interrupt) => Err(failed(124, "plugin stopped", "its time ran out")),
                _ => Err(failed(70, "plugin trapped", format!("{error:?}"))),
            }
        }
    }
}

/// Advances the engine's epoch until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        });
        Self { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Compile the plugin, or load it from the cache of precompiled components
/// keyed by its bytes, this program's version and the engine's settings.
fn load(engine: &Engine, path: &Path, use_cache: bool) -> Result<Component, Failure> {
    let bytes =
        std::fs::read(path).map_err(|e| failed(66, &format!("reading {}", path.display()), e))?;
    let compile = || {
        Component::new(engine, &bytes)
            .map_err(|e| failed(65, &format!("compiling {}", path.display()), e))
    };
    let Some(dir) = cache_dir().filter(|_| use_cache) else {
        return compile();
    };
    let mut hasher = DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    bytes.hash(&mut hasher);
    let cached = dir.join(format!("{:016x}-{}.cwasm", hasher.finish(), bytes.len()));
    if cached.exists() {
        // SAFETY: the file is one this program precompiled into its own
        // cache directory, keyed by the engine's compatibility hash.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok(component),
            Err(_) => {
                let _ = std::fs::remove_file(&cached);
            }
        }
    }
    let component = compile()?;
    if let Ok(serialized) = component.serialize() {
        // Best effort: a cache that cannot be written only costs speed.
        let _ = std::fs::create_dir_all(&dir);
        let _ = portalocker::open_atomic(&cached, |file| file.write_all(&serialized));
    }
    Ok(component)
}

/// `$PORTALOCKER_CACHE_DIR`, else `$XDG_CACHE_HOME/portalocker/plugins`,
/// else `~/.cache/portalocker/plugins`.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PORTALOCKER_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("portalocker/plugins"))
}
