//! Worker processes started behind a barrier, so that they really contend,
//! and the clock they stamp their work with.
//!
//! Every worker (this binary's `worker` modes, a plugin hosted by one of
//! them, or `python/peer.py`) speaks the same protocol: it prints `ready`
//! once set up, waits for a line on stdin, works, and prints
//! `done START END [RESULT...]` with `CLOCK_MONOTONIC` nanoseconds, which
//! all processes of the machine share.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};

/// `CLOCK_MONOTONIC` in nanoseconds: comparable across processes.
pub fn now_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// What one worker reported.
#[derive(Debug, Clone)]
pub struct Done {
    /// When it started working.
    pub start: i64,
    /// When it finished.
    pub end: i64,
    /// The rest of its `done` line.
    pub result: Vec<String>,
}

/// What a group of workers reported.
#[derive(Debug)]
pub struct Finished {
    /// One report per worker, in start order.
    pub workers: Vec<Done>,
}

impl Finished {
    /// From the first start to the last end, in seconds.
    pub fn span_secs(&self) -> f64 {
        let start = self.workers.iter().map(|d| d.start).min().unwrap_or(0);
        let end = self.workers.iter().map(|d| d.end).max().unwrap_or(0);
        (end - start) as f64 / 1e9
    }
}

/// This binary, for its `worker` modes.
pub fn this_binary() -> PathBuf {
    std::env::current_exe().expect("the benchmark's own path")
}

/// A worker of this binary: `portalocker-bench worker ARGS...`.
pub fn native(args: &[&str]) -> Command {
    let mut command = Command::new(this_binary());
    command.arg("worker").args(args);
    command
}

/// A Python peer: `python peer.py ARGS...`.
pub fn python(args: &[&str]) -> Command {
    let mut command = Command::new(crate::setup::python());
    command.arg(crate::setup::peer_script()).args(args);
    command
}

struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
    what: String,
}

/// Start every command, wait until all are ready, let them go at once and
/// collect their reports. A worker that fails fails the group.
///
/// # Errors
///
/// When a worker cannot start, exits with a failure or says something
/// else than the protocol.
pub fn run_group(commands: Vec<Command>) -> Result<Finished> {
    run_group_with(commands, &mut || Ok(()))
}

/// [`run_group`], calling `at_go` once every worker is ready, just before
/// letting them go (to take a snapshot of the server, say).
///
/// # Errors
///
/// As [`run_group`], and when `at_go` fails.
pub fn run_group_with(
    commands: Vec<Command>,
    at_go: &mut dyn FnMut() -> Result<()>,
) -> Result<Finished> {
    let mut running = Vec::new();
    for mut command in commands {
        let what = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        running.push(Running {
            child,
            stdout,
            what,
        });
    }
    for worker in &mut running {
        let mut line = String::new();
        worker.stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            let status = worker.child.wait()?;
            bail!("{} did not get ready ({status}): {line:?}", worker.what);
        }
    }
    at_go()?;
    for worker in &mut running {
        let stdin = worker.child.stdin.as_mut().expect("piped");
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
    }
    let mut workers = Vec::new();
    for mut worker in running {
        let mut line = String::new();
        worker.stdout.read_line(&mut line)?;
        let status = worker.child.wait()?;
        if !status.success() {
            bail!("{} failed ({status}): {line:?}", worker.what);
        }
        let mut fields = line.split_whitespace();
        let (Some("done"), Some(start), Some(end)) = (fields.next(), fields.next(), fields.next())
        else {
            bail!("{} said {line:?} instead of `done START END`", worker.what);
        };
        workers.push(Done {
            start: start.parse()?,
            end: end.parse()?,
            result: fields.map(str::to_owned).collect(),
        });
    }
    Ok(Finished { workers })
}

/// The worker side of the barrier: say `ready`, wait for the go, and
/// return the start stamp.
pub fn barrier() -> i64 {
    println!("ready");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    now_ns()
}

/// The worker side of the report.
pub fn done(start: i64, result: &str) {
    println!("done {start} {} {result}", now_ns());
}
