//! `portalocker run` in the `portalocker` binary: the command line goes to
//! the plugin host, `portalocker-run`, which replaces this process (same
//! PID, same descriptors and signals, its exit status is ours).

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::Command;

use crate::args::PluginCommand;
use crate::failure::{Failure, exit};

/// The plugin host's name, without the platform's executable suffix.
pub const PLUGIN_HOST: &str = "portalocker-run";

/// Replace this process with the plugin host, given this command line.
///
/// # Errors
///
/// When the plugin host is not installed beside `portalocker` nor on
/// `PATH`, or cannot be started: exit status 69 (`EX_UNAVAILABLE`), with
/// what to install.
pub fn exec(_parsed: PluginCommand) -> Result<u8, Failure> {
    let host = locate();
    let mut command = Command::new(&host);
    command.args(std::env::args_os().skip(1));
    run(command).map_err(|e| {
        Failure::new(
            exit::UNAVAILABLE,
            format!(
                "`portalocker run` and `compose` need the plugin host, {PLUGIN_HOST}, installed beside \
                 portalocker or on PATH ({}: {e}); `cargo install --path host/portalocker-cli` \
                 installs both",
                host.to_string_lossy()
            ),
        )
    })
}

/// The plugin host beside this executable, else its bare name (found on
/// `PATH` when started).
fn locate() -> OsString {
    let name = format!("{PLUGIN_HOST}{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)))
        .filter(|beside| beside.is_file())
        .map_or_else(|| name.clone().into(), PathBuf::into_os_string)
}

/// Become `command` (Unix: `execvp`, so nothing of this process stays
/// between the caller and the plugin).
#[cfg(unix)]
fn run(mut command: Command) -> io::Result<u8> {
    use std::os::unix::process::CommandExt;
    Err(command.exec())
}

/// Run `command` and pass its exit status on (no `exec` here).
#[cfg(not(unix))]
fn run(mut command: Command) -> io::Result<u8> {
    let status = command.status()?;
    Ok(status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(exit::SOFTWARE))
}
