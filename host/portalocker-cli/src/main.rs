//! `portalocker`: run a command while holding a file lock, a semaphore slot
//! or a Redis lock, flock(1)-style and interoperable with Python's
//! portalocker (`lock`, `semaphore`, `redis-lock`); `run` hands a wasm
//! plugin to the plugin host, `portalocker-run`.

fn main() -> std::process::ExitCode {
    portalocker_cli::main(portalocker_cli::run_plugin_in_host())
}
