//! Composition through the product: `portalocker compose` and `portalocker
//! run --with`, with the middleware components (trace, namespace, lockdep)
//! and the test provider built from `guest/`, on real locks.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{cli, lockworker};
use portalocker::{Error, Lock, Wait};
use portalocker_tests::components::{AIO, LOCKDEP, NAMESPACE, TEST_PROVIDER, TRACE};
use portalocker_tests::programs::{
    FILE_LOCK_BASIC, FILE_LOCK_COUNTER, LOCK_NAMES, LOCK_ORDERS, LOCK_SEMANTICS,
};
use portalocker_tests::read_counter;
use portalocker_tests::redis_server::RedisServer;

/// `portalocker run` with a private plugin cache.
fn run(cache: &Path) -> Command {
    let mut command = cli();
    command.env("PORTALOCKER_CACHE_DIR", cache).arg("run");
    command
}

fn grant(dir: &Path) -> String {
    format!("{}::/data", dir.display())
}

#[test]
fn trace_logs_every_acquisition_and_release_while_the_lock_still_excludes_natives() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let native = lockworker()
        .arg("count")
        .arg(dir.path().join("c.lock"))
        .arg(dir.path().join("c"))
        .arg("50")
        .spawn()
        .unwrap();
    let since_epoch = || {
        let now = std::time::SystemTime::now();
        now.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let started = since_epoch();
    let out = run(cache.path())
        .args(["--with", TRACE, "--config", "trace.file=/data/trace.jsonl"])
        .args(["--dir", &grant(dir.path()), FILE_LOCK_COUNTER, "--"])
        .args(["/data/c.lock", "/data/c", "50"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = since_epoch();
    assert!(native.wait_with_output().unwrap().status.success());
    assert_eq!(read_counter(&dir.path().join("c")).unwrap(), 100);

    let trace = std::fs::read_to_string(dir.path().join("trace.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = trace
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    assert_eq!(lines.len(), 100, "{trace}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["lock"], "file-lock:/data/c.lock", "{line}");
        assert_eq!(line["mode"], "exclusive", "{line}");
        // `at` is the wall clock carried by the monotonic one: inside the
        // run (a millisecond of slack for the float and the clocks).
        let at = line["at"].as_f64().unwrap();
        assert!(
            (started - 1e-3..=ended + 1e-3).contains(&at),
            "{started} {line} {ended}"
        );
        if i % 2 == 0 {
            assert_eq!(line["event"], "acquire", "{line}");
            assert_eq!(line["wait"], "forever", "{line}");
            assert_eq!(line["outcome"], "granted", "{line}");
            let waited = line["waited_us"].as_f64().unwrap();
            assert!((0.0..60e6).contains(&waited), "{line}");
        } else {
            assert_eq!(line["event"], "release", "{line}");
            assert_eq!(line["ending"], "released", "{line}");
            assert_eq!(line["outcome"], "ok", "{line}");
            let held = line["held_us"].as_f64().unwrap();
            assert!((0.0..60e6).contains(&held), "{line}");
            // The hold ran from the grant's `at` to the release's.
            let granted = lines[i - 1]["at"].as_f64().unwrap();
            let between = (at - granted) * 1e6;
            assert!(
                (between - held).abs() < 1e3,
                "held {held} µs, {between} µs apart: {line}"
            );
        }
    }
}

#[test]
fn trace_logs_refusals_and_drops_to_stderr_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let _held = Lock::new(dir.path().join("busy.lock")).acquire().unwrap();
    let out = run(cache.path())
        .args([
            "--with",
            TRACE,
            "--dir",
            &grant(dir.path()),
            LOCK_NAMES,
            "--",
        ])
        .args(["file:/data/busy.lock", "file:/data/free.lock"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["lock"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        summary,
        [
            s("acquire", "file-lock:/data/busy.lock", "would-block"),
            s("acquire", "file-lock:/data/free.lock", "granted"),
            s("release", "file-lock:/data/free.lock", "ok"),
        ]
    );
    assert_eq!(events[0]["wait"], "none");
    assert_eq!(events[2]["ending"], "dropped");
}

#[test]
fn namespace_confines_paths_to_its_directory_and_names_to_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("team-a")).unwrap();
    let server = RedisServer::start();
    let specs = [
        "file:x.lock",
        "file:/data/team-a/y.lock",
        "file:/data/z.lock",
        "file:../z.lock",
        "file:/data/team-a/../z.lock",
        "sem:pool:/data/team-a",
        "sem:pool:/data",
        "redis:reports",
    ];
    let mut plugin = run(cache.path())
        .args(["--with", NAMESPACE])
        .args(["--config", "namespace.directory=/data/team-a"])
        .args(["--config", "namespace.prefix=team-a."])
        .args([
            "--dir",
            &grant(dir.path()),
            "--redis",
            &server.url(),
            LOCK_NAMES,
            "--",
        ])
        .args(specs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = Vec::new();
    let mut stdout = BufReader::new(plugin.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert_ne!(
            stdout.read_line(&mut line).unwrap(),
            0,
            "ended early: {said:?}"
        );
        if line.trim() == "held" {
            break;
        }
        said.push(line.trim().to_owned());
    }
    let outcome = |spec: &str| {
        said.iter()
            .find_map(|l| l.strip_prefix(&format!("{spec}: ")))
            .unwrap_or_else(|| panic!("{spec} not reported: {said:?}"))
            .to_owned()
    };
    for inside in [
        "file:x.lock",
        "file:/data/team-a/y.lock",
        "sem:pool:/data/team-a",
        "redis:reports",
    ] {
        assert_eq!(outcome(inside), "ok", "{said:?}");
    }
    for outside in [
        "file:/data/z.lock",
        "file:../z.lock",
        "file:/data/team-a/../z.lock",
        "sem:pool:/data",
    ] {
        assert!(
            outcome(outside).starts_with("Error::AccessDenied("),
            "{outside}: {said:?}"
        );
    }
    // What the plugin holds is where the namespace put it, and it is held.
    for file in [
        "team-a/x.lock",
        "team-a/y.lock",
        "team-a/team-a.pool.00.lock",
    ] {
        let busy = Lock::new(dir.path().join(file)).wait(Wait::NONE).acquire();
        assert!(
            matches!(busy, Err(Error::WouldBlock { .. })),
            "{file}: {busy:?}"
        );
    }
    assert!(!dir.path().join("z.lock").exists());
    let busy = lockworker()
        .args(["redis-try", &server.url(), "plugin:team-a.reports"])
        .status()
        .unwrap();
    assert_eq!(
        busy.code(),
        Some(3),
        "the Redis lock is not held under the prefix"
    );
    plugin.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert!(plugin.wait().unwrap().success());

    // A misspelt setting is refused before anything runs.
    let out = run(cache.path())
        .args([
            "--with",
            NAMESPACE,
            "--config",
            "namespace.dirctory=/data/team-a",
        ])
        .args(["--dir", &grant(dir.path()), LOCK_NAMES, "--", "file:x.lock"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("the namespace middleware has no setting `namespace.dirctory`")
            && stderr.contains("namespace (directory, prefix)"),
        "{stderr}"
    );

    // Backslashes (separators on Windows), and no prefix: refused.
    let out = run(cache.path())
        .args([
            "--with",
            NAMESPACE,
            "--config",
            "namespace.directory=/data/team-a",
        ])
        .args(["--config", "namespace.prefix="])
        .args([
            "--dir",
            &grant(dir.path()),
            "--redis",
            &server.url(),
            LOCK_NAMES,
            "--",
        ])
        .args([
            "file:..\\z.lock",
            "sem:pool:/data/team-a",
            "redis:reports",
            "file:ok.lock",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for refused in [
        "file:..\\z.lock: Error::AccessDenied(",
        "sem:pool:/data/team-a: Error::AccessDenied(",
        "redis:reports: Error::AccessDenied(",
    ] {
        assert!(stdout.contains(refused), "{refused}: {stdout}");
    }
    assert!(stdout.contains("file:ok.lock: ok"), "{stdout}");
}

#[test]
fn lockdep_refuses_an_inverted_order_and_allows_a_consistent_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = run(cache.path())
        .args([
            "--with",
            LOCKDEP,
            "--dir",
            &grant(dir.path()),
            LOCK_ORDERS,
            "--",
        ])
        .args(["/data/a.lock", "/data/b.lock"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(&lines[..2], ["A,B: ok", "A,B: ok"], "{stdout}");
    assert!(
        lines[2].starts_with("B,A: Error::Other(\"lockdep: taking file-lock:/data/a.lock while holding file-lock:/data/b.lock inverts"),
        "{stdout}"
    );
    assert_eq!(lines[3], "B,try A: ok", "{stdout}");
    assert!(
        lines[4].starts_with("A,A: Error::Other(\"lockdep: taking file-lock:/data/a.lock while holding it would wait on itself"),
        "{stdout}"
    );
    // The refusal took nothing: both locks are free.
    for file in ["a.lock", "b.lock"] {
        drop(
            Lock::new(dir.path().join(file))
                .wait(Wait::NONE)
                .acquire()
                .unwrap(),
        );
    }
}

#[test]
fn middleware_stack_in_one_composed_plugin() {
    // trace in front of namespace in front of the host: the trace shows
    // the names as the plugin gave them, the locks land in the namespace.
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ns")).unwrap();
    let composed = dir.path().join("composed.wasm");
    let out = cli()
        .args([
            "compose", "--with", TRACE, "--with", NAMESPACE, "--with", LOCKDEP,
        ])
        .args([
            "--config",
            "namespace.directory=/data/ns",
            "--config",
            "trace.file=/data/t.jsonl",
        ])
        .arg("-o")
        .arg(&composed)
        .arg(LOCK_ORDERS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(cache.path())
        .args(["--dir", &grant(dir.path())])
        .arg(&composed)
        .args(["--", "a.lock", "b.lock"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("B,A: Error::Other(\"lockdep: taking file-lock:/data/ns/a.lock"),
        "{stdout}"
    );
    let trace = std::fs::read_to_string(dir.path().join("t.jsonl")).unwrap();
    assert!(trace.contains("\"lock\":\"file-lock:a.lock\""), "{trace}");
    assert!(
        trace.contains("\"outcome\":\"other: lockdep: taking"),
        "{trace}"
    );
    assert!(dir.path().join("ns/a.lock").exists() && !dir.path().join("a.lock").exists());
}

#[test]
fn the_test_provider_runs_a_plugin_without_host_locks() {
    let dir = tempfile::tempdir().unwrap();
    let composed = dir.path().join("tested.wasm");
    let out = cli()
        .args(["compose", "--provider", TEST_PROVIDER, "-o"])
        .arg(&composed)
        .arg(LOCK_SEMANTICS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A plain WASI runtime, with no portalocker host: nothing to link but
    // WASI, and the plugin's own checks pass.
    use wasmtime::component::{Component, Linker, ResourceTable};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
    struct Plain(WasiCtx, ResourceTable);
    impl WasiView for Plain {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.0,
                table: &mut self.1,
            }
        }
    }
    let engine = wasmtime::Engine::default();
    let component = Component::from_file(&engine, &composed).unwrap();
    let imports: Vec<String> = component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    assert!(
        imports.iter().all(|name| !name.starts_with("portalocker:")),
        "{imports:?}"
    );
    let mut linker: Linker<Plain> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let stdout = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(4096);
    let wasi = WasiCtx::builder()
        .args(&["lock-semantics", "/nowhere", "redis"])
        .stdout(stdout.clone())
        .inherit_stderr()
        .build();
    let mut store = wasmtime::Store::new(&engine, Plain(wasi, ResourceTable::new()));
    let command =
        wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)
            .unwrap();
    let ran = command.wasi_cli_run().call_run(&mut store).unwrap();
    assert_eq!(ran, Ok(()));
    assert_eq!(String::from_utf8_lossy(&stdout.contents()), "ok\n");
}

#[test]
fn composition_errors_name_the_component_and_the_interface() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.wasm");
    let compose = |args: &[&str]| {
        let out = cli()
            .arg("compose")
            .args(args)
            .arg("-o")
            .arg(&out_file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A middleware that serves nothing the plugin imports.
    let (code, stderr) = compose(&["--with", FILE_LOCK_BASIC, LOCK_ORDERS]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains(&format!("{FILE_LOCK_BASIC} does not export portalocker:locks/file-lock@0.1.0, which {LOCK_ORDERS} imports")),
        "{stderr}"
    );
    // 0.1.0 middleware in front of a 0.2.0 plugin: a version mismatch,
    // never a silent pass-through.
    let (code, stderr) = compose(&["--with", TRACE, AIO]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("not a version compatible with portalocker:locks/file-lock@0.2.0"),
        "{stderr}"
    );
    // Not a component at all.
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "not wasm").unwrap();
    let (code, stderr) = compose(&["--with", text.to_str().unwrap(), LOCK_ORDERS]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("is not a usable component"), "{stderr}");
    // Settings nobody reads, and a malformed one.
    let (code, stderr) = compose(&[
        "--provider",
        TEST_PROVIDER,
        "--config",
        "trace.file=/x",
        LOCK_ORDERS,
    ]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("no middleware given reads `trace.file`"),
        "{stderr}"
    );
    let (code, stderr) = compose(&[
        "--with",
        LOCKDEP,
        "--config",
        "namespace.directory=/x",
        LOCK_ORDERS,
    ]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("no middleware given reads `namespace.directory` (the middleware given read: lockdep (none))"),
        "{stderr}"
    );
    let (code, stderr) = compose(&["--with", TRACE, "--config", "novalue", LOCK_ORDERS]);
    assert_eq!(code, Some(64), "{stderr}");
    // Nothing to compose; a missing input.
    let (code, _) = compose(&[LOCK_ORDERS]);
    assert_eq!(code, Some(65));
    let (code, _) = compose(&["--with", "/nonexistent.wasm", LOCK_ORDERS]);
    assert_eq!(code, Some(66));
    assert!(!out_file.exists(), "a failed composition wrote its output");
}
