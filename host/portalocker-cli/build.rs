//! Link settings for the `portalocker` binary.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // Pack the binary's ~32,000 relative relocations (wasmtime's tables)
        // into DT_RELR, which the dynamic loader applies several times
        // faster: a whole `portalocker lock` call is a process start, and
        // relocating was a sixth of it. The binary stays position
        // independent (ASLR matters for a host of untrusted plugins).
        // glibc 2.36 and binutils 2.38 or later.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
