//! Loss of a held lock, as the `lost` futures of `portalocker:locks@0.2.0`
//! report it.
//!
//! A guard keeps a [`Released`] signal, made on the first `lost` call (a
//! guard nobody watches pays nothing); releasing or dropping the guard ends
//! every watch of it, which then never resolves. A file lock or slot is lost
//! when its file is unlinked or replaced: someone else can then lock the
//! file its path names. The watch looks every [`FILE_LOSS_POLL`] while the
//! guest awaits it (one `fstatat`), and not at all otherwise. Each watch is a
//! handle charged to the plugin's budget for as long as the guest keeps it.

use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::budget::Charge;
use crate::sandbox::{FileKey, Resolved};

/// How often a watch of a file lock looks at the lock file's name.
pub(crate) const FILE_LOSS_POLL: Duration = Duration::from_millis(50);

/// Tells a guard's loss watches that it was released: dropping it (with
/// the guard) ends them.
#[derive(Debug, Default)]
pub(crate) struct Released(Option<watch::Sender<()>>);

impl Released {
    /// A receiver that sees the signal dropped when the guard goes.
    pub(crate) fn subscribe(&mut self) -> watch::Receiver<()> {
        self.0
            .get_or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }
}

/// Wait until `released` is dropped; never returns before.
async fn until_released(released: &mut watch::Receiver<()>) {
    while released.changed().await.is_ok() {}
}

/// A watch of a held lock file (or semaphore slot file): resolves when its
/// path no longer names the locked file.
#[derive(Debug)]
pub(crate) struct FileLoss {
    pub(crate) path: Arc<Resolved>,
    pub(crate) key: FileKey,
    pub(crate) released: watch::Receiver<()>,
    pub(crate) charge: Charge,
}

impl FileLoss {
    /// The reason the lock was lost, once it is; pending forever once the
    /// guard is released.
    pub(crate) async fn lost(mut self) -> String {
        let _charge = self.charge;
        loop {
            if self.released.has_changed().is_err() {
                return pending().await;
            }
            // A failure to look (no descriptors left, say) is no loss:
            // look again at the next poll.
            if matches!(self.path.names(self.key), Ok(false)) {
                return format!(
                    "{:?} was unlinked or replaced: someone else can lock it now",
                    self.path.guest
                );
            }
            tokio::select! {
                () = until_released(&mut self.released) => return pending().await,
                () = tokio::time::sleep(FILE_LOSS_POLL) => {}
            }
        }
    }
}

/// A watch of a held Redis lock: resolves when its subscription ends.
#[derive(Debug)]
pub(crate) struct RedisLoss {
    pub(crate) watch: portalocker::redis::LossWatch,
    pub(crate) charge: Charge,
}

impl RedisLoss {
    /// The reason the lock was lost, once it is; pending forever once the
    /// guard is released.
    pub(crate) async fn lost(mut self) -> String {
        let _charge = self.charge;
        match self.watch.lost().await {
            Some(reason) => reason,
            None => pending().await,
        }
    }
}
