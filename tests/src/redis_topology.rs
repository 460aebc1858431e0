//! Real Redis topologies for the cluster and Sentinel tests, on free
//! loopback ports: a Redis Cluster of three masters with a replica each,
//! and a master with a replica watched by three sentinels. Stopped when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{RedisServer, client_binary, server_binary};

/// How long a topology may take to settle before the test fails.
const SETTLE: Duration = Duration::from_secs(60);

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("portalocker-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Poll `ready` until it says yes.
///
/// # Panics
///
/// After [`SETTLE`], with `what` and the last state seen.
fn settle(what: &str, mut ready: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    loop {
        match ready() {
            Ok(()) => return,
            Err(state) if started.elapsed() > SETTLE => {
                panic!("{what} did not happen within {SETTLE:?}: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A Redis Cluster: three masters, a replica each.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: Scratch,
}

impl RedisCluster {
    /// Start six nodes and join them (`redis-cli --cluster create`); returns
    /// once every node agrees on the layout.
    ///
    /// # Panics
    ///
    /// When the servers do not start or the cluster does not form.
    pub fn start() -> Self {
        let dir = Scratch::new("cluster");
        let nodes: Vec<RedisServer> = (0..6)
            .map(|i| {
                let node_dir = dir.0.join(i.to_string());
                std::fs::create_dir_all(&node_dir).expect("a node directory");
                let node_dir = node_dir.to_string_lossy().into_owned();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--repl-diskless-sync-delay",
                    "0",
                    "--dir",
                    &node_dir,
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output = Command::new(client_binary())
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} ({e})", client_binary()));
        assert!(
            output.status.success(),
            "--cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_until_settled();
        cluster
    }

    /// Wait until every node says the cluster is ok, knows all six nodes,
    /// and sees three masters, each with a replica in sync (a replica that
    /// never synced cannot take over).
    pub fn wait_until_settled(&self) {
        settle("the cluster settling", || {
            for node in &self.nodes {
                let info = node.cli(&["CLUSTER", "INFO"]);
                if !info.contains("cluster_state:ok") || !info.contains("cluster_known_nodes:6") {
                    return Err(format!("{}: {info}", node.port()));
                }
                let nodes = node.cli(&["CLUSTER", "NODES"]);
                let masters = nodes
                    .lines()
                    .filter(|l| l.contains("master") && !l.contains("fail"))
                    .count();
                let replicas = nodes
                    .lines()
                    .filter(|l| l.contains("slave") && !l.contains("fail"))
                    .count();
                if masters != 3 || replicas != 3 {
                    return Err(format!("{}: {nodes}", node.port()));
                }
                let replication = node.cli(&["INFO", "replication"]);
                if replication.contains("role:slave")
                    && !replication.contains("master_link_status:up")
                {
                    return Err(format!("{}: {replication}", node.port()));
                }
            }
            Ok(())
        });
    }

    /// A URL for the whole cluster, through two of its nodes.
    pub fn url(&self) -> String {
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{}/",
            self.nodes[0].port(),
            self.nodes[1].port()
        )
    }

    /// The plain URL of one node (what `--cluster` takes).
    pub fn node_url(&self) -> String {
        self.nodes[2].url()
    }

    /// Every node.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The hash slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("a slot number")
    }

    /// The node with this port.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .expect("a node of the cluster")
    }

    /// The port of the master that serves `slot`, as `asked` sees it.
    fn master_port_seen_by(asked: &RedisServer, slot: u16) -> Option<u16> {
        asked.cli(&["CLUSTER", "NODES"]).lines().find_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                return None;
            }
            let serves = fields[8..].iter().any(|range| {
                let mut bounds = range.split('-').map(str::parse::<u16>);
                match (bounds.next(), bounds.next()) {
                    (Some(Ok(from)), Some(Ok(to))) => (from..=to).contains(&slot),
                    (Some(Ok(only)), None) => only == slot,
                    _ => false,
                }
            });
            serves.then(|| fields[1].split(['@', ':']).nth(1)?.parse().ok())?
        })
    }

    /// The master that serves `slot`.
    pub fn master_of(&self, slot: u16) -> &RedisServer {
        let port = Self::master_port_seen_by(&self.nodes[0], slot).expect("a master for the slot");
        self.node(port)
    }

    /// A replica of the master at `master`.
    pub fn replica_of(&self, master: &RedisServer) -> &RedisServer {
        let id = master.cli(&["CLUSTER", "MYID"]).trim().to_owned();
        self.nodes
            .iter()
            .find(|node| {
                node.cli(&["ROLE"]).contains("slave")
                    && node
                        .cli(&["CLUSTER", "NODES"])
                        .lines()
                        .any(|l| l.contains("myself") && l.contains(&id))
            })
            .expect("a replica of the master")
    }

    /// `CLUSTER FAILOVER` on `replica`; returns once every node sees it as
    /// the master of `slot`.
    pub fn failover(&self, replica: &RedisServer, slot: u16) {
        let answer = replica.cli(&["CLUSTER", "FAILOVER"]);
        assert!(answer.trim() == "OK", "CLUSTER FAILOVER: {answer}");
        self.wait_for_master(slot, replica.port());
    }

    /// Wait until every live node sees `port` as the master of `slot`.
    pub fn wait_for_master(&self, slot: u16, port: u16) {
        settle("the failover", || {
            for node in &self.nodes {
                if node.cli(&["PING"]).trim() != "PONG" {
                    continue;
                }
                let seen = Self::master_port_seen_by(node, slot);
                if seen != Some(port) {
                    return Err(format!("{} sees {seen:?}", node.port()));
                }
            }
            Ok(())
        });
    }

    /// Move `slot` (and its keys) from its master to the master `to`, as
    /// `redis-cli --cluster reshard` does, one slot.
    pub fn migrate(&self, slot: u16, to: &RedisServer) {
        let from = self.master_of(slot);
        let from_id = from.cli(&["CLUSTER", "MYID"]).trim().to_owned();
        let to_id = to.cli(&["CLUSTER", "MYID"]).trim().to_owned();
        let slot_arg = slot.to_string();
        assert_eq!(
            to.cli(&["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id])
                .trim(),
            "OK"
        );
        assert_eq!(
            from.cli(&["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id])
                .trim(),
            "OK"
        );
        loop {
            let keys = from.cli(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.port().to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            let answer = from.cli(&args);
            assert!(answer.contains("OK"), "MIGRATE: {answer}");
        }
        for node in [to, from] {
            assert_eq!(
                node.cli(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id])
                    .trim(),
                "OK"
            );
        }
        for node in &self.nodes {
            if node.cli(&["ROLE"]).starts_with("master")
                && node.port() != from.port()
                && node.port() != to.port()
            {
                node.cli(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
            }
        }
        self.wait_for_master(slot, to.port());
    }

    /// Kill the node with this port (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port() == port) {
            node.kill();
        }
    }
}

/// A master and a replica watched by three sentinels (quorum 2).
pub struct RedisSentinels {
    master: RedisServer,
    replica: RedisServer,
    sentinels: Vec<(Child, u16)>,
    _dir: Scratch,
}

/// The name the sentinels know the master by.
pub const SERVICE: &str = "portalocker";

impl RedisSentinels {
    /// Start the servers and sentinels; returns once the sentinels know the
    /// replica and each other.
    ///
    /// # Panics
    ///
    /// When they do not start or do not find each other.
    pub fn start() -> Self {
        let dir = Scratch::new("sentinel");
        // Each in its own directory: a replica writes the master's data
        // where it runs, and any server started there would load it.
        let server_dir = |name: &str| {
            let path = dir.0.join(name);
            std::fs::create_dir_all(&path).expect("a server directory");
            path.to_string_lossy().into_owned()
        };
        let master = RedisServer::start_with(&["--dir", &server_dir("master")]);
        let master_port = master.port().to_string();
        let replica = RedisServer::start_with(&[
            "--replicaof",
            "127.0.0.1",
            &master_port,
            "--dir",
            &server_dir("replica"),
        ]);
        let sentinels = (0..3)
            .map(|i| start_sentinel(&dir.0, i, master.port()))
            .collect();
        let group = Self {
            master,
            replica,
            sentinels,
            _dir: dir,
        };
        settle("the sentinels finding each other", || {
            for &(_, port) in &group.sentinels {
                let info = sentinel_cli(port, &["SENTINEL", "MASTER", SERVICE]);
                let field = |name: &str| {
                    let lines: Vec<&str> = info.lines().collect();
                    lines
                        .iter()
                        .position(|l| *l == name)
                        .and_then(|i| lines.get(i + 1).copied())
                };
                if field("num-other-sentinels") != Some("2") || field("num-slaves") != Some("1") {
                    return Err(format!("{port}: {info}"));
                }
            }
            Ok(())
        });
        group
    }

    /// The `redis+sentinel://` URL of the group's master.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(_, port)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}", hosts.join(","))
    }

    /// The port the sentinels name as the master now.
    pub fn master_port(&self) -> u16 {
        let answer = sentinel_cli(
            self.sentinels[0].1,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE],
        );
        answer
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .expect("a master port")
    }

    /// The server on `port` (the first master or its replica).
    pub fn server(&self, port: u16) -> &RedisServer {
        [&self.master, &self.replica]
            .into_iter()
            .find(|s| s.port() == port)
            .expect("a server of the group")
    }

    /// `SENTINEL FAILOVER`; returns once every sentinel names the new
    /// master.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let answer = sentinel_cli(self.sentinels[0].1, &["SENTINEL", "FAILOVER", SERVICE]);
        assert_eq!(answer.trim(), "OK", "SENTINEL FAILOVER");
        let mut new = old;
        settle("the sentinel failover", || {
            for &(_, port) in &self.sentinels {
                let answer = sentinel_cli(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]);
                let seen: Option<u16> = answer.lines().nth(1).and_then(|p| p.trim().parse().ok());
                match seen {
                    Some(port) if port != old => new = port,
                    other => return Err(format!("sentinel {port} names {other:?}")),
                }
            }
            Ok(())
        });
        new
    }

    /// Wait until the sentinels again see one replica, connected (after a
    /// failover, the old master rejoins as the new one's replica).
    pub fn wait_until_replicated(&self) {
        settle("the old master rejoining as a replica", || {
            let master = self.server(self.master_port());
            let info = master.cli(&["INFO", "replication"]);
            if info.contains("connected_slaves:1") && info.contains("state=online") {
                Ok(())
            } else {
                Err(info)
            }
        });
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for (child, _) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Start sentinel `i` with its own writable configuration (a sentinel
/// rewrites it).
fn start_sentinel(dir: &Path, i: usize, master_port: u16) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join(format!("sentinel-{i}.conf"));
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\nloglevel warning\n\
             sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {SERVICE} 1000\n\
             sentinel failover-timeout {SERVICE} 5000\n\
             sentinel parallel-syncs {SERVICE} 1\n",
            dir.display()
        ),
    )
    .expect("a sentinel configuration");
    let child = Command::new(server_binary())
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start a sentinel with {} ({e})", server_binary()));
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < SETTLE,
            "the sentinel did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

/// `redis-cli` against a sentinel.
fn sentinel_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new(client_binary())
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", client_binary()));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
