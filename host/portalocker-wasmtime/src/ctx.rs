//! What the embedder grants a plugin, and the view the bindings work on.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::component::{HasData, ResourceTable};

use crate::error::LockError;
use crate::sandbox::Grant;

/// The default cap on locks and permits one plugin instance holds at once.
pub const DEFAULT_MAX_HELD: usize = 64;

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
///     .max_wait(Duration::from_secs(30))
///     .build();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LocksCtx {
    pub(crate) grants: Vec<Arc<Grant>>,
    pub(crate) redis: Option<RedisGrant>,
    pub(crate) max_held: usize,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) held: Arc<AtomicUsize>,
}

impl LocksCtx {
    /// A builder with no grants, [`DEFAULT_MAX_HELD`] and no wait limit.
    pub fn builder() -> LocksCtxBuilder {
        LocksCtxBuilder {
            grants: Vec::new(),
            redis: None,
            max_held: DEFAULT_MAX_HELD,
            max_wait: None,
        }
    }

    /// How many locks and permits the instance holds now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Count one more lock or permit, or refuse past the limit.
    pub(crate) fn reserve(&self) -> Result<Held, LockError> {
        let counter = Arc::clone(&self.held);
        let max = self.max_held;
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|n| {
                LockError::limit(format!(
                    "the plugin already holds {n} locks and permits; the host allows {max}"
                ))
            })?;
        Ok(Held(counter))
    }

    /// The timeout for a wait the guest asked for: `None` means "as long as
    /// it takes", which the host's maximum wait bounds.
    pub(crate) fn wait_limit(
        &self,
        requested: Option<Duration>,
    ) -> Result<Option<Duration>, LockError> {
        match (requested, self.max_wait) {
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
            .field("max_held", &self.max_held)
            .field("max_wait", &self.max_wait)
            .field("held", &self.held())
            .finish()
    }
}

/// Builds a [`LocksCtx`].
#[derive(Debug)]
pub struct LocksCtxBuilder {
    grants: Vec<Grant>,
    redis: Option<RedisGrant>,
    max_held: usize,
    max_wait: Option<Duration>,
}

impl LocksCtxBuilder {
    /// Let the plugin lock files in `host`, which it sees at `guest` (use the
    /// same pair as for `WasiCtxBuilder::preopened_dir`, so a path means the
    /// same file to both). `"."` makes relative guest paths land here.
    ///
    /// # Errors
    ///
    /// When `host` cannot be opened as a directory or `guest` is malformed.
    pub fn preopened_dir(mut self, host: impl AsRef<Path>, guest: &str) -> io::Result<Self> {
        self.grants.push(Grant::open(host.as_ref(), guest)?);
        Ok(self)
    }

    /// How many locks and permits the plugin may hold at once; past that,
    /// acquiring fails with `limit-exceeded`.
    pub fn max_held(mut self, max: usize) -> Self {
        self.max_held = max;
        self
    }

    /// The longest the plugin may wait for a lock: longer timeouts fail with
    /// `limit-exceeded`, and untimed waits give up with `timed-out` here.
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = Some(max);
        self
    }

    /// Let the plugin take Redis locks on the server at `url`, every name
    /// it uses prefixed with `prefix` (so `open("jobs")` is the lock
    /// `{prefix}jobs`). The plugin never chooses the server.
    ///
    /// # Errors
    ///
    /// When `url` is not a Redis URL.
    pub fn redis(mut self, url: &str, prefix: &str) -> io::Result<Self> {
        let client = redis_client(url)?;
        self.redis = Some(RedisGrant {
            client,
            prefix: prefix.to_owned(),
        });
        Ok(self)
    }

    /// The context.
    pub fn build(self) -> LocksCtx {
        LocksCtx {
            grants: self.grants.into_iter().map(Arc::new).collect(),
            redis: self.redis,
            max_held: self.max_held,
            max_wait: self.max_wait,
            held: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// The Redis server and namespace a plugin may use.
#[derive(Clone)]
pub(crate) struct RedisGrant {
    pub(crate) client: portalocker::redis::Client,
    pub(crate) prefix: String,
}

impl fmt::Debug for RedisGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisGrant")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_client(url: &str) -> io::Result<portalocker::redis::Client> {
    portalocker::redis::Client::open(url).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid Redis URL {url:?}: {e}"),
        )
    })
}

/// One held lock or permit, counted against the limit until dropped.
#[derive(Debug)]
pub(crate) struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
