//! A held Redis lock: loss detection, and a release that leaves the channel
//! at once and tells Rust waiters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedMutexGuard, watch};

use super::connection::LockConnection;
use super::pool::Pool;
use super::protocol::{self, Notice};
use super::runtime;
use super::shared::{Released, Shared};
use crate::error::{Error, Result};
use crate::flags::LockMode;

/// What a grant hands its guard.
pub(crate) struct Grant {
    /// The subscribed lock connection.
    pub(crate) conn: LockConnection,
    /// The instance's turn, held until the release has unsubscribed.
    pub(crate) turn: OwnedMutexGuard<()>,
    /// Where the connection goes back to.
    pub(crate) pool: Pool,
    /// The pool the lock was opened with (a cluster's or Sentinel group's,
    /// whose watchers report a failover while the guard lives).
    pub(crate) origin: Pool,
    /// What the instance's clones share.
    pub(crate) shared: Arc<Shared>,
    /// The lock name.
    pub(crate) name: String,
    /// Its channel on the wire.
    pub(crate) wire: String,
    /// The instance's holder id.
    pub(crate) holder_id: String,
    /// Exclusive or shared.
    pub(crate) mode: LockMode,
    /// The token drawn, if fenced.
    pub(crate) fencing_token: Option<u64>,
}

/// A held Redis lock. Dropping it releases the lock at once (it
/// unsubscribes; Rust waiters are told on a side channel).
#[must_use = "if unused the lock is released immediately"]
pub struct RedisLockGuard {
    held: Option<(LockConnection, OwnedMutexGuard<()>)>,
    lost: watch::Receiver<Option<String>>,
    released: watch::Sender<bool>,
    pool: Pool,
    _origin: Pool,
    shared: Arc<Shared>,
    name: String,
    wire: String,
    holder_id: String,
    mode: LockMode,
    fencing_token: Option<u64>,
}

impl RedisLockGuard {
    /// The guard of a grant of lock `channel` to `holder_id` on `conn`,
    /// holding the instance's `turn`.
    pub(crate) fn new(grant: Grant) -> Self {
        Self {
            lost: grant.conn.watch_lost(),
            held: Some((grant.conn, grant.turn)),
            released: watch::channel(false).0,
            pool: grant.pool,
            _origin: grant.origin,
            shared: grant.shared,
            name: grant.name,
            wire: grant.wire,
            holder_id: grant.holder_id,
            mode: grant.mode,
            fencing_token: grant.fencing_token,
        }
    }

    /// The fencing token drawn for this acquisition (with
    /// [`RedisLock::fencing`](super::RedisLock::fencing)): it grows with
    /// every fenced acquisition, Python's included, so a protected resource
    /// can reject a stale holder. Shared grants draw one too (our
    /// extension: Python's readers draw none), so a resource that has seen
    /// a reader's token rejects a writer that was reaped while readers took
    /// over.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }

    /// The lock name.
    pub fn channel(&self) -> &str {
        &self.name
    }

    /// The holder id peers see.
    pub fn holder_id(&self) -> &str {
        &self.holder_id
    }

