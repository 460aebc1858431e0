//! Helpers shared by the core's integration tests.

/// The permission bits a plain `open()` gives a new file here:
/// `0o666 & !umask`, the umask read without changing it.
#[cfg(target_os = "linux")]
pub fn plain_open_mode() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    0o666 & !umask
}
