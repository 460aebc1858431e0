//! What one plugin instance may make the host hold, and the counting of
//! it: every handle, held lock, kept descriptor, Redis connection and byte
//! of name or path is charged when it is taken and refunded when it is
//! dropped, whatever drops it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::LockError;

/// The default cap on lock handles (file locks, semaphores, Redis locks and
/// their guards and permits) one instance has open at once.
pub const DEFAULT_MAX_HANDLES: usize = 1024;
/// The default cap on locks and permits one instance holds (or is taking)
/// at once.
pub const DEFAULT_MAX_HELD: usize = 64;
/// The default cap on the bytes of names and paths one instance's handles
/// keep on the host.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;
/// The default cap on lock-file descriptors kept open between locks.
pub const DEFAULT_MAX_IDLE_DESCRIPTORS: usize = 16;
/// The default cap on Redis lock connections one instance uses at once
/// (one per Redis lock being taken or held).
pub const DEFAULT_MAX_REDIS_CONNECTIONS: usize = 8;

/// The limits of one plugin instance (see the `LocksCtxBuilder` setters).
///
/// With them, what an instance can make the host hold is bounded: at most
/// `max_handles` handles, `max_bytes` bytes of names and paths, `max_held +
/// max_idle_descriptors` open descriptors (a file lock or semaphore handle
/// keeps none while idle) and `max_redis_connections` Redis connections of
/// its own (plus the few the instances of a host share per server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Lock handles open at once.
    pub max_handles: usize,
    /// Locks and permits held or being acquired at once.
    pub max_held: usize,
    /// Bytes of names and paths kept by the instance's handles.
    pub max_bytes: usize,
    /// Descriptors kept open between locks (a speed-up, never an error).
    pub max_idle_descriptors: usize,
    /// Redis connections in use at once.
    pub max_redis_connections: usize,
    /// The longest wait the instance may ask for; `None`: no limit.
    pub max_wait: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_handles: DEFAULT_MAX_HANDLES,
            max_held: DEFAULT_MAX_HELD,
            max_bytes: DEFAULT_MAX_BYTES,
            max_idle_descriptors: DEFAULT_MAX_IDLE_DESCRIPTORS,
            max_redis_connections: DEFAULT_MAX_REDIS_CONNECTIONS,
            max_wait: None,
        }
    }
}

/// What an instance holds now, by kind (for monitoring and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Lock handles open.
    pub handles: usize,
    /// Locks and permits held or being acquired.
    pub held: usize,
    /// Bytes of names and paths kept.
    pub bytes: usize,
    /// Descriptors kept between locks.
    pub idle_descriptors: usize,
    /// Redis connections in use.
    pub redis_connections: usize,
}

/// A kind of thing the budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Handles,
    Held,
    Bytes,
    IdleDescriptors,
    RedisConnections,
}

const KINDS: usize = 5;

/// The counters of one instance against its limits.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: Limits,
    used: [AtomicUsize; KINDS],
}

impl Budget {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            used: Default::default(),
        })
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn usage(&self) -> Usage {
        let used = |kind: Kind| self.used[kind as usize].load(Ordering::SeqCst);
        Usage {
            handles: used(Kind::Handles),
            held: used(Kind::Held),
            bytes: used(Kind::Bytes),
            idle_descriptors: used(Kind::IdleDescriptors),
            redis_connections: used(Kind::RedisConnections),
        }
    }

    fn limit(&self, kind: Kind) -> usize {
        match kind {
            Kind::Handles => self.limits.max_handles,
            Kind::Held => self.limits.max_held,
            Kind::Bytes => self.limits.max_bytes,
            Kind::IdleDescriptors => self.limits.max_idle_descriptors,
            Kind::RedisConnections => self.limits.max_redis_connections,
        }
    }

    /// Charge every `(kind, amount)` in `wants`, or nothing: past a limit,
    /// `limit-exceeded` saying which.
    pub(crate) fn charge(self: &Arc<Self>, wants: &[(Kind, usize)]) -> Result<Charge, LockError> {
        let mut charge = Charge {
            budget: Arc::clone(self),
            amounts: [0; KINDS],
        };
        for &(kind, amount) in wants {
            let max = self.limit(kind);
            self.used[kind as usize]
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                    used.checked_add(amount).filter(|total| *total <= max)
                })
                .map_err(|used| LockError::limit(refusal(kind, used, amount, max)))?;
            charge.amounts[kind as usize] += amount;
        }
        Ok(charge)
    }

    /// [`Budget::charge`] for a handle that keeps `bytes` of names and paths.
    pub(crate) fn charge_handle(self: &Arc<Self>, bytes: usize) -> Result<Charge, LockError> {
        self.charge(&[(Kind::Handles, 1), (Kind::Bytes, bytes)])
    }
}

fn refusal(kind: Kind, used: usize, amount: usize, max: usize) -> String {
    match kind {
        Kind::Handles => {
            format!("the plugin already has {used} lock handles open; the host allows {max}")
        }
        Kind::Held => format!(
            "the plugin already holds (or is taking) {used} locks and permits; the host allows {max}"
        ),
        Kind::Bytes => format!(
            "the plugin's lock names and paths take {used} bytes and this one {amount} more; the host allows {max}"
        ),
        Kind::IdleDescriptors => {
            format!("{used} descriptors are kept between locks; the host allows {max}")
        }
        Kind::RedisConnections => {
            format!("the plugin already uses {used} Redis lock connections; the host allows {max}")
        }
    }
}

/// Amounts charged to a budget, refunded when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<Budget>,
    amounts: [usize; KINDS],
}

impl Drop for Charge {
    fn drop(&mut self) {
        for (used, amount) in self.budget.used.iter().zip(self.amounts) {
            if amount > 0 {
                used.fetch_sub(amount, Ordering::SeqCst);
            }
        }
    }
}

/// The bytes a handle or guard keeps besides its strings (its own size and
/// the table's slot, rounded up).
pub(crate) const HANDLE_OVERHEAD: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_all_or_nothing_and_refunded_on_drop() {
        let budget = Budget::new(Limits {
            max_handles: 2,
            max_bytes: 100,
            ..Limits::default()
        });
        let a = budget.charge_handle(60).unwrap();
        assert!(budget.charge_handle(50).is_err());
        assert_eq!(budget.usage().handles, 1, "a refused charge takes nothing");
        let b = budget.charge_handle(40).unwrap();
        assert!(budget.charge_handle(0).is_err());
        drop((a, b));
        assert_eq!(budget.usage(), Usage::default());
    }
}
