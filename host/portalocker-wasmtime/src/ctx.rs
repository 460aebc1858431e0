//! What the embedder grants a plugin, and the view the bindings work on.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use wasmtime::component::{HasData, ResourceTable};

use portalocker::Wait;
use portalocker::redis::{Pool, WeakPool};

use crate::budget::{Budget, Limits, Usage};
use crate::error::LockError;
use crate::sandbox::Grant;

/// The grants and limits of one plugin instance. Build it with
/// [`LocksCtx::builder`].
///
/// ```
/// use std::time::Duration;
/// use portalocker_wasmtime::LocksCtx;
/// # let dir = tempfile::tempdir()?;
/// let ctx = LocksCtx::builder()
///     .preopened_dir(dir.path(), "/data")?
///     .max_held(8)
///     .max_handles(64)
///     .max_wait(Duration::from_secs(30))
///     .build();
/// assert_eq!(ctx.usage().handles, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LocksCtx {
    pub(crate) grants: Vec<Arc<Grant>>,
    pub(crate) redis: Option<RedisGrant>,
    pub(crate) budget: Arc<Budget>,
}

impl LocksCtx {
    /// A builder with no grants and the default [`Limits`].
    pub fn builder() -> LocksCtxBuilder {
        LocksCtxBuilder {
            grants: Vec::new(),
            redis: None,
            limits: Limits::default(),
        }
    }

    /// How many locks and permits the instance holds (or is taking) now.
    pub fn held(&self) -> usize {
        self.budget.usage().held
    }

    /// Everything the instance holds now, by kind.
    pub fn usage(&self) -> Usage {
        self.budget.usage()
    }

    /// The instance's limits.
    pub fn limits(&self) -> Limits {
        *self.budget.limits()
    }

    /// The timeout for a wait the guest asked for: `None` means "as long as
    /// it takes", which the host's maximum wait bounds.
    pub(crate) fn wait_limit(
        &self,
        requested: Option<Duration>,
    ) -> Result<Option<Duration>, LockError> {
        match (requested, self.budget.limits().max_wait) {
            (Some(t), Some(max)) if t > max => Err(LockError::limit(format!(
                "a wait of {t:?} is longer than the {max:?} the host allows"
            ))),
            (Some(t), _) => Ok(Some(t)),
            (None, max) => Ok(max),
        }
    }
}

impl fmt::Debug for LocksCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocksCtx")
            .field(
                "grants",
                &self
                    .grants
                    .iter()
                    .map(|g| g.guest_name())
                    .collect::<Vec<_>>(),
            )
            .field("redis", &self.redis)
            .field("limits", self.budget.limits())
            .field("usage", &self.usage())
            .finish()
    }
}

/// Builds a [`LocksCtx`]; also a template for many: every context built
/// from one builder shares its opened directories (nothing is reopened),
/// and each gets its own budget.
#[derive(Debug, Clone)]
pub struct LocksCtxBuilder {
    grants: Vec<Arc<Grant>>,
    redis: Option<RedisGrant>,
    limits: Limits,
}

impl LocksCtxBuilder {
    /// Let the plugin lock files in `host`, which it sees at `guest`. Grant
    /// the same pairs, in the same order, as to `WasiCtxBuilder::preopened_dir`:
    /// then a path means the same file to both (a later grant wins a tie, as
    /// in the plugin's C library). `"."` makes relative paths land here.
    ///
    /// # Errors
    ///
    /// When `host` cannot be opened as a directory or `guest` is empty.
    pub fn preopened_dir(mut self, host: impl AsRef<Path>, guest: &str) -> io::Result<Self> {
        self.grants
            .push(Arc::new(Grant::open(host.as_ref(), guest)?));
        Ok(self)
    }

    /// All the limits at once.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How many locks and permits the plugin may hold (or be taking) at
    /// once; past that, acquiring fails with `limit-exceeded`. Each holds a
    /// descriptor or a Redis connection while it lasts.
    pub fn max_held(mut self, max: usize) -> Self {
        self.limits.max_held = max;
        self
    }

    /// How many lock handles (file locks, semaphores, Redis locks, guards and
    /// permits) the plugin may have open at once; past that, opening or
    /// acquiring fails with `limit-exceeded`.
    pub fn max_handles(mut self, max: usize) -> Self {
        self.limits.max_handles = max;
        self
    }

