//! Linux: who holds a file lock, read from `/proc` without touching the
//! lock. `/proc/locks` lists every lock and every blocked waiter with the
//! PID that took it; each process's `fdinfo` shows the locks held through
//! its descriptors, so a lock inherited by a child (as `portalocker lock --
//! CMD` hands it on) names every process that holds it.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

use super::file::{Kind, LockEntry, Process};

/// The `/proc/locks` form of a file's identity: `MAJOR:MINOR:INODE`, the
/// device numbers in two-digit hex.
fn lock_id(meta: &fs::Metadata) -> String {
    format!(
        "{:02x}:{:02x}:{}",
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino()
    )
}

/// The locks on the file `meta` describes, and the PIDs blocked waiting.
///
/// # Errors
///
/// When `/proc/locks` cannot be read.
pub fn locks(meta: &fs::Metadata) -> io::Result<(Vec<LockEntry>, Vec<u32>)> {
    let text = fs::read_to_string("/proc/locks")?;
    Ok(parse_locks(&text, &lock_id(meta)))
}

/// Parse `/proc/locks` for the file `id`: the granted locks, and the PIDs of
/// blocked waiters (lines with `->`).
fn parse_locks(text: &str, id: &str) -> (Vec<LockEntry>, Vec<u32>) {
    let mut held = Vec::new();
    let mut waiting = Vec::new();
    for line in text.lines() {
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        let blocked = fields.get(1) == Some(&"->");
        if blocked {
            fields.remove(1);
        }
        // N: TYPE ADVISORY|MANDATORY READ|WRITE PID ID START END
        if fields.len() < 6 || fields[5] != id {
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
        if blocked {
            waiting.extend(pid);
        } else {
            held.push(LockEntry {
                kind,
                exclusive,
                pid,
            });
        }
    }
    waiting.sort_unstable();
    waiting.dedup();
    (held, waiting)
}

/// The processes with a descriptor that holds a lock on the file `meta`
/// describes (those whose `/proc` this user may read).
pub fn holding_processes(meta: &fs::Metadata) -> Vec<u32> {
    let Ok(processes) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = processes
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| holds(*pid, meta))
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether one of `pid`'s descriptors is open on the file and shows a lock.
fn holds(pid: u32, meta: &fs::Metadata) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let same =
            fs::metadata(fd.path()).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        same && fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .is_ok_and(|info| info.lines().any(|line| line.starts_with("lock:")))
    })
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
    fn parses_holders_and_waiters_of_one_file() {
        let (held, waiting) = parse_locks(LOCKS, "00:2d:77");
        assert_eq!(
            held,
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
        assert_eq!(waiting, vec![4400, 4401]);
        assert_eq!(parse_locks(LOCKS, "00:2d:7").0, vec![]);
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
