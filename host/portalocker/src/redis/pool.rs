//! What the Redis locks on one server share: one command connection, one
//! connection that collects probe replies, one that hears release notices,
//! and a few idle lock connections to lend. Only a lock that is being taken
//! or held has a connection of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::Client;
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use super::DEFAULT_UNAVAILABLE_TIMEOUT;
use super::connection::{
    self, Check, Counted, Dialect, LockConnection, NodeTerms, OpenCount, Proof,
};
use super::routed::Routed;
use super::router::{Listener, Router};
use super::runtime;
use super::servers::Servers;
use crate::error::{Error, Result};

/// How many idle lock connections a pool keeps by default.
pub const DEFAULT_MAX_IDLE: usize = 4;

/// How long an idle lock connection is kept before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The connections that the Redis locks on one server share. Cheap to
/// clone (clones share the connections).
///
/// Every [`RedisLock`](super::RedisLock) has one: its own, from
/// [`RedisLock::open`](super::RedisLock::open), or one given to many locks
/// with [`RedisLock::with_pool`](super::RedisLock::with_pool), so a
/// program with thousands of lock names uses a handful of connections to
/// the server: one for commands, one for probe replies, one for release
/// notices, plus one for each lock being taken or held at the moment and up
/// to [`Pool::max_idle`] idle ones kept for the next acquisition (closed
/// after a few idle seconds). A lock connection is never shared while in
/// use: whose it is tells peers who holds the lock.
///
/// ```no_run
/// use portalocker::redis::{Pool, RedisLock};
///
/// let pool = Pool::open("redis://127.0.0.1:6379/")?;
/// let reports = RedisLock::with_pool(&pool, "reports")?;
/// let backups = RedisLock::with_pool(&pool, "backups")?;
/// let _a = reports.acquire()?;
/// let _b = backups.acquire()?;
/// assert!(pool.connections() <= 5);
/// # Ok::<(), portalocker::Error>(())
/// ```
///
/// A pool opened on a `redis+cluster://` or `redis+sentinel://` URL holds
/// such a set of connections for each server its locks use (see
/// [`Pool::open`]).
#[derive(Clone)]
pub struct Pool {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// The connections to one server.
    Node(Arc<Inner>),
    /// Locks spread over a cluster's shards, or following a Sentinel
    /// group's master: a node pool per server, found per lock.
    Routed(Arc<Routed>),
}

/// Peers whose counts join the node's: the other nodes that may still
/// hold a subscription of a lock this node serves (its replicas, one of
/// which may be a master just demoted that has not yet dropped its
/// subscribers).
type Peers = Vec<Pool>;

struct Inner {
    client: Client,
    client3: Client,
    check: Check,
    dialect: Dialect,
    proof: Proof,
    peers: Mutex<Peers>,
    demoted: watch::Sender<Option<String>>,
    connect_timeout: Duration,
    command: tokio::sync::Mutex<Option<(MultiplexedConnection, Counted)>>,
    replies: tokio::sync::Mutex<Option<Arc<Router>>>,
    notices: tokio::sync::Mutex<Option<Arc<Router>>>,
    idle: Mutex<Idle>,
    max_idle: AtomicUsize,
    open: Arc<OpenCount>,
}

#[derive(Default)]
struct Idle {
    connections: Vec<(LockConnection, Instant)>,
    /// Whether a task is closing connections that stay idle too long.
    sweeping: bool,
}

impl Pool {
    /// A pool for the servers `url` names. Connects lazily.
    ///
    /// - `redis://[user:password@]host:port[/db]` (and the other forms the
    ///   `redis` crate reads): one standalone server, wire-compatible with
    ///   Python's portalocker. A cluster node or a replica is refused.
    /// - `redis+cluster://[user:password@]host:port[,host:port...][/]`: a
    ///   Redis Cluster, reached through any of the listed nodes. Each lock
    ///   lives on the shard that owns its hash slot, on sharded pub/sub
    ///   (Redis 7+). Not compatible with Python's portalocker, which has no
    ///   cluster mode.
    /// - `redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`:
    ///   the master a Sentinel group names `service`, found again after a
    ///   failover; the credentials and db are the master's. A failover is
    ///   the loss of every lock held on the old master.
    ///
    /// In the host lists, a port left out is 6379 (26379 for sentinels),
    /// and an IPv6 address goes in brackets: `[::1]:7000`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed URL.
    pub fn open(url: &str) -> Result<Self> {
        match Servers::parse(url)? {
            Servers::Single(client) => Self::with_client(client),
            routed => Ok(Self {
                kind: Kind::Routed(Arc::new(Routed::new(routed))),
            }),
        }
    }

