//! Plugins: W7 (start a plugin: a fresh store with WASI and lock contexts
//! plus instantiation of a prepared component) and W8 (1,000 waiters on one
//! lock in one host process).

use anyhow::Result;

use super::Bench;
use crate::report::Better;

/// W7: plugin start, next to wasmtime's own instantiation.
pub fn w7(b: &mut Bench<'_>) -> Result<()> {
    let n = b.options.scale(2_000, 300) as u32;
    for _ in 0..b.options.runs {
        let start = crate::plugin::w7(b.dir.path(), n)?;
        let note = "prepared component (InstancePre), pooling allocator; fresh Store, \
                    WasiCtx and LocksCtx from templates";
        b.report.add(
            "W7",
            "wasmtime",
            "instantiate",
            "µs",
            Better::Lower,
            start.instantiate,
            true,
            "InstancePre::instantiate alone, pooling allocator",
        );
        b.report.add(
            "W7",
            "ours-plugin",
            "start, on-demand allocator",
            "µs",
            Better::Lower,
            start.start_on_demand,
            true,
            "as start, on wasmtime's default allocator",
        );
        b.report.add(
            "W7",
            "ours-plugin",
            "start",
            "µs",
            Better::Lower,
            start.start,
            true,
            note,
        );
        b.report.add(
            "W7",
            "ours-plugin",
            "start + one lock cycle",
            "µs",
            Better::Lower,
            start.start_and_cycle,
            true,
            "start, then run: open, try-lock, release",
        );
    }
    Ok(())
}

/// W8: waiters blocked on one lock in one process, each in a fresh
/// process per measurement: plugin instances in one async host, our
/// `acquire_async` on tokio tasks, and a thread per waiter.
pub fn w8(b: &mut Bench<'_>) -> Result<()> {
    let n = b.options.scale(1_000, 200).to_string();
    let dir = b.dir_str();
    for _ in 0..b.options.runs.min(3) {
        for (implementation, kind, note) in [
            (
                "ours-plugin",
                "plugin",
                "plugin instances in one async host (2 worker threads)",
            ),
            (
                "ours-native",
                "tasks",
                "Lock::acquire_async on tokio tasks (2 worker threads)",
            ),
            (
                "thread-per-waiter",
                "threads",
                "a thread per waiter in a blocking flock",
            ),
        ] {
            let mut command = b.native(&["w8", kind, &dir, &n]);
            command.env(crate::plugin::CWASM_VAR, &b.cwasm);
            let (figures, correct) = match b.group(vec![command]) {
                Ok(done) => (
                    done.workers[0]
                        .result
                        .iter()
                        .filter_map(|v| v.parse().ok())
                        .collect::<Vec<f64>>(),
                    true,
                ),
                Err(e) => {
                    eprintln!("W8 {implementation}: {e:#}");
                    (Vec::new(), false)
                }
            };
            let correct = correct && figures.len() == 3;
            let figure = |i: usize| figures.get(i).copied().unwrap_or(0.0);
            b.report.add(
                "W8",
                implementation,
                "threads while waiting",
                "",
                Better::Lower,
                figure(0),
                correct,
                note,
            );
            b.report.add(
                "W8",
                implementation,
                "memory per waiter",
                "KiB",
                Better::Lower,
                figure(1),
                correct,
                note,
            );
            b.report.add(
                "W8",
                implementation,
                "handoffs after release",
                "/s",
                Better::Higher,
                figure(2),
                correct,
                note,
            );
        }
    }
    Ok(())
}
