//! The plugins in other languages (`guest/examples/{python,js,c}`), built
//! by the tools a user installs from the registries this project reaches:
//! componentize-py from PyPI, componentize-js from npm, Debian's clang and
//! wasi-libc with wit-bindgen's C bindings and the preview-1 adapter from
//! crates.io. Each build is kept under the target directory beside a stamp
//! of its inputs, so it is redone only when they change. A missing tool
//! panics with how to install it: these tests never skip.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the repository")
        .to_path_buf()
}

/// Where builds go: `<target>/<profile>/languages`.
fn out_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps");
    profile.join("languages")
}

/// A digest of the files under `paths` (recursively, symlinks followed)
/// and of `extra`.
fn digest(paths: &[PathBuf], extra: &str) -> String {
    fn walk(path: &Path, hasher: &mut DefaultHasher) {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
                .map(|entry| entry.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n != "node_modules" && n != "__pycache__")
                })
                .collect();
            entries.sort();
            for entry in entries {
                walk(&entry, hasher);
            }
        } else if let Ok(bytes) = std::fs::read(path) {
            path.hash(hasher);
            bytes.hash(hasher);
        }
    }
    let mut hasher = DefaultHasher::new();
    for path in paths {
        walk(path, &mut hasher);
    }
    extra.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Build `output` with `build` unless its stamp says the inputs are the
/// same as last time.
fn cached(name: &str, inputs: &[PathBuf], tool: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let dir = out_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("conformance.wasm");
    let stamp = dir.join("stamp");
    let want = digest(inputs, tool);
    if output.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&want) {
        return output;
    }
    let _ = std::fs::remove_file(&stamp);
    build(&output);
    assert!(
        output.exists(),
        "building the {name} plugin made no {}",
        output.display()
    );
    std::fs::write(&stamp, want).unwrap();
    output
}

/// Run `command`; panic with its output (and `hint` when it could not be
/// started) unless it succeeds.
fn must(command: &mut Command, hint: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}\n{hint}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}\nstdout: {}\nstderr: {}\n{hint}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The WIT every non-Rust plugin targets: `portalocker:locks/plugin` plus
/// `wasi:cli/command` (`guest/wit-command`).
fn wit_command() -> PathBuf {
    root().join("guest/wit-command")
}

const SETUP_HINT: &str = "scripts/setup.sh installs the plugin toolchains (componentize-py in the \
     Python venv, componentize-js with `npm ci` in guest/examples/js, clang, lld and wasi-libc \
     from Debian)";

/// The Python conformance plugin (componentize-py 0.25.1).
pub fn python() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let tool = crate::python()
            .parent()
            .expect("the venv's bin directory")
            .join("componentize-py");
        let version = must(Command::new(&tool).arg("--version"), SETUP_HINT);
        let sources = root().join("guest/examples/python");
        cached(
            "python",
            &[sources.clone(), wit_command()],
            &version,
            |output| {
                must(
                    Command::new(&tool)
                        .arg("-d")
                        .arg(wit_command())
                        .args(["-w", "plugin-command", "componentize", "conformance", "-p"])
                        .arg(&sources)
                        .arg("-o")
                        .arg(output),
                    SETUP_HINT,
                );
            },
        )
    })
}

/// The JavaScript conformance plugin (componentize-js, StarlingMonkey).
pub fn javascript() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let sources = root().join("guest/examples/js");
        let tool = sources.join("node_modules/.bin/componentize-js");
        let version = must(Command::new(&tool).arg("--version"), SETUP_HINT);
        cached(
            "js",
            &[sources.clone(), wit_command()],
            &version,
            |output| {
                // No wasi:http: the host links WASI's command world only.
                must(
                    Command::new(&tool)
                        .arg("--wit")
                        .arg(wit_command())
                        .args([
                            "-n",
                            "plugin-command",
                            "-d",
                            "http",
                            "-d",
                            "fetch-event",
                            "-o",
                        ])
                        .arg(output)
                        .arg(sources.join("conformance.js")),
                    SETUP_HINT,
                );
            },
        )
    })
}

/// The C conformance plugin: bindings generated by wit-bindgen's C
/// generator (the library behind `wit-bindgen c`) for the
/// `portalocker:locks/plugin` world, the program and the guest SDK header
/// built by Debian's clang against wasi-libc with the bindings' object
/// file (which carries the world): a preview-1 core module whose `main` is
/// the command, made a component with wasmtime 48's preview-1 command
/// adapter (from crates.io).
pub fn c() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let sources = root().join("guest/examples/c");
        let version = must(Command::new("clang").arg("--version"), SETUP_HINT);
        cached(
            "c",
            &[sources.clone(), root().join("wit")],
            &version,
            |output| {
                let dir = output.parent().unwrap();
                let (mut resolve, world) = plugin_world();
                let mut files = wit_bindgen_core::Files::default();
                let mut generator = wit_bindgen_c::Opts::default().build();
                generator
                    .generate(&mut resolve, world, &mut files)
                    .expect("generating the C bindings");
                for (name, bytes) in files.iter() {
                    std::fs::write(dir.join(name), bytes).unwrap();
                }
                let core = dir.join("conformance.core.wasm");
                must(
                    Command::new("clang")
                        .args(["--target=wasm32-wasi", "-O2", "-Wall", "-Werror"])
                        .arg("-I")
                        .arg(dir)
                        .arg(sources.join("conformance.c"))
                        .arg(dir.join("plugin.c"))
                        .arg(dir.join("plugin_component_type.o"))
                        .arg("-o")
                        .arg(&core),
                    SETUP_HINT,
                );
                componentize(&core, output);
            },
        )
    })
}

/// `wit/`, and its `plugin` world.
fn plugin_world() -> (
    wit_bindgen_core::wit_parser::Resolve,
    wit_bindgen_core::wit_parser::WorldId,
) {
    let mut resolve = wit_bindgen_core::wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(root().join("wit")).expect("reading wit/");
    let world = resolve
        .select_world(&[package], Some("plugin"))
        .expect("the plugin world");
    (resolve, world)
}

/// Make the preview-1 core module `core` (carrying its world in the
/// custom section wit-bindgen's object file adds) a component: adapt WASI
/// preview 1 to 0.2 with the command adapter, which exports `wasi:cli/run`
/// running `main`.
fn componentize(core: &Path, output: &Path) {
    let module = std::fs::read(core).unwrap();
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| {
            encoder.adapter(
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
            )
        })
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("making {} a component: {e:?}", core.display()));
    std::fs::write(output, component).unwrap();
}
