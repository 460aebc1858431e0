//! The test provider: a component that exports `portalocker:locks`
//! (`file-lock`, `semaphore`, `redis-lock` and their `types`) itself, with
//! in-process semantics, so a plugin author composes it under a plugin
//! (`portalocker compose PLUGIN --provider provider.wasm`) and runs the
//! plugin's own tests in any component runtime, `wasmtime run` included,
//! without a portalocker host.
//!
//! **A testing aid: it locks nothing outside the component.** Locks
//! exclude each other only inside the one composed component; no file is
//! created or locked, no Redis server is reached. Within it they behave as
//! the host's do:
//!
//! - a lock (file, Redis) is exclusive or shared; an exclusive one
//!   excludes every other hold, a shared one every exclusive hold;
//! - a semaphore grants its lowest free slot, up to its slot count;
//! - a fenced Redis lock draws 1, 2, 3... per name, one per grant;
//! - dropping a guard or permit releases it.
//!
//! A component runs one call at a time, so a wait could never end: a
//! `lock` or `acquire` that would wait fails at once with `would-block`,
//! and a `lock-for` or `acquire-for` with `timed-out` (no time passes; a
//! bound of zero is a try, `would-block`, as on the host). Paths are
//! compared spelt plainly (`/data/./a.lock` is `/data/a.lock`).
//! Bad input gets the host's errors: `invalid-argument` for an empty path
//! or name, a path over 4096 bytes, a Redis name that is not printable
//! ASCII without spaces or is longer than 256 bytes, a semaphore name that
//! is `.`, `..`, longer than 200 bytes or holds `/`, a semaphore of no
//! slots or more than 10,000, or an empty semaphore directory.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "portalocker:locks/provider",
        generate_all,
    });
}

use bindings::exports::portalocker::locks::types::{Error, LockMode};
use bindings::exports::portalocker::locks::{file_lock, redis_lock, semaphore};

/// The longest Redis lock name the host accepts.
const MAX_REDIS_NAME: usize = 256;

/// The most slots and the longest semaphore name the host accepts.
const MAX_SLOTS: u32 = 10_000;
const MAX_SEMAPHORE_NAME: usize = 200;

