//! Build the guest test programs (`programs/`) for wasm32-wasip2, as
//! wasmtime's test-programs crate does, and describe them in
//! `$OUT_DIR/programs.rs`: a `&str` constant with the path of each
//! component and a `foreach_program!` macro listing them.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let programs = manifest_dir.join("programs");
    let root = manifest_dir.parent().unwrap();
    for watched in [
        programs.join("src"),
        programs.join("aio/src"),
        programs.join("aio/Cargo.toml"),
        programs.join("Cargo.toml"),
        programs.join("Cargo.lock"),
        root.join("wit"),
        root.join("guest/portalocker-guest/src"),
        root.join("guest/portalocker-guest/Cargo.toml"),
        root.join("guest/middleware"),
        root.join("guest/provider"),
        root.join("guest/examples/async-tasks"),
        root.join("guest/Cargo.toml"),
        root.join("guest/Cargo.lock"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let target_dir = out_dir.join("wasm");
    assert!(
        build_wasm(&programs.join("Cargo.toml"), &["--workspace"], &target_dir),
        "building the guest test programs for wasm32-wasip2 failed; if the target is missing, \
         install it with `rustup target add wasm32-wasip2` (scripts/setup.sh does)"
    );
    // The middleware, the test provider and the async example, as users
    // build them.
    let packages: Vec<&str> = COMPONENTS.iter().map(|(package, _)| *package).collect();
    assert!(
        build_wasm(&root.join("guest/Cargo.toml"), &packages, &target_dir),
        "building the middleware components for wasm32-wasip2 failed"
    );

    let wasm_dir = target_dir.join("wasm32-wasip2/release");
    let mut names: Vec<String> = fs::read_dir(programs.join("src/bin"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut code = String::new();
    for name in &names {
        let wasm = wasm_dir.join(format!("{name}.wasm"));
        assert!(
            Path::new(&wasm).exists(),
            "{} was not built",
            wasm.display()
        );
        writeln!(code, "/// The `{name}` guest program.").unwrap();
        writeln!(
            code,
            "pub const {}: &str = {:?};",
            name.to_uppercase(),
            wasm.display().to_string()
        )
        .unwrap();
    }
    writeln!(code, "/// Call `$mac!(name)` for every guest program.").unwrap();
    writeln!(
        code,
        "#[macro_export]\nmacro_rules! foreach_program {{ ($mac:ident) => {{"
    )
    .unwrap();
    for name in &names {
        writeln!(code, "    $mac!({name});").unwrap();
    }
    writeln!(code, "}} }}").unwrap();
    fs::write(out_dir.join("programs.rs"), code).unwrap();

    let mut code = String::new();
    for (package, constant) in COMPONENTS {
        let wasm = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        writeln!(code, "/// The `{package}` component.").unwrap();
        writeln!(
            code,
            "pub const {constant}: &str = {:?};",
            wasm.display().to_string()
        )
        .unwrap();
    }
    // The 0.2.0 scenarios: one async component (a cdylib), not a program.
    let aio = wasm_dir.join("portalocker_test_aio.wasm");
    assert!(aio.exists(), "{} was not built", aio.display());
    writeln!(
        code,
        "/// The `portalocker:locks@0.2.0` scenarios component."
    )
    .unwrap();
    writeln!(
        code,
        "pub const AIO: &str = {:?};",
        aio.display().to_string()
    )
    .unwrap();
    fs::write(out_dir.join("components.rs"), code).unwrap();
}

/// The guest workspace's components the tests compose: package, constant.
const COMPONENTS: [(&str, &str); 5] = [
    ("portalocker-namespace", "NAMESPACE"),
    ("portalocker-trace", "TRACE"),
    ("portalocker-lockdep", "LOCKDEP"),
    ("portalocker-test-provider", "TEST_PROVIDER"),
    ("async-tasks", "ASYNC_TASKS"),
];

/// `cargo build --release --locked --target wasm32-wasip2` of `packages`
/// (the root package when empty, all with `--workspace`) in the workspace
/// of `manifest`, into `target_dir`;
/// whether it succeeded.
fn build_wasm(manifest: &Path, packages: &[&str], target_dir: &Path) -> bool {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .args(packages.iter().flat_map(|package| match *package {
            "--workspace" => vec![*package],
            package => vec!["-p", package],
        }))
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("running cargo to build wasm components")
        .success()
}