    /// A pool for an existing client's server.
    ///
    /// # Errors
    ///
    /// As [`Pool::open`].
    pub fn with_client(client: Client) -> Result<Self> {
        Self::node(client, Check::Standalone, Dialect::Plain, Proof::None)
    }

    /// A pool for one server that talks `dialect`, is checked with `check`
    /// once and proves `proof` with every subscription.
    pub(crate) fn node(
        client: Client,
        check: Check,
        dialect: Dialect,
        proof: Proof,
    ) -> Result<Self> {
        Ok(Self {
            kind: Kind::Node(Arc::new(Inner {
                client3: connection::resp3(&client)?,
                client,
                check,
                dialect,
                proof,
                peers: Mutex::default(),
                demoted: watch::channel(None).0,
                connect_timeout: DEFAULT_UNAVAILABLE_TIMEOUT,
                command: tokio::sync::Mutex::new(None),
                replies: tokio::sync::Mutex::new(None),
                notices: tokio::sync::Mutex::new(None),
                idle: Mutex::default(),
                max_idle: AtomicUsize::new(DEFAULT_MAX_IDLE),
                open: Arc::default(),
            })),
        })
    }

    /// Keep at most `max` idle lock connections per server (default
    /// [`DEFAULT_MAX_IDLE`]); zero closes every lock connection on release.
    pub fn max_idle(self, max: usize) -> Self {
        match &self.kind {
            Kind::Node(inner) => {
                inner.max_idle.store(max, Ordering::SeqCst);
                trim(inner, |idle| idle.len() > max);
            }
            Kind::Routed(routed) => routed.set_max_idle(max),
        }
        self
    }

    /// How many connections to the servers the pool has open now.
    pub fn connections(&self) -> usize {
        match &self.kind {
            Kind::Node(inner) => inner.open.get(),
            Kind::Routed(routed) => routed.connections(),
        }
    }

