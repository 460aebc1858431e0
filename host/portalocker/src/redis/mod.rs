//! portalocker's Redis lock: holding lock `C` is being subscribed to the
//! Redis channel `C`, so a crashed holder frees it at once. Wire-compatible
//! with portalocker 4.4.2 (Python and Rust processes share locks), with an
//! instant release, waits that watch the subscriber count instead of
//! sleeping blindly, fencing tokens and loss detection.
//!
//! ```no_run
//! use portalocker::redis::RedisLock;
//!
//! let lock = RedisLock::open("redis://127.0.0.1:6379/", "nightly-report")?.fencing(true);
//! let guard = lock.acquire()?; // waits up to 5 s, like portalocker
//! println!("fencing token {:?}", guard.fencing_token());
//! if guard.is_lost() {
//!     eprintln!("lost the lock: someone else may hold it now");
//! }
//! drop(guard); // released at once
//! # Ok::<(), portalocker::Error>(())
//! ```
//!
//! On a `redis://` URL the lock takes a single standalone Redis primary,
//! and refuses a Redis Cluster node and a replica (neither would give
//! mutual exclusion with portalocker's protocol). A `redis+cluster://` URL
//! runs the same protocol on a cluster's sharded pub/sub, each lock on the
//! shard that owns its hash slot; a `redis+sentinel://` URL follows a
//! Sentinel group's master (see [`Pool::open`]). A failover, or a slot
//! moving, is the loss of every lock held where it happened.
//!
//! Locks on one server can share their connections through a [`Pool`]: then
//! any number of lock names costs three shared connections plus one per lock
//! being taken or held.
//!
//! Every acquisition is cancel-safe: [`RedisLock::acquire_async`] runs in the
//! caller's task, and dropping it lets go of everything it had taken at once.
//!
//! # Under faults
//!
//! - A server that cannot be reached, is restarting, loading or paused, or
//!   a connection that is killed, costs only the attempt under way: the
//!   acquisition reconnects and retries until its deadline, then reports
//!   [`Error::RedisUnavailable`].
//! - A holder pings the server every 100 ms and counts its lock lost when
//!   the server has not answered for half of `unavailable_timeout` (at most
//!   0.5 s): before a peer with the default 1 s window can reap it. A peer
//!   with a shorter window voids that margin.
//! - Wedged holders are reaped even while many waiters churn the channel
//!   (probes anchored on the holders subscribed before their ping).
//! - Fencing tokens are drawn on the lock's own connection, so a reaped
//!   holder never draws one after its successor. The counter lives in Redis
//!   and starts again at 1 on a server restarted without persistence.

mod acquire;
mod cluster;
mod connection;
mod decide;
mod guard;
mod lock;
mod pool;
mod probe;
mod protocol;
mod reply;
mod routed;
mod router;
mod runtime;
mod sentinel;
mod servers;
mod shared;
mod status;

use std::time::Duration;

pub use self::guard::{LossWatch, RedisLockGuard};
pub use self::lock::RedisLock;
pub use self::pool::{DEFAULT_MAX_IDLE, Pool, WeakPool};
pub use self::protocol::MAX_CHANNEL_LEN;
pub use self::status::{ClientInfo, LockStatus, Participant, Role};
use crate::error::Error;
/// The Redis client type ([`RedisLock::with_client`] takes one).
pub use redis::Client;

/// portalocker's default `unavailable_timeout`: how long a probe waits for
/// replies before reaping silent subscribers.
pub const DEFAULT_UNAVAILABLE_TIMEOUT: Duration = Duration::from_secs(1);

impl From<redis::RedisError> for Error {
    /// A failure the server or the link may get over (a dropped or refused
    /// connection, a timeout, `LOADING`, `TRYAGAIN`, `MASTERDOWN`, a
    /// cluster's `MOVED`, `ASK`, `CLUSTERDOWN` and `READONLY`) is
    /// [`Error::RedisUnavailable`]; authentication, ACL, wrong-type and
    /// protocol errors are [`Error::Redis`].
    fn from(error: redis::RedisError) -> Self {
        use redis::{ErrorKind, RetryMethod};
        let transient = error.kind() != ErrorKind::AuthenticationFailed
            && matches!(
                error.retry_method(),
                RetryMethod::Reconnect
                    | RetryMethod::RetryImmediately
                    | RetryMethod::WaitAndRetry
                    // A cluster's slot moved, or its shard failed over:
                    // the lock looks its server up again.
                    | RetryMethod::MovedRedirect
                    | RetryMethod::AskRedirect
                    | RetryMethod::RefreshSlotsAndRetry
            );
        if transient {
            Error::RedisUnavailable(error.to_string())
        } else {
            Error::Redis(error.to_string())
        }
    }
}
