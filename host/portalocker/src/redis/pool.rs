//! What the Redis locks on one server share: one command connection, one
//! connection that collects probe replies, one that hears release notices,
//! and a few idle lock connections to lend. Only a lock that is being taken
//! or held has a connection of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::Client;
use redis::aio::MultiplexedConnection;

use super::DEFAULT_UNAVAILABLE_TIMEOUT;
use super::connection::{self, Counted, LockConnection, OpenCount};
use super::router::Router;
use super::runtime;
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
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    client3: Client,
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
    /// A pool for the server at `url` (`redis://host:port/db`). Connects
    /// lazily.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed URL.
    pub fn open(url: &str) -> Result<Self> {
        let client = Client::open(url)
            .map_err(|e| Error::invalid(format!("invalid Redis URL {url:?}: {e}")))?;
        Self::with_client(client)
    }

    /// A pool for an existing client's server.
    ///
    /// # Errors
    ///
    /// As [`Pool::open`].
    pub fn with_client(client: Client) -> Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                client3: connection::resp3(&client)?,
                client,
                connect_timeout: DEFAULT_UNAVAILABLE_TIMEOUT,
                command: tokio::sync::Mutex::new(None),
                replies: tokio::sync::Mutex::new(None),
                notices: tokio::sync::Mutex::new(None),
                idle: Mutex::default(),
                max_idle: AtomicUsize::new(DEFAULT_MAX_IDLE),
                open: Arc::default(),
            }),
        })
    }

    /// Keep at most `max` idle lock connections (default
    /// [`DEFAULT_MAX_IDLE`]); zero closes every lock connection on release.
    pub fn max_idle(self, max: usize) -> Self {
        self.inner.max_idle.store(max, Ordering::SeqCst);
        self.trim(|idle| idle.len() > max);
        self
    }

    /// How many connections to the server the pool has open now.
    pub fn connections(&self) -> usize {
        self.inner.open.get()
    }

    /// Whether `self` and `other` are the same pool.
    pub fn same_as(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// A reference that does not keep the pool (and its connections) alive.
    pub fn downgrade(&self) -> WeakPool {
        WeakPool(Arc::downgrade(&self.inner))
    }

    /// The command connection, connected (and the server checked) once.
    pub(crate) async fn command(&self) -> Result<MultiplexedConnection> {
        let mut cached = self.inner.command.lock().await;
        if let Some((conn, _)) = cached.as_ref() {
            return Ok(conn.clone());
        }
        let counted = self.inner.open.count();
        let timeout = self.inner.connect_timeout;
        let mut conn = tokio::time::timeout(
            timeout,
            self.inner.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| {
            Error::RedisUnavailable(format!("no connection to Redis within {timeout:?}"))
        })??;
        connection::check_topology(&mut conn).await?;
        *cached = Some((conn.clone(), counted));
        Ok(conn)
    }

    /// Forget a command connection that failed, so the next call reconnects.
    pub(crate) async fn forget_command(&self) {
        *self.inner.command.lock().await = None;
    }

    /// The connection probes collect replies on.
    pub(crate) async fn replies(&self) -> Result<Arc<Router>> {
        self.router(&self.inner.replies).await
    }

    /// The connection waiters hear release notices on.
    pub(crate) async fn notices(&self) -> Result<Arc<Router>> {
        self.router(&self.inner.notices).await
    }

    async fn router(&self, slot: &tokio::sync::Mutex<Option<Arc<Router>>>) -> Result<Arc<Router>> {
        let mut slot = slot.lock().await;
        if let Some(router) = slot.as_ref().filter(|r| r.alive()) {
            return Ok(Arc::clone(router));
        }
        let router = Router::connect(
            &self.inner.client3,
            self.inner.connect_timeout,
            self.inner.open.count(),
        )
        .await?;
        *slot = Some(Arc::clone(&router));
        Ok(router)
    }

    /// An idle lock connection, or a new one.
    pub(crate) async fn lock_connection(&self) -> Result<LockConnection> {
        loop {
            let idle = self.lock_idle().connections.pop();
            match idle {
                Some((conn, _)) if conn.reusable() => return Ok(conn),
                Some(_) => continue,
                None => break,
            }
        }
        LockConnection::connect(
            &self.inner.client3,
            self.inner.connect_timeout,
            self.inner.open.count(),
        )
        .await
    }

    /// Take back a lock connection after use: kept for the next acquisition
    /// if it is alive, unsubscribed and there is room; closed otherwise.
    pub(crate) fn give_back(&self, conn: LockConnection) {
        if !conn.reusable() {
            return;
        }
        let mut idle = self.lock_idle();
        if idle.connections.len() >= self.inner.max_idle.load(Ordering::SeqCst) {
            return;
        }
        if !idle.sweeping {
            let Ok(runtime) = runtime::runtime() else {
                return;
            };
            idle.sweeping = true;
            runtime.spawn(sweep(Arc::downgrade(&self.inner)));
        }
        idle.connections.push((conn, Instant::now()));
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Close idle connections while `too_many` says so, oldest first.
    fn trim(&self, too_many: impl Fn(&[(LockConnection, Instant)]) -> bool) {
        let mut idle = self.lock_idle();
        while too_many(&idle.connections) {
            idle.connections.remove(0);
        }
    }
}

/// A [`Pool`] that may be gone: for registries that must not keep
/// connections open on their own.
#[derive(Clone)]
pub struct WeakPool(Weak<Inner>);

impl WeakPool {
    /// The pool, if anyone still uses it.
    pub fn upgrade(&self) -> Option<Pool> {
        self.0.upgrade().map(|inner| Pool { inner })
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
