//! Command-line arguments.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The longest timeout accepted, in seconds (about 31 years): anything
/// larger is a mistake, not a wish.
pub const MAX_TIMEOUT_SECS: f64 = 1e9;

/// Run commands under portalocker's locks: file locks and named bounded
/// semaphores that exclude Python programs using portalocker too.
///
/// Exit status: the command's own (128+N if it died of signal N), or the
/// conflict exit code (default 1) when the lock could not be taken, 64 for
/// invalid arguments, 74 when the lock file could not be opened or locked,
/// 126 when the command cannot be run and 127 when it does not exist.
#[derive(Debug, Parser)]
#[command(name = "portalocker", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command while holding a lock on a file (created if missing).
    ///
    /// Without -n or -w it waits as long as it takes. The lock is a
    /// flock(2) lock, the one portalocker and flock(1) take. The command
    /// inherits the locked descriptor, as with flock(1): the lock lasts as
    /// long as the command, even if portalocker is killed.
    Lock(LockArgs),
    /// Run a command while holding one slot of a named bounded semaphore.
    ///
    /// The slot files are portalocker's: DIR/NAME.00.lock, NAME.01.lock, ...
    /// The command sees its slot number in PORTALOCKER_SLOT, and inherits
    /// the locked slot file: the slot is held as long as the command runs.
    Semaphore(SemaphoreArgs),
    /// Run a command while holding a Redis lock (portalocker's RedisLock
    /// protocol: Python programs using portalocker share it).
    ///
    /// The command sees the fencing token in PORTALOCKER_FENCING_TOKEN
    /// (with --fencing). If the lock is lost while it runs, it gets SIGTERM
    /// and portalocker exits with 75; it is never started on a lost lock.
    /// If portalocker dies, the command gets SIGTERM too (Linux).
    RedisLock(RedisLockArgs),
    /// Run a wasm plugin (a wasm32-wasip2 component) with WASI and the
    /// portalocker:locks imports, confined to the directories granted.
    ///
    /// Both interface versions run: 0.1.0 plugins (a WASI 0.2 `fn main()`)
    /// and 0.2.0 plugins (an async `wasi:cli/run@0.3.0`, whose tasks wait
    /// for locks concurrently).
    ///
    /// Exits with the plugin's status; 124 when it ran out of fuel or time
    /// (--timeout bounds the whole run, waits included), 70 when it trapped.
    /// Compiled plugins are cached, so the second start is fast.
    /// With --with, middleware components are composed in front of the
    /// plugin first (see `compose`).
    Run(RunArgs),
    /// Compose a plugin with middleware in front of it (--with) and/or a
    /// provider under it (--provider) into one component.
    ///
    /// Each middleware imports and exports portalocker:locks, so the plugin
    /// runs unchanged: the first --with is closest to the plugin. Settings
    /// (--config KEY=VALUE, keys named MIDDLEWARE.SETTING) are built into
    /// the result for the middleware to read. A provider serves every lock
    /// interface itself: the result runs in any component runtime.
    Compose(ComposeArgs),
    /// Tell who holds a lock: a lock file (PATH), a semaphore's slots
    /// (--semaphore) or a Redis lock (--redis), without taking it.
    ///
    /// A file: free, or held exclusive or shared, by which processes (Linux
    /// reads /proc/locks and each process's descriptors; it does not record
    /// when a lock was taken, so each holder's running time is shown: the
    /// lock is no older), and who waits. A semaphore: each slot. A Redis
    /// lock: the holder, readers and waiting contenders with their
    /// connections' names, addresses and ages (CLIENT LIST), and the
    /// fencing counter. Locks taken by Python's portalocker, flock(1) and
    /// plugins are seen alike.
    ///
    /// Exit status: 0 when free (a semaphore: a slot is free), 1 when held,
    /// 74 when it cannot be inspected; so `portalocker status -q PATH` works
    /// in shell conditions.
    Status(StatusArgs),
    /// Print a shell completion script for portalocker.
    ///
    /// For example `portalocker completions bash >
    /// ~/.local/share/bash-completion/completions/portalocker`.
    Completions(CompletionsArgs),
    /// Print portalocker's manual page (roff), generated from the same
    /// definitions as --help: `portalocker man > portalocker.1`.
    Man,
}

/// `portalocker status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The semaphore to inspect (its slot files' prefix).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["redis", "path"])]
    pub semaphore: Option<String>,
    /// The directory of the semaphore's slot files (default: the system
    /// temp directory).
    #[arg(long = "dir", value_name = "DIR", requires = "semaphore")]
    pub directory: Option<PathBuf>,
    /// How many slots the semaphore has (default: the slot files that
    /// exist, in a row from 00).
    #[arg(long, value_name = "N", requires = "semaphore")]
    pub slots: Option<usize>,
    /// The Redis lock to inspect.
    #[arg(long, value_name = "NAME", conflicts_with = "path")]
    pub redis: Option<String>,
    /// The Redis server (default: $REDIS_URL, else redis://127.0.0.1:6379/;
    /// redis+cluster:// and redis+sentinel:// URLs as for redis-lock).
    #[arg(long, value_name = "URL", requires = "redis")]
    pub url: Option<String>,
    /// The server is a node of a Redis Cluster (see redis-lock --cluster).
    #[arg(long, requires = "redis")]
    pub cluster: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// Print nothing: only the exit status tells.
    #[arg(short, long, conflicts_with = "json")]
    pub quiet: bool,
    /// The lock file.
    #[arg(required_unless_present_any = ["semaphore", "redis"])]
    pub path: Option<PathBuf>,
}

