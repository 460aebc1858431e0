//! Plugins in Python, JavaScript and C, built by their own tools
//! (`portalocker_tests::languages`), each run through `portalocker run` in
//! the shared conformance scenario (`guest/examples/README.md`): a file
//! lock, a semaphore permit and a fenced Redis lock, incrementing shared
//! counters while a native `portalocker lock` loop, a Rust plugin, a
//! Python portalocker program and a native Redis holder do the same. The
//! counters must come out exact.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Instant;

use common::{cli, lockworker, pyworker};
use portalocker_tests::programs::FILE_LOCK_COUNTER;
use portalocker_tests::read_counter;
use portalocker_tests::redis_server::RedisServer;

const N: u32 = 25;

/// `portalocker run` with a grant of `dir` as `/data`, a Redis grant and
/// the plugin cache `cache`.
fn run(cache: &Path, dir: &Path, server: &RedisServer, plugin: &Path) -> Command {
    let mut command = cli();
    command
        .env("PORTALOCKER_CACHE_DIR", cache)
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/data", dir.display()))
        .args(["--redis", &server.url(), "--max-wait", "120"])
        .arg(plugin)
        .arg("--");
    command
}

fn wait_ok(name: &str, child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn conformance(language: &str, plugin: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = RedisServer::start();

    // Start-up: a run with nothing to count, from an empty plugin cache
    // (the plugin is compiled), then again (loaded from the cache).
    let mut starts = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let out = run(cache.path(), dir.path(), &server, plugin)
            .args(["/data/c.lock", "/data/start", "0", "/data"])
            .output()
            .unwrap();
        starts.push(started.elapsed());
        assert!(
            out.status.success(),
            "{language}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{language}");
    }
    eprintln!(
        "{language} plugin ({} KiB): first start {:.2} s (compiling), second {:.3} s (cached)",
        std::fs::metadata(plugin).unwrap().len() / 1024,
        starts[0].as_secs_f64(),
        starts[1].as_secs_f64()
    );

    let lock = dir.path().join("c.lock");
    let data = dir.path().join("c");
    let redis_data = dir.path().join("r");
    let spawn = |command: &mut Command| {
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ours = spawn(run(cache.path(), dir.path(), &server, plugin).args([
        "/data/c.lock",
        "/data/c",
        &N.to_string(),
        "/data",
        "conformance",
        "/data/r",
    ]));
    let native = spawn(Command::new("sh").arg("-c").arg(format!(
        "i=0; while [ $i -lt {N} ]; do \"$0\" lock \"$1\" -- sh -c 'v=$(cat \"$0\" 2>/dev/null); echo $((${{v:-0}} + 1)) > \"$0\"' \"$2\" || exit 1; i=$((i + 1)); done"
    )).arg(cli().get_program()).arg(&lock).arg(&data));
    let rust_plugin = spawn(
        run(
            cache.path(),
            dir.path(),
            &server,
            Path::new(FILE_LOCK_COUNTER),
        )
        .args(["/data/c.lock", "/data/c", &N.to_string()]),
    );
    let python = spawn(
        pyworker()
            .arg("count")
            .arg(&lock)
            .arg(&data)
            .arg(N.to_string()),
    );
    let redis_native = spawn(
        lockworker()
            .args(["redis-count", &server.url(), "plugin:conformance"])
            .arg(&redis_data)
            .arg(N.to_string()),
    );
    wait_ok(&format!("the {language} plugin"), ours);
    wait_ok("the portalocker lock loop", native);
    wait_ok("the Rust plugin", rust_plugin);
    wait_ok("the Python portalocker program", python);
    wait_ok("the native Redis holder", redis_native);
    assert_eq!(
        read_counter(&data).unwrap(),
        u64::from(4 * N),
        "{language}: an increment was lost"
    );
    assert_eq!(
        read_counter(&redis_data).unwrap(),
        u64::from(2 * N),
        "{language}: a Redis increment was lost"
    );
    // The permit's slot file is portalocker's.
    assert!(dir.path().join("conformance.00.lock").exists());
}

#[test]
fn a_python_plugin_conforms() {
    conformance("Python", portalocker_tests::languages::python());
}

#[test]
fn a_javascript_plugin_conforms() {
    conformance("JavaScript", portalocker_tests::languages::javascript());
}

#[test]
fn a_c_plugin_conforms() {
    conformance("C", portalocker_tests::languages::c());
}
