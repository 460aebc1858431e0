//! Pools whose locks live on more than one server: a Redis Cluster (each
//! lock on the master of its slot's shard) or a Sentinel group (every lock
//! on the current master). A node pool per server, found per lock, with
//! the nodes that may still hold a lock's subscriptions as its peers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::ConnectionInfo;
use tokio::task::JoinHandle;

use super::DEFAULT_UNAVAILABLE_TIMEOUT;
use super::cluster::{self, Shard};
use super::connection::{Check, Dialect, Proof};
use super::pool::{DEFAULT_MAX_IDLE, Pool};
use super::sentinel;
use super::servers::{Addr, Servers, client_at};
use crate::error::{Error, Result};

/// How long a sentinel watcher waits before reconnecting.
const WATCH_RETRY: Duration = Duration::from_millis(500);

/// The pools of the servers met, and the masters a Sentinel failover
/// demoted (never used as a master again until a switch names them).
#[derive(Default)]
struct Nodes {
    pools: HashMap<Addr, Pool>,
    former: HashSet<Addr>,
}

/// The servers of a cluster or Sentinel group, and a pool for each.
pub(crate) struct Routed {
    topology: Topology,
    base: ConnectionInfo,
    nodes: Mutex<Nodes>,
    /// The shards as last looked up; `None` until the next lookup.
    layout: tokio::sync::Mutex<Option<Arc<Vec<Shard>>>>,
    /// Set when a sentinel announced a failover: look the layout up again.
    stale: AtomicBool,
    max_idle: AtomicUsize,
    /// The sentinel watchers, started with the first lookup.
    watchers: Mutex<Vec<JoinHandle<()>>>,
}

enum Topology {
    Cluster {
        seeds: Vec<Addr>,
    },
    Sentinel {
        sentinels: Vec<Addr>,
        service: String,
        sentinel_base: ConnectionInfo,
    },
}

impl Routed {
    /// For a cluster or Sentinel `servers` (never a single server).
    pub(crate) fn new(servers: Servers) -> Self {
        let (topology, base) = match servers {
            Servers::Cluster { seeds, base } => (Topology::Cluster { seeds }, base),
            Servers::Sentinel {
                sentinels,
                service,
                base,
                sentinel_base,
            } => (
                Topology::Sentinel {
                    sentinels,
                    service,
                    sentinel_base,
                },
                base,
            ),
            Servers::Single(client) => (
                Topology::Cluster { seeds: Vec::new() },
                client.get_connection_info().clone(),
            ),
        };
        Self {
            topology,
            base,
            nodes: Mutex::default(),
            layout: tokio::sync::Mutex::new(None),
            stale: AtomicBool::new(false),
            max_idle: AtomicUsize::new(DEFAULT_MAX_IDLE),
            watchers: Mutex::default(),
        }
    }

