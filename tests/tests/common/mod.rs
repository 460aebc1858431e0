//! Starting workers (Rust, Python, the CLI) and waiting on them.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

/// The Rust worker binary.
pub fn lockworker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lockworker"))
}

/// The `portalocker` CLI, built beside this test binary.
pub fn cli() -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let cli = dir.join(format!("portalocker{}", std::env::consts::EXE_SUFFIX));
    assert!(
        cli.exists(),
        "{} is missing: build it first with `cargo build -p portalocker-cli` in the same profile \
         (scripts/test.sh does)",
        cli.display()
    );
    Command::new(cli)
}

/// The Python interpreter that has portalocker 4.4.2 installed.
///
/// Found through `PORTALOCKER_PYTHON`, else the virtual environment that
/// `scripts/setup.sh` makes. Panics with install instructions when missing:
/// interoperability is a requirement, so its tests never skip.
pub fn python_path() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = portalocker_tests::python();
        let how = "install it with `scripts/setup.sh`, or by hand: \
                   `python3 -m venv ~/.cache/portalocker-rs/venv && \
                   ~/.cache/portalocker-rs/venv/bin/pip install 'portalocker[redis]==4.4.2'` \
                   (or point PORTALOCKER_PYTHON at a python that has it)";
        let output = Command::new(&python)
            .arg(python_worker_script())
            .arg("version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {how}", python.display()));
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            output.status.success() && version == "4.4.2",
            "{} does not have portalocker 4.4.2 (version {version:?}, stderr {}); {how}",
            python.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        python
    })
}

fn python_worker_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/pl_worker.py")
}

/// The Python worker, running the real portalocker.
pub fn pyworker() -> Command {
    let mut command = Command::new(python_path());
    command.arg(python_worker_script());
    command
}

/// A worker holding a lock until dropped (its stdin closes, it releases
/// and exits).
pub struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<BufReader<std::process::ChildStdout>>,
    /// The line the worker printed once it held the lock.
    pub said: String,
}

impl Holder {
    /// Start `command` and wait until it says it holds the lock.
    pub fn start(mut command: Command) -> Holder {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn holder");
        let stdin = child.stdin.take();
        let mut said = String::new();
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        reader.read_line(&mut said).expect("read holder");
        assert!(
            !said.is_empty(),
            "the holder exited before locking: {:?}",
            child.wait()
        );
        Holder {
            child,
            stdin,
            reader: Some(reader),
            said: said.trim().to_owned(),
        }
    }

    /// The holder's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Release (close stdin) and wait for a clean exit.
    pub fn release(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait holder");
        assert!(status.success(), "holder failed: {status}");
    }

    /// SIGKILL the holder and reap it.
    #[cfg(unix)]
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }

    /// Close stdin, wait for a clean exit, and return what it printed
    /// after its first line.
    pub fn finish(mut self) -> String {
        drop(self.stdin.take());
        let mut rest = String::new();
        if let Some(reader) = self.reader.as_mut() {
            let _ = std::io::Read::read_to_string(reader, &mut rest);
        }
        let status = self.child.wait().expect("wait holder");
        assert!(status.success(), "holder failed: {status}");
        rest
    }

    /// Write a line to the holder.
    pub fn tell(&mut self, line: &str) {
        writeln!(self.stdin.as_mut().expect("stdin"), "{line}").expect("tell holder");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Run to completion and assert success.
pub fn run_ok(command: &mut Command) {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Run and return the exit code.
pub fn exit_code(command: &mut Command) -> i32 {
    command
        .status()
        .expect("spawn")
        .code()
        .expect("exited normally")
}
