//! Whole CLI calls, as users run them: `portalocker lock PATH -- true`
//! beside util-linux `flock PATH true`, and `portalocker redis-lock NAME --
//! true` per call.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Result, bail};

use super::Bench;
use crate::report::Better;

fn call(command: &mut Command) -> Result<()> {
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// Per-call times of the CLIs, interleaved call by call.
pub fn calls(b: &mut Bench<'_>) -> Result<()> {
    let n = b.options.scale(200, 30);
    let cli = crate::setup::portalocker_cli();
    let path = b.path("cli.lock");
    let name = b.name("cli");
    let url = b.url();
    for _ in 0..b.options.runs {
        let mut times = [0f64; 3];
        for _ in 0..n {
            let mut flock = Command::new("flock");
            flock.arg(&path).arg("true");
            let mut lock = Command::new(&cli);
            lock.arg("lock").arg(&path).args(["--", "true"]);
            let mut redis_lock = Command::new(&cli);
            redis_lock.args(["redis-lock", "--url", &url, &name, "--", "true"]);
            for (i, command) in [flock, lock, redis_lock].iter_mut().enumerate() {
                let started = Instant::now();
                call(command)?;
                times[i] += started.elapsed().as_secs_f64() * 1e3;
            }
        }
        let per = |t: f64| t / n as f64;
        b.report.add(
            "CLI",
            "flock-cli",
            "lock call",
            "ms",
            Better::Lower,
            per(times[0]),
            true,
            "flock PATH true",
        );
        b.report.add(
            "CLI",
            "ours-native",
            "lock call",
            "ms",
            Better::Lower,
            per(times[1]),
            true,
            "portalocker lock PATH -- true",
        );
        b.report.add(
            "CLI",
            "ours-native",
            "redis-lock call",
            "ms",
            Better::Lower,
            per(times[2]),
            true,
            "portalocker redis-lock NAME -- true",
        );
    }
    Ok(())
}
