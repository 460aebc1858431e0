//! `portalocker`: run a command while holding a file lock or a semaphore
//! slot, flock(1)-style, interoperable with Python's portalocker.

mod args;
mod cache;
mod child;
mod commands;
mod plugin;

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
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("portalocker: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}
