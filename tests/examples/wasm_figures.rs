//! Rough figures for design §5 W7 and the guest side of W1 (the full
//! benchmark with its peers has its own issue):
//!
//! - W7: instantiate a prepared component (`InstancePre`) with a fresh store,
//!   WASI and lock contexts, and run one lock cycle; next to wasmtime's own
//!   instantiate time for the same component;
//! - W1 from a plugin: try-lock + release pairs timed in the guest, next to
//!   the same pairs natively.
//!
//! `cargo run --release -p portalocker-tests --example wasm_figures`

use std::time::{Duration, Instant};

use portalocker_tests::host::{State, component, engine};
use portalocker_tests::programs::BENCH_LOCK_CYCLE;
use portalocker_wasmtime::LocksCtx;
use wasmtime::Store;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::{Command, CommandPre};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx};

fn main() -> wasmtime::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut linker = Linker::<State>::new(engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    portalocker_wasmtime::add_to_linker_sync(&mut linker)?;
    let pre = CommandPre::new(linker.instantiate_pre(&component(BENCH_LOCK_CYCLE))?)?;

    let store = |args: &[&str]| -> wasmtime::Result<(Store<State>, MemoryOutputPipe)> {
        let stdout = MemoryOutputPipe::new(4096);
        let wasi = WasiCtx::builder()
            .args(args)
            .stdout(stdout.clone())
            .preopened_dir(dir.path(), "/data", FsPerms::ReadWrite)?
            .build();
        let locks = LocksCtx::builder()
            .preopened_dir(dir.path(), "/data")?
            .build();
        let mut store = Store::new(engine(), State::new(wasi, locks, ResourceTable::new()));
        store.set_fuel(u64::MAX)?;
        Ok((store, stdout))
    };

    for round in 0..3 {
        let n = 2000u32;
        let mut instantiate_only = Duration::ZERO;
        let started = Instant::now();
        for _ in 0..n {
            let (mut store, _) = store(&["bench", "/data/w7.lock", "1"])?;
            let t = Instant::now();
            let _command: Command = pre.instantiate(&mut store)?;
            instantiate_only += t.elapsed();
        }
        let store_and_instantiate = started.elapsed() / n;
        let started = Instant::now();
        for _ in 0..n {
            let (mut store, _) = store(&["bench", "/data/w7.lock", "1"])?;
            let command = pre.instantiate(&mut store)?;
            command
                .wasi_cli_run()
                .call_run(&mut store)?
                .expect("guest ran");
        }
        let with_cycle = started.elapsed() / n;
        println!(
            "W7 round {round}: instantiate only {:?}, store+WASI+locks+instantiate {:?}, + one lock cycle {:?}",
            instantiate_only / n,
            store_and_instantiate,
            with_cycle
        );
    }

    let pairs = 200_000;
    for round in 0..3 {
        let (mut store, stdout) = store(&["bench", "/data/w1.lock", &pairs.to_string()])?;
        let command = pre.instantiate(&mut store)?;
        command
            .wasi_cli_run()
            .call_run(&mut store)?
            .expect("guest ran");
        let guest_ns: f64 = String::from_utf8_lossy(&stdout.contents()).trim().parse()?;
        let file = std::fs::File::create(dir.path().join("native.lock"))?;
        let flags = portalocker::LockFlags::EXCLUSIVE | portalocker::LockFlags::NON_BLOCKING;
        let started = Instant::now();
        for _ in 0..pairs {
            portalocker::lock(&file, flags)?;
            portalocker::unlock(&file)?;
        }
        let native_ns = started.elapsed().as_nanos() as f64 / f64::from(pairs);
        println!(
            "W1 round {round}: plugin try-lock+release {guest_ns:.0} ns/pair (kept descriptor, identity re-checked each lock), native lock+unlock {native_ns:.0} ns/pair, ratio {:.2}",
            guest_ns / native_ns
        );
    }
    Ok(())
}
