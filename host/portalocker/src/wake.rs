//! Which async waits wait for which file, so a release in this process
//! wakes them at once (a release elsewhere is seen at their next short
//! pause).

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::Notify;

use crate::sys::{self, FileKey};

static WAITERS: LazyLock<Mutex<HashMap<FileKey, Weak<Notify>>>> = LazyLock::new(Default::default);

/// How many async waits are in progress in this process: releases skip
/// the registry when there are none.
static WAITING: AtomicUsize = AtomicUsize::new(0);

fn waiters() -> std::sync::MutexGuard<'static, HashMap<FileKey, Weak<Notify>>> {
    WAITERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The notifier of the waits for `key`, made on first use.
pub(crate) fn notifier(key: FileKey) -> Arc<Notify> {
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

/// The lock on `file` is being released in this process: wake its async
/// waiters. Costs one atomic load when nobody waits.
pub(crate) fn released(file: &File) {
    if WAITING.load(Ordering::SeqCst) == 0 {
        return;
    }
    let notify = waiters().get(&sys::key_of(file)).and_then(Weak::upgrade);
    if let Some(notify) = notify {
        notify.notify_waiters();
    }
}

/// Counts one wait in [`WAITING`] until dropped (even when cancelled).
pub(crate) struct Waiting;

impl Waiting {
    /// Count one more wait.
    pub(crate) fn start() -> Self {
        WAITING.fetch_add(1, Ordering::SeqCst);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::SeqCst);
    }
}
