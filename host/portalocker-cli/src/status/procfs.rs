//! Linux: who holds a file lock, read from `/proc` without touching the
//! lock. `/proc/locks` lists every lock and every blocked waiter with the
//! PID that took it; each process's `fdinfo` shows the locks held through
//! its descriptors, so a lock inherited by a child (as `portalocker lock --
//! CMD` hands it on) names every process that holds it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

use super::file::{Kind, LockEntry, Process};

/// The `/proc/locks` form of a file's identity: `MAJOR:MINOR:INODE`, the
/// device numbers in two-digit hex.
pub fn lock_id(meta: &fs::Metadata) -> String {
    format!(
        "{:02x}:{:02x}:{}",
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino()
    )
}

/// The locks on one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileLocks {
    /// The granted locks.
    pub held: Vec<LockEntry>,
    /// The PIDs blocked waiting, each once, in order.
    pub waiting: Vec<u32>,
}

/// Every file's locks, by [`lock_id`], read once from `/proc/locks`.
///
/// # Errors
///
/// When `/proc/locks` cannot be read.
pub fn lock_table() -> io::Result<HashMap<String, FileLocks>> {
    Ok(parse_table(&fs::read_to_string("/proc/locks")?))
}

/// Parse `/proc/locks`: each file's granted locks, and the PIDs of its
/// blocked waiters (lines with `->`).
fn parse_table(text: &str) -> HashMap<String, FileLocks> {
    let mut table: HashMap<String, FileLocks> = HashMap::new();
    for line in text.lines() {
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        let blocked = fields.get(1) == Some(&"->");
        if blocked {
            fields.remove(1);
        }
        // N: TYPE ADVISORY|MANDATORY READ|WRITE PID ID START END
        if fields.len() < 6 {
            continue;
        }
        let kind = match fields[1] {
            "FLOCK" => Kind::Flock,
            "POSIX" => Kind::Posix,
            "OFDLCK" => Kind::Ofd,
            _ => continue,
        };
        let exclusive = match fields[3] {
            "WRITE" => true,
            "READ" => false,
            _ => continue,
        };
        // OFD locks belong to no process: their PID is -1.
        let pid = fields[4].parse::<u32>().ok().filter(|pid| *pid > 0);
        let file = table.entry(fields[5].to_owned()).or_default();
        if blocked {
            file.waiting.extend(pid);
        } else {
            file.held.push(LockEntry {
                kind,
                exclusive,
                pid,
            });
        }
    }
    for file in table.values_mut() {
        file.waiting.sort_unstable();
        file.waiting.dedup();
    }
    table
}

/// For each file in `files` (device and inode), the processes with a
/// descriptor open on it that shows a lock (those whose `/proc` this user
/// may read), each once, in order. One pass over `/proc`, however many
/// files.
pub fn holding_processes(files: &HashSet<(u64, u64)>) -> HashMap<(u64, u64), Vec<u32>> {
    let mut holding: HashMap<(u64, u64), Vec<u32>> = HashMap::new();
    if files.is_empty() {
        return holding;
    }
    let Ok(processes) = fs::read_dir("/proc") else {
        return holding;
    };
    for pid in processes
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
    {
        for file in held_by(pid, files) {
            holding.entry(file).or_default().push(pid);
        }
    }
    for pids in holding.values_mut() {
        pids.sort_unstable();
        pids.dedup();
    }
    holding
}

/// Which of `files` one of `pid`'s descriptors is open on and shows a
/// lock through.
fn held_by(pid: u32, files: &HashSet<(u64, u64)>) -> HashSet<(u64, u64)> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let meta = fs::metadata(fd.path()).ok()?;
            let file = (meta.dev(), meta.ino());
            if !files.contains(&file) {
                return None;
            }
            let info = fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .ok()?;
            info.lines()
                .any(|line| line.starts_with("lock:"))
                .then_some(file)
        })
        .collect()
}

/// A process's command name and start time, while it exists.
pub fn process(pid: u32) -> Process {
    let command = fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned());
    Process {
        pid,
        started_unix: command.as_ref().and_then(|_| started(pid)),
        command,
    }
}

/// When `pid` started, in seconds since the epoch: its start time in clock
/// ticks after boot (`/proc/PID/stat`, field 22) against the time since
/// boot (`/proc/uptime`), so to the clock tick, not the second.
fn started(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count from the last.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|n| *n > 0)?;
    let running = (uptime - ticks as f64 / per_second as f64).max(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    // Rounded down: never after the start, so never after a later "now".
    Some((now - running).floor() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKS: &str = "\
1: FLOCK  ADVISORY  WRITE 4321 00:2d:77 0 EOF
1: -> FLOCK  ADVISORY  WRITE 4400 00:2d:77 0 EOF
1: -> FLOCK  ADVISORY  READ  4401 00:2d:77 0 EOF
2: POSIX  ADVISORY  READ 99 00:2d:78 0 EOF
3: OFDLCK ADVISORY  READ -1 00:2d:77 0 EOF
4: LEASE  ACTIVE    READ 5 00:2d:77 0 EOF
";

    #[test]
    fn parses_holders_and_waiters_of_each_file() {
        let table = parse_table(LOCKS);
        let file = &table["00:2d:77"];
        assert_eq!(
            file.held,
            vec![
                LockEntry {
                    kind: Kind::Flock,
                    exclusive: true,
                    pid: Some(4321)
                },
                LockEntry {
                    kind: Kind::Ofd,
                    exclusive: false,
                    pid: None
                },
            ]
        );
        assert_eq!(file.waiting, vec![4400, 4401]);
        assert_eq!(
            table["00:2d:78"],
            FileLocks {
                held: vec![LockEntry {
                    kind: Kind::Posix,
                    exclusive: false,
                    pid: Some(99)
                }],
                waiting: vec![],
            }
        );
        assert!(!table.contains_key("00:2d:7"));
    }

    #[test]
    fn knows_this_process() {
        let me = process(std::process::id());
        assert!(me.command.is_some());
        let started = me.started_unix.unwrap();
        // Read after `process`: its "now" was no later than this one.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(started <= now, "started {started}, now {now}");
        assert!(started + 86_400 * 365 > now, "started {started}, now {now}");
    }
}