    /// Whether this is a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster { .. })
    }

    /// Keep at most `max` idle lock connections per server.
    pub(crate) fn set_max_idle(&self, max: usize) {
        self.max_idle.store(max, Ordering::SeqCst);
        for pool in self.lock_nodes().pools.values() {
            let _ = pool.clone().max_idle(max);
        }
    }

    /// The connections open to all the servers.
    pub(crate) fn connections(&self) -> usize {
        self.lock_nodes()
            .pools
            .values()
            .map(Pool::connections)
            .sum()
    }

    fn lock_nodes(&self) -> std::sync::MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pool of the server at `addr` (made once, and again after the
    /// server was demoted).
    fn node(&self, addr: &Addr) -> Result<Pool> {
        let mut nodes = self.lock_nodes();
        if let Some(pool) = nodes.pools.get(addr).filter(|pool| !pool.demoted()) {
            return Ok(pool.clone());
        }
        let client = client_at(&self.base, addr)?;
        let pool = match self.topology {
            Topology::Cluster { .. } => Pool::node(
                client,
                Check::ClusterNode,
                Dialect::Sharded,
                Proof::SlotOwner,
            )?,
            Topology::Sentinel { .. } => {
                Pool::node(client, Check::SentinelNode, Dialect::Plain, Proof::Primary)?
            }
        }
        .max_idle(self.max_idle.load(Ordering::SeqCst));
        nodes.pools.insert(addr.clone(), pool.clone());
        Ok(pool)
    }

    /// The pool of the master at `addr`: refused while a Sentinel failover
    /// has demoted it (a sentinel that has not caught up still names it,
    /// and it stays a master for a while). [`Routed::switched`] marks and
    /// demotes under the same lock, so a pool handed out here is either
    /// refused or demoted with the others.
    fn master(&self, addr: &Addr) -> Result<Pool> {
        if self.lock_nodes().former.contains(addr) {
            return Err(Error::RedisUnavailable(format!(
                "{}:{} was the master before a failover; waiting for the sentinels to agree",
                addr.0, addr.1
            )));
        }
        self.node(addr)
    }

    /// Look the layout up again before the next resolution.
    pub(crate) async fn invalidate(&self) {
        *self.layout.lock().await = None;
    }

    /// The pool of the master that serves `channel`, its replicas set as
    /// its peers.
    ///
    /// # Errors
    ///
    /// [`Error::RedisUnavailable`] when no server could tell, or the slot
    /// has no master right now (a failover under way).
    pub(crate) async fn resolve(self: &Arc<Self>, channel: &str) -> Result<Pool> {
        let layout = self.layout().await?;
        let slot = cluster::key_slot(channel.as_bytes());
        let shard = match self.topology {
            Topology::Cluster { .. } => layout.iter().find(|shard| shard.serves(slot)),
            Topology::Sentinel { .. } => layout.first(),
        };
        let Some((master, replicas)) = shard.and_then(|s| Some((s.master.as_ref()?, &s.replicas)))
        else {
            self.invalidate().await;
            return Err(Error::RedisUnavailable(format!(
                "no master serves {channel:?} now (slot {slot}): a failover or resharding under way?"
            )));
        };
        let pool = self.master(master)?;
        let peers = replicas
            .iter()
            .filter(|replica| *replica != master)
            .map(|replica| self.node(replica))
            .collect::<Result<Vec<_>>>()?;
        pool.set_peers(peers);
        Ok(pool)
    }

    /// The layout, looked up if need be.
    async fn layout(self: &Arc<Self>) -> Result<Arc<Vec<Shard>>> {
        let mut cached = self.layout.lock().await;
        if self.stale.swap(false, Ordering::SeqCst) {
            *cached = None;
        }
        if let Some(layout) = cached.as_ref() {
            return Ok(Arc::clone(layout));
        }
        let layout = Arc::new(match &self.topology {
            Topology::Cluster { seeds } => self.cluster_layout(seeds).await?,
            Topology::Sentinel {
                sentinels,
                service,
                sentinel_base,
            } => {
                self.watch_sentinels(sentinels, service, sentinel_base);
                self.sentinel_layout(sentinels, service, sentinel_base)
                    .await?
            }
        });
        *cached = Some(Arc::clone(&layout));
        Ok(layout)
    }

    /// `CLUSTER SHARDS` from the first node that answers: the seeds, then
    /// every node met since.
    async fn cluster_layout(&self, seeds: &[Addr]) -> Result<Vec<Shard>> {
        let mut candidates = seeds.to_vec();
        for known in self.lock_nodes().pools.keys() {
            if !candidates.contains(known) {
                candidates.push(known.clone());
            }
        }
        let mut last = None;
        for addr in candidates {
            let asked = async {
                let pool = self.node(&addr)?;
                let mut conn = pool.command().await?;
                let shards = cluster::shards(&mut conn).await;
                if shards.is_err() {
                    pool.forget_command().await;
                }
                shards
            };
            match tokio::time::timeout(DEFAULT_UNAVAILABLE_TIMEOUT, asked).await {
                Ok(Ok(shards)) if !shards.is_empty() => return Ok(shards),
                Ok(Ok(_)) => {
                    last = Some(Error::RedisUnavailable("the cluster has no shards".into()))
                }
                Ok(Err(unsupported @ Error::Unsupported(_))) => return Err(unsupported),
                Ok(Err(Error::Redis(why))) if why.to_lowercase().contains("unknown subcommand") => {
                    return Err(Error::Unsupported(format!(
                        "cluster mode needs Redis 7.0+ (sharded pub/sub, CLUSTER SHARDS): {why}"
                    )));
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    if let Ok(pool) = self.node(&addr) {
                        pool.forget_command().await;
                    }
                    last = Some(Error::RedisUnavailable(format!(
                        "{}:{} did not answer",
                        addr.0, addr.1
                    )))
                }
            }
        }
        Err(match last {
            Some(Error::RedisUnavailable(why)) | Some(Error::Redis(why)) => {
                Error::RedisUnavailable(format!("no cluster node told its layout: {why}"))
            }
            Some(other) => other,
            None => Error::RedisUnavailable("no cluster node to ask".into()),
        })
    }

    /// The master and replicas of `service`, from the first sentinel that
    /// answers.
    async fn sentinel_layout(
        &self,
        sentinels: &[Addr],
        service: &str,
        sentinel_base: &ConnectionInfo,
    ) -> Result<Vec<Shard>> {
        let mut last = String::from("no sentinel to ask");
        for addr in sentinels {
            let asked = async {
                let client = client_at(sentinel_base, addr)?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                sentinel::lookup(&mut conn, service).await
            };
            match tokio::time::timeout(DEFAULT_UNAVAILABLE_TIMEOUT, asked).await {
                Ok(Ok((master, replicas))) => {
                    return Ok(vec![Shard {
                        slots: vec![(0, u16::MAX)],
                        master: Some(master),
                        replicas,
                    }]);
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("sentinel {}:{} did not answer", addr.0, addr.1),
            }
        }
        Err(Error::RedisUnavailable(format!(
            "no sentinel named the master of {service:?}: {last}"
        )))
    }

    /// Start watching every sentinel for `+switch-master` (once): a switch
    /// away from a master demotes its pool, so every lock held there is
    /// lost at once, and the layout is looked up again.
    fn watch_sentinels(
        self: &Arc<Self>,
        sentinels: &[Addr],
        service: &str,
        sentinel_base: &ConnectionInfo,
    ) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if !watchers.is_empty() {
            return;
        }
        for sentinel in sentinels {
            let watched = Watched {
                routed: Arc::downgrade(self),
                client: client_at(sentinel_base, sentinel),
                sentinel: sentinel.clone(),
                service: service.to_owned(),
            };
            watchers.push(tokio::spawn(watch(watched)));
        }
    }

    /// The master at `old` lost its role to `new`: every lock held on
    /// `old` is lost, and `old` is not used as a master until a switch
    /// names it again.
    fn switched(&self, old: &Addr, new: &Addr) {
        let reason = format!(
            "a failover: the master moved from {}:{} to {}:{}",
            old.0, old.1, new.0, new.1
        );
        let mut nodes = self.lock_nodes();
        nodes.former.remove(new);
        if old != new {
            nodes.former.insert(old.clone());
            if let Some(pool) = nodes.pools.remove(old) {
                log::info!("{reason}");
                pool.demote(&reason);
            }
        }
        drop(nodes);
        self.stale.store(true, Ordering::SeqCst);
    }

    /// A sentinel names `master` now: if the layout in use names another
    /// one, a switch went unseen (the watcher was reconnecting). A layout
    /// being looked up right now will name the current master itself.
    fn reconcile(&self, master: &Addr) {
        let current = self
            .layout
            .try_lock()
            .ok()
            .and_then(|layout| layout.as_ref()?.first()?.master.clone());
        if self.lock_nodes().former.contains(master) {
            // A sentinel that has not caught up with a switch we saw.
            return;
        }
        if let Some(current) = current
            && current != *master
        {
            self.switched(&current, master);
        }
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        for watcher in self
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            watcher.abort();
        }
    }
}

/// One sentinel to watch for a pool.
struct Watched {
    routed: Weak<Routed>,
    client: Result<redis::Client>,
    sentinel: Addr,
    service: String,
}

/// Watch one sentinel for as long as the pool lives, reconnecting after
/// [`WATCH_RETRY`] when the connection ends.
async fn watch(watched: Watched) {
    let Watched {
        routed,
        client,
        sentinel,
        service,
    } = watched;
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            log::warn!("cannot watch sentinel {}:{}: {e}", sentinel.0, sentinel.1);
            return;
        }
    };
    loop {
        let result =
            sentinel::watch_switches(&client, &service, DEFAULT_UNAVAILABLE_TIMEOUT, |seen| {
                match seen {
                    sentinel::Seen::Switch(old, new) => {
                        if let Some(routed) = routed.upgrade() {
                            routed.switched(&old, &new);
                        }
                    }
                    sentinel::Seen::Master(master) => {
                        if let Some(routed) = routed.upgrade() {
                            routed.reconcile(&master);
                        }
                    }
                }
            })
            .await;
        if routed.strong_count() == 0 {
            return;
        }
        if let Err(e) = result {
            log::debug!("watching sentinel {}:{}: {e}", sentinel.0, sentinel.1);
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}
