//! `portalocker`: run a command while holding a file lock, a semaphore slot
//! or a Redis lock, flock(1)-style and interoperable with Python's
//! portalocker (`lock`, `semaphore`, `redis-lock`), or run a wasm plugin
//! that takes those locks itself (`run`).

mod args;
mod cache;
mod child;
mod failure;
mod lock;
mod redis_lock;
mod run;
mod semaphore;
mod wait;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
        args::Command::Run(args) => run::run(args),
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
