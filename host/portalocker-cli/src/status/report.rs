//! What `status` prints: the same findings as text for people and JSON for
//! scripts, and whether the lock counts as held (the exit status).

use std::fmt::Write as _;

use portalocker::BoundedSemaphore;
use portalocker::redis::{LockStatus, Participant};
use serde_json::{Value, json};

use super::file::{FileReport, Process};

/// A finding, ready to print.
#[derive(Debug)]
pub struct Report {
    /// For people: lines ending in a newline.
    pub text: String,
    /// For scripts.
    pub json: Value,
    /// Held (exit 1) or free (exit 0).
    pub held: bool,
}

/// Seconds since the epoch now.
fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `1234 (python3, running for 2m05s)`.
fn describe(process: &Process) -> String {
    let mut out = process.pid.to_string();
    match (&process.command, process.started_unix) {
        (Some(command), Some(started)) => {
            let _ = write!(
                out,
                " ({command}, running for {})",
                duration(now_unix().saturating_sub(started))
            );
        }
        (Some(command), None) => {
            let _ = write!(out, " ({command})");
        }
        (None, _) => out.push_str(" (exited)"),
    }
    out
}

/// `45s`, `2m05s`, `3h02m`, `2d04h`.
fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn process_json(process: &Process) -> Value {
    json!({
        "pid": process.pid,
        "command": process.command,
        "started_unix": process.started_unix,
    })
}

fn file_json(found: &FileReport) -> Value {
    json!({
        "path": found.path,
        "exists": found.exists,
        "state": found.state(),
        "locks": found.locks.iter().map(|l| json!({
            "kind": l.kind.as_str(),
            "mode": if l.exclusive { "exclusive" } else { "shared" },
            "pid": l.pid,
        })).collect::<Vec<_>>(),
        "holders": found.holders.iter().map(process_json).collect::<Vec<_>>(),
        "waiting": found.waiting.iter().map(process_json).collect::<Vec<_>>(),
    })
}

/// The lines after a file's headline: its holders and waiters.
fn file_details(found: &FileReport, indent: &str, out: &mut String) {
    if !found.holders.is_empty() {
        let pids: Vec<String> = found.holders.iter().map(describe).collect();
        let _ = writeln!(out, "{indent}held by pid {}", pids.join(", pid "));
    } else if found.is_held() {
        let told: Vec<String> = found
            .locks
            .iter()
            .filter_map(|l| l.pid)
            .map(|p| format!("{p} (exited; its descriptor lives on elsewhere)"))
            .collect();
        if told.is_empty() {
            let _ = writeln!(out, "{indent}held by a process this platform does not name");
        } else {
            let _ = writeln!(out, "{indent}taken by pid {}", told.join(", pid "));
        }
    }
    if !found.waiting.is_empty() {
        let pids: Vec<String> = found.waiting.iter().map(describe).collect();
        let _ = writeln!(out, "{indent}waiting: pid {}", pids.join(", pid "));
    }
}

/// The headline state of a file: `free`, `held exclusive (flock)`.
fn file_state(found: &FileReport) -> String {
    if !found.is_held() {
        return if found.exists {
            "free".to_owned()
        } else {
            "free (no lock file)".to_owned()
        };
    }
    let mut kinds: Vec<&str> = found.locks.iter().map(|l| l.kind.as_str()).collect();
    kinds.dedup();
    format!("held {} ({})", found.state(), kinds.join(", "))
}

/// `status PATH`.
pub fn file(found: &FileReport) -> Report {
    let mut text = format!("{}: {}\n", found.path.display(), file_state(found));
    file_details(found, "  ", &mut text);
    Report {
        text,
        json: file_json(found),
        held: found.is_held(),
    }
}

/// `status --semaphore NAME`: held when no slot is free.
pub fn semaphore(sem: &BoundedSemaphore, sized: bool, slots: &[FileReport]) -> Report {
    let free = slots.iter().filter(|s| !s.is_held()).count();
    let directory = sem
        .filename(0)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let size = if sized {
        format!("{} slots", slots.len())
    } else {
        format!("{} slot files", slots.len())
    };
    let mut text = format!(
        "semaphore {:?} in {directory}: {size}, {free} free\n",
        sem.name()
    );
    for (slot, found) in slots.iter().enumerate() {
        let _ = writeln!(text, "  slot {slot:02}: {}", file_state(found));
        file_details(found, "    ", &mut text);
    }
    let held = if sized || !slots.is_empty() {
        free == 0
    } else {
        false
    };
    Report {
        text,
        json: json!({
            "semaphore": sem.name(),
            "directory": directory,
            "slots": slots.iter().enumerate().map(|(slot, found)| {
                let mut value = file_json(found);
                value["slot"] = json!(slot);
                value
            }).collect::<Vec<_>>(),
            "free": free,
            "state": if held { "full" } else { "free" },
        }),
        held,
    }
}

fn participant_json(p: &Participant) -> Value {
    json!({
        "holder_id": p.holder_id,
        "role": p.role.map(|r| r.as_str()),
        "elected": p.elected,
        "subscribed": p.subscribed,
        "client": p.client.as_ref().map(|c| json!({
            "id": c.id,
            "name": c.name,
            "addr": c.addr,
            "age_secs": c.age_secs,
            "idle_secs": c.idle_secs,
            "library": c.library,
        })),
    })
}

/// `holder 3f2a… from 127.0.0.1:5400, connected 2m05s ago`.
fn participant_line(p: &Participant) -> String {
    let mut out = p.holder_id.clone();
    match &p.client {
        Some(c) => {
            let _ = write!(
                out,
                " ({}) from {}, connected {} ago",
                c.name,
                c.addr,
                duration(c.age_secs)
            );
            if let Some(library) = &c.library {
                let _ = write!(out, ", {library}");
            }
        }
        None => out.push_str(" (connection not listed)"),
    }
    out
}

/// `status --redis NAME`.
pub fn redis(url: &str, status: &LockStatus) -> Report {
    let state = if status.holder().is_some() {
        "held exclusive"
    } else if status.is_held() {
        "held shared"
    } else {
        "free"
    };
    let mut text = format!("Redis lock {:?} on {url}: {state}\n", status.name);
    if let Some(holder) = status.holder() {
        let _ = writeln!(text, "  holder: {}", participant_line(holder));
    }
    for reader in status.readers() {
        let _ = writeln!(text, "  reader: {}", participant_line(reader));
    }
    for waiter in status.waiting() {
        let _ = writeln!(text, "  waiting: {}", participant_line(waiter));
    }
    for silent in status.silent() {
        let _ = writeln!(
            text,
            "  silent (subscribed, did not answer): {}",
            participant_line(silent)
        );
    }
    if let Some(counter) = &status.fencing_counter {
        let _ = writeln!(text, "  fencing counter: {counter}");
    }
    if !status.clients_listed {
        text.push_str("  (the server refused CLIENT LIST: connections are not described)\n");
    }
    let list =
        |it: &mut dyn Iterator<Item = &Participant>| it.map(participant_json).collect::<Vec<_>>();
    Report {
        text,
        json: json!({
            "redis": status.name,
            "url": url,
            "state": state.trim_start_matches("held "),
            "subscribers": status.subscribers,
            "holder": status.holder().map(participant_json),
            "readers": list(&mut status.readers()),
            "waiting": list(&mut status.waiting()),
            "silent": list(&mut status.silent()),
            "fencing_counter": status.fencing_counter,
            "clients_listed": status.clients_listed,
        }),
        held: status.is_held(),
    }
}
