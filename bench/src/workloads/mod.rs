//! The workloads of the design (§5), one module per family, all run from
//! [`run_all`] with a shared [`Bench`].

mod cli;
mod files;
mod redis;
mod semaphore;
mod wasm;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use portalocker_tests::redis_server::RedisServer;

use crate::Options;
use crate::procs::{self, Finished};
use crate::report::Report;

/// What every workload shares.
pub struct Bench<'a> {
    /// The options of this run.
    pub options: &'a Options,
    /// Where the figures go.
    pub report: &'a mut Report,
    /// A private directory for lock and data files.
    pub dir: tempfile::TempDir,
    /// A private loopback Redis.
    pub redis: RedisServer,
    /// The precompiled plugin, handed to plugin workers.
    pub cwasm: String,
    fresh: u64,
}

impl Bench<'_> {
    /// A fresh path in the private directory.
    pub fn path(&mut self, stem: &str) -> PathBuf {
        self.fresh += 1;
        self.dir.path().join(format!("{stem}-{}", self.fresh))
    }

    /// A fresh name (for semaphores and Redis locks).
    pub fn name(&mut self, stem: &str) -> String {
        self.fresh += 1;
        format!("{stem}-{}", self.fresh)
    }

    /// The directory as a string, for worker arguments.
    pub fn dir_str(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// The Redis URL.
    pub fn url(&self) -> String {
        self.redis.url()
    }

    /// A native worker of this binary.
    pub fn native(&self, args: &[&str]) -> Command {
        procs::native(args)
    }

    /// A plugin worker: the benchmark plugin under the host in its own
    /// process, the private directory granted as `/data`.
    pub fn plugin(&self, redis: bool, args: &[&str]) -> Command {
        let url = if redis { self.url() } else { "-".to_owned() };
        let mut all = vec!["plugin", self.dir.path().to_str().unwrap_or("."), &url];
        all.extend_from_slice(args);
        let mut command = procs::native(&all);
        command.env(crate::plugin::CWASM_VAR, &self.cwasm);
        command
    }

    /// A Python peer.
    pub fn python(&self, args: &[&str]) -> Command {
        procs::python(args)
    }

    /// Run a group of workers behind the barrier.
    pub fn group(&self, commands: Vec<Command>) -> Result<Finished> {
        procs::run_group(commands)
    }

    /// The guest's name for a path in the private directory.
    pub fn guest(path: &Path) -> String {
        format!(
            "/data/{}",
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        )
    }
}

/// Run every workload the options ask for.
///
/// # Errors
///
/// When a workload cannot run at all (a failed check is recorded, not an
/// error).
pub fn run_all(options: &Options, report: &mut Report) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cwasm = crate::plugin::precompile_into(dir.path())?;
    let mut bench = Bench {
        options,
        report,
        dir,
        redis: RedisServer::start(),
        cwasm,
        fresh: 0,
    };
    type Workload = fn(&mut Bench<'_>) -> Result<()>;
    let all: [(&str, Workload); 12] = [
        ("W1", files::w1),
        ("W2", files::w2),
        ("W3", files::w3),
        ("W3B", files::w3b),
        ("W4", semaphore::w4),
        ("W4", semaphore::w4_fairness),
        ("W5", redis::w5),
        ("W5", redis::w5_cluster),
        ("W6", redis::w6),
        ("W7", wasm::w7),
        ("W8", wasm::w8),
        ("CLI", cli::calls),
    ];
    for (workload, run) in all {
        if options.wants(workload) || (workload == "W3B" && options.wants("W3")) {
            eprintln!("portalocker-bench: {workload}");
            run(&mut bench)?;
        }
    }
    Ok(())
}