/// `path` without empty or `.` components, each `..` taking one back.
fn plain(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// Who holds what, in this component.
#[derive(Default)]
struct Holds {
    /// Per lock (`file:PATH`, `redis:NAME`): exclusive holds, shared holds.
    locks: HashMap<String, (u32, u32)>,
    /// Per semaphore (`DIR/NAME`): the slots taken.
    slots: HashMap<String, BTreeSet<u32>>,
    /// Per Redis lock name: the last fencing token drawn.
    tokens: HashMap<String, u64>,
}

thread_local! {
    static HOLDS: RefCell<Holds> = RefCell::new(Holds::default());
}

/// How long a call may wait (it never does: see the crate docs).
#[derive(Clone, Copy)]
enum Wait {
    Forever,
    Never,
    Bounded,
}

impl Wait {
    /// A bound of `nanos`: zero is a try, as on the host.
    fn bounded(nanos: u64) -> Self {
        if nanos == 0 {
            Wait::Never
        } else {
            Wait::Bounded
        }
    }

    fn contention(self) -> Error {
        match self {
            Wait::Bounded => Error::TimedOut,
            Wait::Forever | Wait::Never => Error::WouldBlock,
        }
    }
}

/// Take `key` in `mode` if nothing conflicts.
fn take(key: &str, mode: LockMode, wait: Wait) -> Result<(), Error> {
    HOLDS.with_borrow_mut(|holds| {
        let (exclusive, shared) = holds.locks.entry(key.to_owned()).or_default();
        let free = match mode {
            LockMode::Exclusive => *exclusive == 0 && *shared == 0,
            LockMode::Shared => *exclusive == 0,
        };
        if !free {
            return Err(wait.contention());
        }
        match mode {
            LockMode::Exclusive => *exclusive += 1,
            LockMode::Shared => *shared += 1,
        }
        Ok(())
    })
}

/// Give back one hold of `key` in `mode`.
fn give_back(key: &str, mode: LockMode) {
    HOLDS.with_borrow_mut(|holds| {
        if let Some((exclusive, shared)) = holds.locks.get_mut(key) {
            match mode {
                LockMode::Exclusive => *exclusive = exclusive.saturating_sub(1),
                LockMode::Shared => *shared = shared.saturating_sub(1),
            }
            if (*exclusive, *shared) == (0, 0) {
                holds.locks.remove(key);
            }
        }
    });
}

/// A hold of a lock, given back when dropped.
struct Hold {
    key: String,
    mode: LockMode,
}

impl Drop for Hold {
    fn drop(&mut self) {
        give_back(&self.key, self.mode);
    }
}

struct Provider;

struct FileLock {
    path: String,
}

impl FileLock {
    fn take(&self, mode: LockMode, wait: Wait) -> Result<file_lock::FileLockGuard, Error> {
        let key = format!("file:{}", plain(&self.path));
        take(&key, mode, wait)?;
        Ok(file_lock::FileLockGuard::new(Hold { key, mode }))
    }
}

impl file_lock::Guest for Provider {
    type FileLock = FileLock;
    type FileLockGuard = Hold;
}

impl file_lock::GuestFileLock for FileLock {
    fn open(path: String) -> Result<file_lock::FileLock, Error> {
        if path.is_empty() || path.len() > 4096 || path.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "a lock path must be 1 to 4096 bytes without NUL: {path:?}"
            )));
        }
        Ok(file_lock::FileLock::new(FileLock { path }))
    }

    fn lock(&self, mode: LockMode) -> Result<file_lock::FileLockGuard, Error> {
        self.take(mode, Wait::Forever)
    }

    fn try_lock(&self, mode: LockMode) -> Result<file_lock::FileLockGuard, Error> {
        self.take(mode, Wait::Never)
    }

    fn lock_for(&self, mode: LockMode, timeout: u64) -> Result<file_lock::FileLockGuard, Error> {
        self.take(mode, Wait::bounded(timeout))
    }

    fn path(&self) -> String {
        self.path.clone()
    }
}

impl file_lock::GuestFileLockGuard for Hold {
    fn mode(&self) -> LockMode {
        self.mode
    }

    fn release(guard: file_lock::FileLockGuard) -> Result<(), Error> {
        drop(guard);
        Ok(())
    }
}

struct Semaphore {
    key: String,
    slots: u32,
}

/// A semaphore slot, freed when dropped.
struct Permit {
    key: String,
    slot: u32,
}

impl Drop for Permit {
    fn drop(&mut self) {
        HOLDS.with_borrow_mut(|holds| {
            if let Some(taken) = holds.slots.get_mut(&self.key) {
                taken.remove(&self.slot);
            }
        });
    }
}

impl Semaphore {
    fn take(&self, wait: Wait) -> Result<semaphore::SemaphorePermit, Error> {
        HOLDS.with_borrow_mut(|holds| {
            let taken = holds.slots.entry(self.key.clone()).or_default();
            let slot = (0..self.slots)
                .find(|slot| !taken.contains(slot))
                .ok_or(wait.contention())?;
            taken.insert(slot);
            Ok(semaphore::SemaphorePermit::new(Permit {
                key: self.key.clone(),
                slot,
            }))
        })
    }
}

impl semaphore::Guest for Provider {
    type Semaphore = Semaphore;
    type SemaphorePermit = Permit;
}