    /// Exclusive or shared.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// Whether the lock was lost (its subscription connection died: killed
    /// by a reaper, a server restart, a broken link). Never blocks.
    pub fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    /// Check the lock is still held.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] with the reason when it was lost.
    pub fn ensure_held(&self) -> Result<()> {
        match self.lost.borrow().clone() {
            Some(reason) => Err(Error::Lost {
                channel: self.name.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Block until the lock is lost or `timeout` passes; `true` if lost.
    /// Do not call it from async code: use [`RedisLockGuard::lost`] there.
    pub fn wait_lost(&self, timeout: Duration) -> bool {
        let mut watch = self.loss_watch();
        runtime::block_on(async move {
            tokio::time::timeout(timeout, watch.lost())
                .await
                .ok()
                .flatten()
                .is_some()
        })
        .unwrap_or(false)
    }

    /// Wait until the lock is lost (async); returns the reason.
    pub async fn lost(&self) -> String {
        let mut lost = self.lost.clone();
        match lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the subscription ended".into(),
        }
    }

    /// A handle that waits for this lock's loss from any thread, and stops
    /// waiting the moment the guard is released or dropped.
    pub fn loss_watch(&self) -> LossWatch {
        LossWatch {
            lost: self.lost.clone(),
            released: self.released.subscribe(),
        }
    }

    /// Release now: when this returns (outside async code) the
    /// subscription is gone and Rust waiters have been told.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] when the lock had already been lost (someone else
    /// may have held it meanwhile).
    pub fn release(mut self) -> Result<()> {
        let held = self.ensure_held();
        self.release_now();
        held
    }

    /// Run the release: awaited outside async code, spawned on the Redis
    /// runtime inside it (tokio does not let async code block).
    fn release_now(&mut self) {
        let Some(release) = self.take_release() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            if let Ok(runtime) = runtime::runtime() {
                runtime.spawn(release);
            }
        } else {
            let _ = runtime::block_on(release);
        }
    }

    /// The work of releasing: unsubscribe and announce, give the connection
    /// back to the pool if it is healthy, then free the instance's turn.
    fn take_release(&mut self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let (mut conn, turn) = self.held.take()?;
        self.released.send_replace(true);
        let notice = if conn.was_polled() {
            Notice::Yield
        } else {
            Notice::Released
        };
        let at = Instant::now();
        let record = |others| {
            *self
                .shared
                .released
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Released { at, notice, others });
        };
        record(None);
        let shared = Arc::clone(&self.shared);
        let turn = Releasing::new(turn, Arc::clone(&self.shared));
        let pool = self.pool.clone();
        let channel = protocol::release_channel(&self.wire);
        Some(async move {
            if conn.lost().is_none()
                && let Ok(heard) = conn.unsubscribe(Some((&channel, notice))).await
            {
                // This instance's own listener (kept between acquisitions)
                // heard it too.
                let own = i64::from(shared.notices.lock().await.is_some());
                if let Some(released) = shared
                    .released
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                    .filter(|r| r.at == at)
                {
                    released.others = Some((heard - own).max(0));
                }
            }
            pool.give_back(conn);
            drop(turn);
        })
    }
}

impl Drop for RedisLockGuard {
    fn drop(&mut self) {
        self.release_now();
    }
}

impl std::fmt::Debug for RedisLockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLockGuard")
            .field("channel", &self.name)
            .field("holder_id", &self.holder_id)
            .field("mode", &self.mode)
            .field("fencing_token", &self.fencing_token)
            .field("lost", &self.is_lost())
            .finish()
    }
}

/// A turn held by a release under way: counted in
/// [`Shared::releasing`] so the instance's next acquisition waits for it
/// instead of taking it for contention, and freed (turn first, then the
/// count) however the release ends.
struct Releasing {
    turn: Option<OwnedMutexGuard<()>>,
    shared: Arc<Shared>,
}

impl Releasing {
    fn new(turn: OwnedMutexGuard<()>, shared: Arc<Shared>) -> Self {
        shared.releasing.fetch_add(1, Ordering::SeqCst);
        Self {
            turn: Some(turn),
            shared,
        }
    }
}

impl Drop for Releasing {
    fn drop(&mut self) {
        drop(self.turn.take());
        self.shared.releasing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits for the loss of one held lock from any thread (see
/// [`RedisLockGuard::loss_watch`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct LossWatch {
    lost: watch::Receiver<Option<String>>,
    released: watch::Receiver<bool>,
}

impl LossWatch {
    /// Whether the lock was lost (never blocks; `false` once the guard
    /// was released without a loss).
    pub fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    /// Wait until the lock is lost (`Some(reason)`) or its guard is
    /// released or dropped (`None`), whichever comes first.
    pub async fn lost(&mut self) -> Option<String> {
        if *self.released.borrow() {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.released.wait_for(|released| *released) => None,
            reason = self.lost.wait_for(Option::is_some) => Some(match reason {
                Ok(reason) => reason.clone().unwrap_or_default(),
                Err(_) => "the connection closed".to_owned(),
            }),
        }
    }

    /// [`LossWatch::lost`], blocking the calling thread (not from async
    /// code).
    pub fn wait(&mut self) -> Option<String> {
        let mut watch = self.clone();
        runtime::block_on(async move { watch.lost().await }).unwrap_or(None)
    }
}