    /// Whether `self` and `other` are the same pool.
    pub fn same_as(&self, other: &Pool) -> bool {
        match (&self.kind, &other.kind) {
            (Kind::Node(a), Kind::Node(b)) => Arc::ptr_eq(a, b),
            (Kind::Routed(a), Kind::Routed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// A reference that does not keep the pool (and its connections) alive.
    pub fn downgrade(&self) -> WeakPool {
        WeakPool(match &self.kind {
            Kind::Node(inner) => WeakKind::Node(Arc::downgrade(inner)),
            Kind::Routed(routed) => WeakKind::Routed(Arc::downgrade(routed)),
        })
    }

    /// Whether locks of this pool live on a Redis Cluster (then their
    /// names are hash-tagged on the wire, see [`RedisLock`](super::RedisLock)).
    pub(crate) fn is_cluster(&self) -> bool {
        match &self.kind {
            Kind::Node(inner) => inner.dialect == Dialect::Sharded,
            Kind::Routed(routed) => routed.is_cluster(),
        }
    }

    /// The pool of the server that serves `channel` now: this one for a
    /// single server; for a cluster, the master of the channel's slot (its
    /// replicas as peers); for Sentinel, the current master.
    ///
    /// # Errors
    ///
    /// [`Error::RedisUnavailable`] when no server could tell.
    pub(crate) async fn resolve(&self, channel: &str) -> Result<Pool> {
        match &self.kind {
            Kind::Node(_) => Ok(self.clone()),
            Kind::Routed(routed) => routed.resolve(channel).await,
        }
    }

    /// After trouble that may be a topology change: look the servers up
    /// again before the next resolution.
    pub(crate) async fn invalidate(&self) {
        if let Kind::Routed(routed) = &self.kind {
            routed.invalidate().await;
        }
    }

    /// The connections of one server: every internal use is on a pool
    /// [`Pool::resolve`] returned.
    fn inner(&self) -> Result<&Arc<Inner>> {
        match &self.kind {
            Kind::Node(inner) => Ok(inner),
            Kind::Routed(_) => Err(Error::Unsupported(
                "internal: a routed pool used without resolving a server".into(),
            )),
        }
    }

    /// The pub/sub this server speaks.
    pub(crate) fn dialect(&self) -> Dialect {
        match &self.kind {
            Kind::Node(inner) => inner.dialect,
            Kind::Routed(routed) if routed.is_cluster() => Dialect::Sharded,
            Kind::Routed(_) => Dialect::Plain,
        }
    }

    /// Whether `listener` listens through this pool's connections.
    pub(crate) fn owns(&self, listener: &Listener) -> bool {
        self.inner()
            .is_ok_and(|inner| Arc::as_ptr(inner) as usize == listener.origin())
    }

    /// Set the peers whose counts join this server's.
    pub(crate) fn set_peers(&self, peers: Peers) {
        if let Ok(inner) = self.inner() {
            *inner.peers.lock().unwrap_or_else(|p| p.into_inner()) = peers;
        }
    }

    /// The server stopped being the master: every lock held through it is
    /// lost (its connections are closed).
    pub(crate) fn demote(&self, reason: &str) {
        if let Ok(inner) = self.inner() {
            inner.demoted.send_replace(Some(reason.to_owned()));
        }
    }

    /// Whether [`Pool::demote`] was called.
    pub(crate) fn demoted(&self) -> bool {
        self.inner()
            .is_ok_and(|inner| inner.demoted.borrow().is_some())
    }

    /// How many connections are subscribed to `channel`: on this server
    /// (through `conn`, one of its connections) and on its peers.
    ///
    /// # Errors
    ///
    /// When this server or a peer could not answer (see
    /// [`Pool::peer_count`]).
    pub(crate) async fn count(
        &self,
        conn: &mut MultiplexedConnection,
        channel: &str,
    ) -> Result<i64> {
        let dialect = self.dialect();
        let (here, there) = tokio::join!(dialect.numsub(conn, channel), self.peer_count(channel));
        Ok(here? + there?)
    }

    /// How many connections the peers have subscribed to `channel`.
    ///
    /// # Errors
    ///
    /// [`Error::RedisUnavailable`] when a peer cannot be counted within
    /// the connect timeout: it may be a master just demoted that still
    /// holds an old holder's subscription, so the count fails closed (the
    /// acquisition retries, and looks the layout up again, until the
    /// cluster or the sentinels mark the peer down).
    pub(crate) async fn peer_count(&self, channel: &str) -> Result<i64> {
        let peers = match self.inner() {
            Ok(inner) => inner
                .peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            Err(_) => return Ok(0),
        };
        if peers.is_empty() {
            return Ok(0);
        }
        let counts = futures_util::future::join_all(peers.iter().map(|peer| async move {
            let counted = async {
                let mut conn = peer.command().await?;
                peer.dialect().numsub(&mut conn, channel).await
            };
            let outcome = match tokio::time::timeout(DEFAULT_UNAVAILABLE_TIMEOUT, counted).await {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {DEFAULT_UNAVAILABLE_TIMEOUT:?}"),
            };
            peer.forget_command().await;
            Err(Error::RedisUnavailable(format!(
                "a replica could not count the subscribers of {channel:?}: {outcome}"
            )))
        }))
        .await;
        counts.into_iter().sum()
    }

    /// The command connection, connected (and the server checked) once.
    pub(crate) async fn command(&self) -> Result<MultiplexedConnection> {
        let inner = self.inner()?;
        let mut cached = inner.command.lock().await;
        if let Some((conn, _)) = cached.as_ref() {
            return Ok(conn.clone());
        }
        let counted = inner.open.count();
        let timeout = inner.connect_timeout;
        let mut conn =
            tokio::time::timeout(timeout, inner.client.get_multiplexed_async_connection())
                .await
                .map_err(|_| {
                    Error::RedisUnavailable(format!("no connection to Redis within {timeout:?}"))
                })??;
        connection::check_topology(&mut conn, inner.check).await?;
        *cached = Some((conn.clone(), counted));
        Ok(conn)
    }

    /// Forget a command connection that failed, so the next call reconnects.
    pub(crate) async fn forget_command(&self) {
        if let Ok(inner) = self.inner() {
            *inner.command.lock().await = None;
        }
    }

    /// The connection probes collect replies on.
    pub(crate) async fn replies(&self) -> Result<Arc<Router>> {
        self.router(|inner| &inner.replies).await
    }

    /// The connection waiters hear release notices on.
    pub(crate) async fn notices(&self) -> Result<Arc<Router>> {
        self.router(|inner| &inner.notices).await
    }

    async fn router(
        &self,
        slot: impl Fn(&Inner) -> &tokio::sync::Mutex<Option<Arc<Router>>>,
    ) -> Result<Arc<Router>> {
        let inner = self.inner()?;
        let mut slot = slot(inner).lock().await;
        if let Some(router) = slot.as_ref().filter(|r| r.alive()) {
            return Ok(Arc::clone(router));
        }
        let router = Router::connect(
            &inner.client3,
            inner.connect_timeout,
            inner.open.count(),
            inner.dialect,
            Arc::as_ptr(inner) as usize,
        )
        .await?;
        *slot = Some(Arc::clone(&router));
        Ok(router)
    }

    /// An idle lock connection, or a new one.
    pub(crate) async fn lock_connection(&self) -> Result<LockConnection> {
        let inner = self.inner()?;
        loop {
            let idle = lock_idle(inner).connections.pop();
            match idle {
                Some((conn, _)) if conn.reusable() => return Ok(conn),
                Some(_) => continue,
                None => break,
            }
        }
        LockConnection::connect(
            &inner.client3,
            inner.connect_timeout,
            inner.open.count(),
            NodeTerms {
                dialect: inner.dialect,
                proof: inner.proof,
                demoted: inner.demoted.subscribe(),
            },
        )
        .await
    }

    /// Take back a lock connection after use: kept for the next acquisition
    /// if it is alive, unsubscribed and there is room; closed otherwise.
    pub(crate) fn give_back(&self, conn: LockConnection) {
        let Ok(inner) = self.inner() else { return };
        if !conn.reusable() || self.demoted() {
            return;
        }
        let mut idle = lock_idle(inner);
        if idle.connections.len() >= inner.max_idle.load(Ordering::SeqCst) {
            return;
        }
        if !idle.sweeping {
            let Ok(runtime) = runtime::runtime() else {
                return;
            };
            idle.sweeping = true;
            runtime.spawn(sweep(Arc::downgrade(inner)));
        }
        idle.connections.push((conn, Instant::now()));
    }
}

fn lock_idle(inner: &Inner) -> std::sync::MutexGuard<'_, Idle> {
    inner.idle.lock().unwrap_or_else(|p| p.into_inner())
}

/// Close idle connections while `too_many` says so, oldest first.
fn trim(inner: &Inner, too_many: impl Fn(&[(LockConnection, Instant)]) -> bool) {
    let mut idle = lock_idle(inner);
    while too_many(&idle.connections) {
        idle.connections.remove(0);
    }
}

/// A [`Pool`] that may be gone: for registries that must not keep
/// connections open on their own.
#[derive(Clone)]
pub struct WeakPool(WeakKind);

#[derive(Clone)]
enum WeakKind {
    Node(Weak<Inner>),
    Routed(Weak<Routed>),
}

impl WeakPool {
    /// The pool, if anyone still uses it.
    pub fn upgrade(&self) -> Option<Pool> {
        let kind = match &self.0 {
            WeakKind::Node(inner) => Kind::Node(inner.upgrade()?),
            WeakKind::Routed(routed) => Kind::Routed(routed.upgrade()?),
        };
        Some(Pool { kind })
    }
}

impl std::fmt::Debug for WeakPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakPool").finish_non_exhaustive()
    }
}

/// Close the connections that stay idle longer than [`IDLE_TIMEOUT`];
/// ends when none is left (the next give-back starts another).
async fn sweep(pool: Weak<Inner>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        let Some(inner) = pool.upgrade() else { return };
        let closing = {
            let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
            let (stale, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut idle.connections)
                .into_iter()
                .partition(|(_, since)| since.elapsed() >= IDLE_TIMEOUT);
            idle.connections = kept;
            if idle.connections.is_empty() {
                idle.sweeping = false;
            }
            (stale, idle.sweeping)
        };
        let (stale, sweeping) = closing;
        drop(stale);
        if !sweeping {
            return;
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}