    /// How many bytes of names and paths the plugin's handles may keep on
    /// the host.
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.limits.max_bytes = max;
        self
    }

    /// How many lock-file descriptors may stay open between locks, to make
    /// re-locking cheaper; past that, a released lock's file is closed.
    pub fn max_idle_descriptors(mut self, max: usize) -> Self {
        self.limits.max_idle_descriptors = max;
        self
    }

    /// How many Redis locks the plugin may be taking or holding at once
    /// (each uses a connection of its own while it does).
    pub fn max_redis_connections(mut self, max: usize) -> Self {
        self.limits.max_redis_connections = max;
        self
    }

    /// The longest the plugin may wait for a lock: longer timeouts fail with
    /// `limit-exceeded`, and untimed waits give up with `timed-out` here.
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.limits.max_wait = Some(max);
        self
    }

    /// Let the plugin take Redis locks on the server at `url`, every name
    /// it uses prefixed with `prefix` (so `open("jobs")` is the lock
    /// `{prefix}jobs`). The plugin never chooses the server. Every context
    /// of this process granting the same URL shares one connection pool.
    ///
    /// # Errors
    ///
    /// When `url` is not a Redis URL, or `prefix` is not printable ASCII
    /// without spaces.
    pub fn redis(mut self, url: &str, prefix: &str) -> io::Result<Self> {
        self.redis = Some(RedisGrant::shared(url, prefix)?);
        Ok(self)
    }

    /// [`LocksCtxBuilder::redis`] through a pool the embedder manages.
    ///
    /// # Errors
    ///
    /// When `prefix` is not printable ASCII without spaces.
    pub fn redis_pool(mut self, pool: &portalocker::redis::Pool, prefix: &str) -> io::Result<Self> {
        self.redis = Some(RedisGrant::new(pool.clone(), prefix)?);
        Ok(self)
    }

    /// A context with these grants and limits (call it once per plugin
    /// instance: it costs no system call).
    pub fn build(&self) -> LocksCtx {
        LocksCtx {
            grants: self.grants.clone(),
            redis: self.redis.clone(),
            budget: Budget::new(self.limits),
        }
    }
}

/// What the host functions work on: the context and the instance's
/// resource table.
pub struct LocksCtxView<'a> {
    /// The grants and limits.
    pub ctx: &'a mut LocksCtx,
    /// Where the guest's handles live.
    pub table: &'a mut ResourceTable,
}

/// Implemented by the embedder's store data to hand out the view.
///
/// ```
/// use portalocker_wasmtime::{LocksCtx, LocksCtxView, LocksView};
/// use wasmtime::component::ResourceTable;
///
/// struct State {
///     locks: LocksCtx,
///     table: ResourceTable,
/// }
///
/// impl LocksView for State {
///     fn locks(&mut self) -> LocksCtxView<'_> {
///         LocksCtxView { ctx: &mut self.locks, table: &mut self.table }
///     }
/// }
/// ```
pub trait LocksView: Send {
    /// The view on this store's locks.
    fn locks(&mut self) -> LocksCtxView<'_>;
}

/// The [`HasData`] marker for linking these interfaces.
pub struct Locks;

impl HasData for Locks {
    type Data<'a> = LocksCtxView<'a>;
}

/// The longest namespace prefix a host may set, in bytes.
const MAX_PREFIX_LEN: usize = 512;

/// The Redis server and namespace a plugin may use.
#[derive(Clone)]
pub(crate) struct RedisGrant {
    pool: Pool,
    prefix: String,
}

impl RedisGrant {
    /// The connections to the server.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// What every lock name is prefixed with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// The pools of this process, by URL: contexts granting the same server
/// share one, and it closes when the last of them is gone.
static POOLS: LazyLock<Mutex<HashMap<String, WeakPool>>> = LazyLock::new(Default::default);

impl RedisGrant {
    /// The grant of `url` through the process's shared pool for it.
    pub(crate) fn shared(url: &str, prefix: &str) -> io::Result<Self> {
        let pool = {
            let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
            pools.retain(|_, pool| pool.upgrade().is_some());
            match pools.get(url).and_then(WeakPool::upgrade) {
                Some(pool) => pool,
                None => {
                    let pool = Pool::open(url).map_err(|e| {
                        let message = match e {
                            portalocker::Error::InvalidArgument(message) => message,
                            other => other.to_string(),
                        };
                        io::Error::new(io::ErrorKind::InvalidInput, message)
                    })?;
                    pools.insert(url.to_owned(), pool.downgrade());
                    pool
                }
            }
        };
        Self::new(pool, prefix)
    }

    /// The grant of `pool`'s server with names prefixed by `prefix`.
    pub(crate) fn new(pool: Pool, prefix: &str) -> io::Result<Self> {
        if prefix.len() > MAX_PREFIX_LEN || !prefix.chars().all(|c| c.is_ascii_graphic()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a Redis namespace prefix must be at most {MAX_PREFIX_LEN} bytes of printable ASCII without spaces: {prefix:?}"
                ),
            ));
        }
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
        })
    }
}

impl fmt::Debug for RedisGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisGrant")
            .field("prefix", &self.prefix)
            .field("pool", &self.pool)
            .finish()
    }
}

/// How long a guest asked to wait (`None`: as long as it takes).
pub(crate) fn waiting(timeout: Option<Duration>) -> Wait {
    timeout.map_or(Wait::FOREVER, Wait::up_to)
}