impl semaphore::GuestSemaphore for Semaphore {
    fn open(name: String, slots: u32, directory: String) -> Result<semaphore::Semaphore, Error> {
        if name.is_empty()
            || name.len() > MAX_SEMAPHORE_NAME
            || name == "."
            || name == ".."
            || name.contains(['/', '\\', '\0'])
        {
            return Err(Error::InvalidArgument(format!(
                "a semaphore name must be 1 to {MAX_SEMAPHORE_NAME} bytes, not `.` or `..`, \
                 without a separator or NUL: {name:?}"
            )));
        }
        if slots == 0 || slots > MAX_SLOTS {
            return Err(Error::InvalidArgument(format!(
                "a semaphore needs between 1 and {MAX_SLOTS} slots, not {slots}"
            )));
        }
        if directory.is_empty() || directory.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "a semaphore directory must be a non-empty path without NUL: {directory:?}"
            )));
        }
        let key = format!("{}/{name}", plain(&directory).trim_end_matches('/'));
        Ok(semaphore::Semaphore::new(Semaphore { key, slots }))
    }

    fn acquire(&self) -> Result<semaphore::SemaphorePermit, Error> {
        self.take(Wait::Forever)
    }

    fn try_acquire(&self) -> Result<semaphore::SemaphorePermit, Error> {
        self.take(Wait::Never)
    }

    fn acquire_for(&self, timeout: u64) -> Result<semaphore::SemaphorePermit, Error> {
        self.take(Wait::bounded(timeout))
    }

    fn slots(&self) -> u32 {
        self.slots
    }
}

impl semaphore::GuestSemaphorePermit for Permit {
    fn slot(&self) -> u32 {
        self.slot
    }

    fn release(permit: semaphore::SemaphorePermit) -> Result<(), Error> {
        drop(permit);
        Ok(())
    }
}

struct RedisLock {
    name: String,
    fencing: bool,
}

/// A Redis lock held, with its token.
struct RedisHold {
    _hold: Hold,
    token: Option<u64>,
}

impl RedisLock {
    fn take(&self, mode: LockMode, wait: Wait) -> Result<redis_lock::RedisLockGuard, Error> {
        let key = format!("redis:{}", self.name);
        take(&key, mode, wait)?;
        let hold = Hold { key, mode };
        let token = self.fencing.then(|| {
            HOLDS.with_borrow_mut(|holds| {
                let token = holds.tokens.entry(self.name.clone()).or_default();
                *token += 1;
                *token
            })
        });
        Ok(redis_lock::RedisLockGuard::new(RedisHold {
            _hold: hold,
            token,
        }))
    }
}

impl redis_lock::Guest for Provider {
    type RedisLock = RedisLock;
    type RedisLockGuard = RedisHold;
}

impl redis_lock::GuestRedisLock for RedisLock {
    fn open(name: String, fencing: bool) -> Result<redis_lock::RedisLock, Error> {
        if name.is_empty()
            || name.len() > MAX_REDIS_NAME
            || !name.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(Error::InvalidArgument(format!(
                "a Redis lock name must be 1 to {MAX_REDIS_NAME} bytes of printable ASCII without spaces: {name:?}"
            )));
        }
        Ok(redis_lock::RedisLock::new(RedisLock { name, fencing }))
    }

    fn lock(&self, mode: LockMode) -> Result<redis_lock::RedisLockGuard, Error> {
        self.take(mode, Wait::Forever)
    }

    fn try_lock(&self, mode: LockMode) -> Result<redis_lock::RedisLockGuard, Error> {
        self.take(mode, Wait::Never)
    }

    fn lock_for(&self, mode: LockMode, timeout: u64) -> Result<redis_lock::RedisLockGuard, Error> {
        self.take(mode, Wait::bounded(timeout))
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

impl redis_lock::GuestRedisLockGuard for RedisHold {
    fn fencing_token(&self) -> Option<u64> {
        self.token
    }

    fn is_lost(&self) -> bool {
        false
    }

    fn release(guard: redis_lock::RedisLockGuard) -> Result<(), Error> {
        drop(guard);
        Ok(())
    }
}

bindings::export!(Provider with_types_in bindings);
