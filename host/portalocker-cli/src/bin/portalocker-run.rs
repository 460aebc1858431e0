//! `portalocker-run`: the plugin host. The same command line as
//! `portalocker`, with `run` (a wasm plugin with WASI and the
//! `portalocker:locks` imports) done in this process; `portalocker run`
//! hands itself over to it.

fn main() -> std::process::ExitCode {
    portalocker_cli::main(portalocker_cli::run_plugin_in_process())
}
