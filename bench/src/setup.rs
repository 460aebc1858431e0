//! The peers the benchmark needs, checked before anything runs: a missing
//! one is an error that says how to install it (`scripts/bench.sh`
//! installs them all).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The Python with portalocker 4.4.2, redis-py and filelock.
pub fn python() -> PathBuf {
    portalocker_tests::python()
}

/// The Python peers' program.
pub fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/peer.py")
}

/// The `portalocker` CLI built beside this binary.
pub fn portalocker_cli() -> PathBuf {
    crate::procs::this_binary().with_file_name("portalocker")
}

/// Check every prerequisite.
///
/// # Errors
///
/// Naming what is missing and how to install it.
pub fn check() -> Result<()> {
    let hint = "run scripts/bench.sh, which installs the peers (scripts/setup.sh plus filelock)";
    let output = Command::new(python())
        .args([
            "-c",
            "import portalocker, redis, filelock; print(portalocker.__version__)",
        ])
        .output()
        .with_context(|| format!("running {:?}; {hint}", python()))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || version != "4.4.2" {
        bail!(
            "{:?} lacks portalocker 4.4.2, redis-py or filelock ({}); {hint}",
            python(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    for (tool, package) in [("redis-server", "redis-server"), ("flock", "util-linux")] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            bail!("{tool} is missing; install it (Debian: apt-get install {package})");
        }
    }
    if !portalocker_cli().exists() {
        bail!(
            "{:?} is missing; build it with `cargo build --release --workspace --bins`",
            portalocker_cli()
        );
    }
    Ok(())
}

/// What the figures were taken on.
pub fn machine() -> BTreeMap<&'static str, String> {
    let mut machine = BTreeMap::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    machine.insert("cpu", cpu);
    machine.insert(
        "cores",
        std::thread::available_parallelism().map_or("?".into(), |n| n.to_string()),
    );
    let run = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    machine.insert("kernel", run("uname", &["-r"]));
    machine.insert(
        "redis",
        run("redis-server", &["--version"])
            .split_whitespace()
            .find(|w| w.starts_with("v="))
            .unwrap_or("v=?")
            .trim_start_matches("v=")
            .to_owned(),
    );
    machine.insert("python", run(&python().to_string_lossy(), &["--version"]));
    machine
}
