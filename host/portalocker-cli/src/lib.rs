//! The `portalocker` command, shared by its two binaries.
//!
//! - `portalocker` runs commands under a file lock, a semaphore slot or a
//!   Redis lock, flock(1)-style and interoperable with Python's portalocker
//!   (`lock`, `semaphore`, `redis-lock`), and tells who holds a lock
//!   (`status`). It links no wasm runtime, so a
//!   whole `portalocker lock -- CMD` call starts about as fast as flock(1).
//! - `portalocker-run` is the plugin host: the same command line, with
//!   `run` (a wasm plugin that takes those locks itself) and `compose`
//!   (middleware and providers around a plugin) done in process.
//!   `portalocker run ...` and `portalocker compose ...` replace themselves
//!   with `portalocker-run ...`, found beside `portalocker` (then on
//!   `PATH`).
//!
//! This crate is the command's implementation, not a library API.

mod args;
mod cache;
mod child;
pub mod compose;
mod compose_command;
mod failure;
mod lock;
mod plugin_host;
mod redis_lock;
mod run;
mod semaphore;
mod status;
mod wait;

use std::process::ExitCode;

use clap::Parser;

/// Parse the command line and do it; the exit status to end with.
///
/// `run_plugin` is what `run` does. It is given by the binary, so that
/// `portalocker` never links the wasm runtime: pass
/// [`run_plugin_in_process`] or [`run_plugin_in_host`].
#[must_use]
pub fn main(run_plugin: RunPlugin) -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; a bad command line is 64
            // (EX_USAGE), as documented.
            return if e.use_stderr() {
                ExitCode::from(failure::exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let outcome = match cli.command {
        args::Command::Lock(args) => lock::run(args),
        args::Command::Semaphore(args) => semaphore::run(args),
        args::Command::RedisLock(args) => redis_lock::run(args),
        args::Command::Run(args) => run_plugin.0(args::PluginCommand::Run(args)),
        args::Command::Compose(args) => run_plugin.0(args::PluginCommand::Compose(args)),
        args::Command::Status(args) => status::run(args),
        args::Command::Completions(args) => print_completions(args.shell),
        args::Command::Man => print_man(),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("portalocker: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

/// What `portalocker run` and `portalocker compose` do in a binary (see
/// [`main`]).
#[derive(Clone, Copy)]
pub struct RunPlugin(fn(args::PluginCommand) -> Result<u8, failure::Failure>);

impl std::fmt::Debug for RunPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunPlugin")
    }
}

/// Run and compose plugins in this process (the plugin host,
/// `portalocker-run`).
#[must_use]
pub fn run_plugin_in_process() -> RunPlugin {
    RunPlugin(|command| match command {
        args::PluginCommand::Run(args) => run::run(args),
        args::PluginCommand::Compose(args) => compose_command::run(args),
    })
}

/// Hand `run` and `compose` to the plugin host (`portalocker`).
#[must_use]
pub fn run_plugin_in_host() -> RunPlugin {
    RunPlugin(plugin_host::exec)
}

/// `portalocker completions SHELL`: the script on stdout.
fn print_completions(shell: clap_complete::Shell) -> Result<u8, failure::Failure> {
    let mut command = <args::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "portalocker", &mut std::io::stdout());
    Ok(0)
}

/// `portalocker man`: the manual page (roff) on stdout.
fn print_man() -> Result<u8, failure::Failure> {
    let command = <args::Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(command)
        .render(&mut std::io::stdout())
        .map_err(|e| failure::Failure::because(failure::exit::IO, "writing the manual page", e))?;
    Ok(0)
}
