//! Waiting for a lock without a thread: try, then sleep until a release in
//! this process wakes us or a short pause (growing to 10 ms) passes, so a
//! release by another process is seen within that pause.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::error::LockError;
use crate::sandbox::FileKey;

const FIRST_PAUSE: Duration = Duration::from_micros(100);
const LONGEST_PAUSE: Duration = Duration::from_millis(10);

static WAITERS: LazyLock<Mutex<HashMap<FileKey, Weak<Notify>>>> = LazyLock::new(Default::default);

/// How many async waits are in progress in this process: releases skip
/// the registry when there are none.
static WAITING: AtomicUsize = AtomicUsize::new(0);

fn waiters() -> std::sync::MutexGuard<'static, HashMap<FileKey, Weak<Notify>>> {
    WAITERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn notifier(key: FileKey) -> Arc<Notify> {
    let mut map = waiters();
    if let Some(notify) = map.get(&key).and_then(Weak::upgrade) {
        return notify;
    }
    let notify = Arc::new(Notify::new());
    map.insert(key, Arc::downgrade(&notify));
    if map.len() > 256 {
        map.retain(|_, weak| weak.strong_count() > 0);
    }
    notify
}

/// A lock on `key` was released in this process: wake its waiters.
pub(crate) fn released(key: FileKey) {
    if WAITING.load(Ordering::SeqCst) == 0 {
        return;
    }
    let notify = waiters().get(&key).and_then(Weak::upgrade);
    if let Some(notify) = notify {
        notify.notify_waiters();
    }
}

/// Call `attempt` until it succeeds (`true`) or `deadline` passes (`false`),
/// sleeping between attempts until a release of `key` in this process or a
/// short pause. Cancel-safe: dropping the future stops the wait.
pub(crate) async fn wait_until(
    key: Option<FileKey>,
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> Result<bool, LockError>,
) -> Result<bool, LockError> {
    let notify = key.map(notifier);
    WAITING.fetch_add(1, Ordering::SeqCst);
    let _waiting = Waiting;
    let mut pause = FIRST_PAUSE;
    loop {
        // Listen before trying, so a release between the two is not missed.
        let notified = notify.as_ref().map(|n| n.notified());
        tokio::pin!(notified);
        if let Some(listening) = notified.as_mut().as_pin_mut() {
            listening.enable();
        }
        if attempt()? {
            return Ok(true);
        }
        let now = Instant::now();
        let nap = match deadline {
            Some(deadline) if now >= deadline => return Ok(false),
            Some(deadline) => pause.min(deadline - now),
            None => pause,
        };
        match notified.as_pin_mut() {
            Some(listening) => {
                tokio::select! {
                    () = listening => {}
                    () = tokio::time::sleep(nap) => {}
                }
            }
            None => tokio::time::sleep(nap).await,
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// The instant `timeout` from now; `None` for no timeout (or one too far
/// away to represent).
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// What is left until `deadline`.
pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Counts one wait in [`WAITING`] until dropped (even when cancelled).
struct Waiting;

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::SeqCst);
    }
}