/// `portalocker completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// What the plugin host does (`run`, `compose`).
#[derive(Debug)]
pub enum PluginCommand {
    /// `portalocker run`.
    Run(RunArgs),
    /// `portalocker compose`.
    Compose(ComposeArgs),
}

/// `portalocker compose`.
#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// A middleware component to put in front of the plugin. Repeatable:
    /// the first is closest to the plugin.
    #[arg(long = "with", value_name = "MIDDLEWARE.wasm")]
    pub with: Vec<PathBuf>,
    /// A provider component to serve the lock interfaces under the plugin
    /// (and its middleware) instead of a portalocker host.
    #[arg(long, value_name = "PROVIDER.wasm")]
    pub provider: Option<PathBuf>,
    /// A setting for the middleware (namespace.directory=/jobs/a,
    /// namespace.prefix=a., trace.file=/logs/locks.jsonl). Repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Where to write the composed component.
    #[arg(short, long, value_name = "OUT.wasm")]
    pub output: PathBuf,
    /// The plugin component.
    pub plugin: PathBuf,
}

/// `portalocker redis-lock`.
#[derive(Debug, Args)]
pub struct RedisLockArgs {
    /// The Redis server (default: $REDIS_URL, else redis://127.0.0.1:6379/).
    /// A redis+cluster://host:port[,host:port...] URL takes the lock on a
    /// Redis Cluster, a redis+sentinel://host:port[,...]/SERVICE URL on the
    /// master a Sentinel group names.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The server is a node of a Redis Cluster (7.0+): take the lock on the
    /// cluster, on the shard of its hash slot (sharded pub/sub; not
    /// compatible with Python's portalocker). The same as a
    /// redis+cluster:// URL.
    #[arg(long)]
    pub cluster: bool,
    /// Take a shared lock instead of an exclusive one.
    #[arg(short, long)]
    pub shared: bool,
    /// Draw a fencing token for the command (shared locks too).
    #[arg(long)]
    pub fencing: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// The lock name (the Redis channel).
    pub name: String,
    /// The command to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `portalocker run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Grant HOST to the plugin, seen as GUEST (default: the same path), for
    /// its files and its locks. Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,
    /// Set an environment variable in the plugin. Repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// The most locks and semaphore permits the plugin may hold at once.
    #[arg(long, value_name = "N", default_value_t = portalocker_wasmtime::DEFAULT_MAX_HELD)]
    pub max_locks: usize,
    /// The most lock handles (locks, semaphores, guards and permits) the
    /// plugin may have open at once.
    #[arg(long, value_name = "N", default_value_t = portalocker_wasmtime::DEFAULT_MAX_HANDLES)]
    pub max_handles: usize,
    /// The longest the plugin may wait for a lock.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub max_wait: Option<Duration>,
    /// Stop the plugin after this much fuel (roughly, wasm instructions).
    #[arg(long, value_name = "N", conflicts_with = "timeout")]
    pub fuel: Option<u64>,
    /// Stop the plugin after SECS seconds of wall-clock time, whatever it is
    /// doing (computing, sleeping, reading, waiting for a lock).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub timeout: Option<Duration>,
    /// Let the plugin take Redis locks on this server (it never chooses one).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// The namespace of the plugin's Redis lock names: its lock NAME is the
    /// Redis lock PREFIX+NAME.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "plugin:",
        requires = "redis"
    )]
    pub redis_prefix: String,
    /// Do not use or fill the compiled-plugin cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Compose this middleware in front of the plugin first. Repeatable:
    /// the first is closest to the plugin.
    #[arg(long = "with", value_name = "MIDDLEWARE.wasm")]
    pub with: Vec<PathBuf>,
    /// A setting for the middleware (see `compose`). Repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", requires = "with")]
    pub config: Vec<String>,
    /// The plugin component.
    pub plugin: PathBuf,
    /// Arguments for the plugin, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// How long to wait, and what to say, shared by every subcommand.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Fail at once instead of waiting if the lock is held.
    #[arg(short = 'n', long = "nonblock", conflicts_with = "timeout")]
    pub nonblock: bool,
    /// Give up after SECS seconds (fractions allowed; 0 is the same as -n).
    #[arg(short = 'w', long = "timeout", value_name = "SECS", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub timeout: Option<Duration>,
    /// The exit status when the lock could not be taken.
    #[arg(
        short = 'E',
        long = "conflict-exit-code",
        value_name = "N",
        default_value_t = 1
    )]
    pub conflict_exit_code: u8,
    /// Say nothing while waiting or on conflict.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `portalocker lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Take a shared lock instead of an exclusive one.
    #[arg(short, long)]
    pub shared: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// The lock file (or an existing directory).
    pub path: PathBuf,
    /// The command to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `portalocker semaphore`.
#[derive(Debug, Args)]
pub struct SemaphoreArgs {
    /// How many holders at once.
    #[arg(long, value_name = "N")]
    pub slots: usize,
    /// The semaphore's name: the slot files' prefix.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The directory of the slot files (default: the system temp directory).
    #[arg(long = "dir", value_name = "DIR")]
    pub directory: Option<PathBuf>,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// The command to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Parse a timeout in seconds: finite, not negative, not absurd.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "the timeout must be a finite number of seconds >= 0, not {text}"
        ));
    }
    if secs > MAX_TIMEOUT_SECS {
        return Err(format!(
            "a timeout of {text} seconds is absurd (the limit is {MAX_TIMEOUT_SECS})"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeouts_are_validated() {
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
        for bad in ["-1", "nan", "inf", "1e300", "soon", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
