//! The benchmark's parts: the workloads, their workers, the plugin side and
//! the report. `src/main.rs` is the command; `benches/hot_paths.rs` reuses
//! the plugin side for criterion.

pub mod plugin;
pub mod procs;
pub mod report;
pub mod setup;
pub mod worker;
pub mod workloads;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// What a run measures and how hard.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs per measurement.
    pub runs: usize,
    /// Smaller counts, for a smoke run.
    pub quick: bool,
    /// Only these workloads (empty: all).
    pub only: Vec<String>,
    /// Where the JSON goes.
    pub json: PathBuf,
}

impl Options {
    /// Parse the command line (after the program name).
    ///
    /// # Errors
    ///
    /// On an unknown argument or a bad value.
    pub fn parse(args: &[String], json: PathBuf) -> Result<Self> {
        let mut options = Self {
            runs: 5,
            quick: false,
            only: Vec::new(),
            json,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--runs" => options.runs = value()?.parse().context("--runs N")?,
                "--quick" => options.quick = true,
                "--only" => {
                    options.only = value()?
                        .split(',')
                        .map(|w| w.trim().to_uppercase())
                        .collect();
                }
                "--json" => options.json = PathBuf::from(value()?),
                "-h" | "--help" => {
                    println!(
                        "portalocker-bench [--runs N] [--quick] [--only W1,W2,...,W8,CLI] [--json PATH]"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}; try --help"),
            }
        }
        if options.runs == 0 {
            bail!("--runs must be at least 1");
        }
        Ok(options)
    }

    /// Whether `workload` is to run.
    pub fn wants(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == workload)
    }

    /// `full` normally, `quick` with `--quick`.
    pub fn scale(&self, full: u64, quick: u64) -> u64 {
        if self.quick { quick } else { full }
    }
}
