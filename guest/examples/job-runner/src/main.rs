//! An example plugin: a job runner.
//!
//! `job-runner NAME JOBS [DIR]` runs JOBS jobs. Each job takes one of the
//! two slots of the `runners` semaphore in DIR (default `/jobs`), then the
//! exclusive lock `DIR/journal.lock`, and under it bumps the counter in
//! `DIR/counter` and writes a begin and an end line to `DIR/journal.txt`.
//! Any number of runners (plugin instances, native `portalocker lock`
//! commands, Python programs) can share DIR: the journal never interleaves
//! and the counter never loses a job.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use portalocker_guest::{FileLock, Semaphore};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (name, jobs) = match args.as_slice() {
        [_, name, jobs, ..] => (name.clone(), jobs.parse::<u32>().expect("JOBS is a number")),
        _ => {
            eprintln!("usage: job-runner NAME JOBS [DIR]");
            std::process::exit(64);
        }
    };
    let dir = args.get(3).cloned().unwrap_or_else(|| "/jobs".into());
    if let Err(e) = run(&name, jobs, &dir) {
        eprintln!("job-runner {name}: {e}");
        std::process::exit(1);
    }
}

fn run(name: &str, jobs: u32, dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let runners = Semaphore::open("runners", 2, dir)?;
    let journal_lock = FileLock::open(format!("{dir}/journal.lock"))?;
    for job in 1..=jobs {
        let permit = runners.acquire_for(Duration::from_secs(60))?;
        let guard = journal_lock.lock_for(Duration::from_secs(60))?;
        let counter_path = format!("{dir}/counter");
        let count: u64 = fs::read_to_string(&counter_path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let mut journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{dir}/journal.txt"))?;
        writeln!(journal, "begin {name} job {job} (slot {})", permit.slot())?;
        std::thread::sleep(Duration::from_millis(5));
        fs::write(&counter_path, (count + 1).to_string())?;
        writeln!(journal, "end   {name} job {job}")?;
        guard.release()?;
        permit.release()?;
    }
    println!("job-runner {name}: ran {jobs} jobs");
    Ok(())
}
