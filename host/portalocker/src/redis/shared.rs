//! What the clones of one lock share: its turn, its release notices, and
//! what it learned about the channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Instant;

use super::protocol::Notice;
use super::router::Listener;

/// What the clones of one [`RedisLock`] share (they share a holder id, so
/// they take turns).
#[derive(Default)]
pub(crate) struct Shared {
    /// One acquisition at a time per holder id: an acquisition, then its
    /// guard, hold the turn until the release has unsubscribed.
    pub(crate) turn: Arc<tokio::sync::Mutex<()>>,
    /// How many releases are under way (each holds the turn a moment more:
    /// waiting for it is not contention).
    pub(crate) releasing: AtomicUsize,
    /// Whether a probe of this lock met a silent subscriber: then probes
    /// are anchored (docs/redis-protocol.md §8.2) until one is conclusive.
    pub(crate) suspect: AtomicBool,
    /// When a hand-off last found nobody coming (the other listener was
    /// idle): no more hand-offs for a while after it, or until an
    /// acquisition meets contention.
    pub(crate) unheeded: std::sync::Mutex<Option<Instant>>,
    /// The release-notice listener, kept between acquisitions.
    pub(crate) notices: tokio::sync::Mutex<Option<Listener>>,
    /// When this instance last released, and what it told the waiters.
    pub(crate) released: std::sync::Mutex<Option<Released>>,
}

/// This instance's last release.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Released {
    /// When it began.
    pub(crate) at: Instant,
    /// What it told the waiters.
    pub(crate) notice: Notice,
    /// How many listeners of other instances heard it (`PUBLISH`'s count
    /// without this process's own listener); `None` until known.
    pub(crate) others: Option<i64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}
