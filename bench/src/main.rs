//! `portalocker-bench`: every workload of the design (W1-W8 and whole CLI
//! calls) for our native library, for a plugin doing the same through the
//! host, for the limits (raw `flock(2)`, raw Redis round trips) and for the
//! peers (Python portalocker 4.4.2, filelock, redis-py, util-linux
//! `flock(1)`), in one run. Implementations are interleaved round by round
//! so that machine drift hits all alike; every multi-process workload starts
//! behind a barrier and checks its result (a wrong count is a failure, not
//! a number). Prints a table and writes `target/bench/results.json`.
//!
//! ```text
//! portalocker-bench [--runs N] [--quick] [--only W1,W5,...] [--json PATH]
//! ```
//!
//! `scripts/bench.sh` builds it, installs the peers and runs it.

use std::path::PathBuf;

use anyhow::{Result, bail};
use portalocker_bench::report::Report;
use portalocker_bench::{Options, procs, setup, worker, workloads};

/// `target/bench/results.json` under the target directory.
fn default_json() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/release/portalocker-bench -> target
            procs::this_binary()
                .parent()
                .and_then(|p| p.parent())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"))
        });
    target.join("bench/results.json")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return worker::main(&args[1..]);
    }
    let options = Options::parse(&args, default_json())?;
    setup::check()?;
    let machine = setup::machine();
    eprintln!("portalocker-bench: {machine:?}");
    let mut report = Report::default();
    workloads::run_all(&options, &mut report)?;
    println!("\n{}", report.table());
    report.write_json(&options.json, &machine)?;
    println!("results: {}", options.json.display());
    if !report.all_correct() {
        bail!("a correctness check failed (see the `correct` column)");
    }
    Ok(())
}
