//! The kit behind portalocker's middleware components.
//!
//! A middleware is a component of the `portalocker:locks/middleware` world:
//! it imports the lock interfaces (from the host, or from the next
//! middleware) and exports the same interfaces, so composed in front of a
//! plugin it sees every lock the plugin opens, takes and releases, and the
//! plugin runs unchanged. This kit does the passing-through; a middleware
//! is a [`Hooks`] implementation and one [`middleware!`] line:
//!
//! ```ignore
//! struct Audit;
//! impl portalocker_middleware::Hooks for Audit {
//!     fn acquired(lock: &Target, request: &Request, waited: Duration, outcome: Result<&Grant, &Error>) {
//!         eprintln!("{} after {waited:?}: {}", lock.key(), outcome.is_ok());
//!     }
//! }
//! portalocker_middleware::middleware!(Audit);
//! ```
//!
//! Every hook runs in the plugin's own call, so a middleware adds only its
//! own work (a component-to-component call costs nanoseconds). A guard the
//! plugin drops is dropped here too, so the host releases the real lock at
//! once whatever the middleware does.

mod config;
mod file;
mod redis;
mod semaphore;

use std::time::Duration;

pub use bindings::portalocker::locks::types::{Error, LockMode};
pub use config::Config;
#[doc(hidden)]
pub use file::{FileLockGuardOf, FileLockOf};
#[doc(hidden)]
pub use redis::{RedisLockGuardOf, RedisLockOf};
#[doc(hidden)]
pub use semaphore::{SemaphoreOf, SemaphorePermitOf};

/// The generated bindings of the `middleware` world (not the API: use the
/// hooks).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "portalocker:locks/middleware",
        pub_export_macro: true,
        default_bindings_module: "portalocker_middleware::bindings",
        generate_all,
    });
}

/// Which interface a lock belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `file-lock`: a lock file.
    File,
    /// `semaphore`: a named bounded semaphore.
    Semaphore,
    /// `redis-lock`: a Redis lock.
    Redis,
}

impl Kind {
    /// The interface's name (`file-lock`, `semaphore`, `redis-lock`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file-lock",
            Kind::Semaphore => "semaphore",
            Kind::Redis => "redis-lock",
        }
    }
}

/// A lock as it is opened: what [`Hooks::open`] may rewrite before the
/// next component opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its interface.
    pub kind: Kind,
    /// The lock file's path, the semaphore's name or the Redis lock's name.
    pub name: String,
    /// The semaphore's directory (empty for the others).
    pub directory: String,
    /// The semaphore's slot count (0 for the others).
    pub slots: u32,
    /// Whether a Redis lock draws fencing tokens.
    pub fencing: bool,
}

impl Target {
    /// What identifies the lock: its interface and names
    /// (`file-lock:/jobs/a.lock`, `semaphore:/jobs/runners`,
    /// `redis-lock:reports`).
    #[must_use]
    pub fn key(&self) -> String {
        match self.kind {
            Kind::Semaphore => {
                let dir = self.directory.trim_end_matches('/');
                format!("{}:{dir}/{}", self.kind.as_str(), self.name)
            }
            _ => format!("{}:{}", self.kind.as_str(), self.name),
        }
    }
}

/// How long an acquisition may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `lock` / `acquire`: until granted (or the host's bound).
    Forever,
    /// `try-lock` / `try-acquire`: one attempt.
    Never,
    /// `lock-for` / `acquire-for`: at most this long.
    For(Duration),
}

impl Wait {
    /// Whether the call may block (every wait but [`Wait::Never`]): only a
    /// blocking acquisition can deadlock.
    #[must_use]
    pub fn blocks(self) -> bool {
        self != Wait::Never
    }
}

/// An acquisition the plugin asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The mode (a semaphore permit counts as exclusive on its slot).
    pub mode: LockMode,
    /// How long it may wait.
    pub wait: Wait,
}

/// What an acquisition was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The mode held.
    pub mode: LockMode,
    /// The semaphore slot (semaphores only).
    pub slot: Option<u32>,
    /// The fencing token (fenced Redis locks only).
    pub fencing_token: Option<u64>,
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The plugin called `release`.
    Released,
    /// The plugin dropped the guard (or ended with it held).
    Dropped,
}

/// What a middleware does. Every hook has a default that does nothing, so
/// a middleware implements only what it needs. Hooks are associated
/// functions: a middleware keeps its state in its own statics (a
/// component runs one call at a time).
pub trait Hooks: 'static {
    /// A lock is being opened: rewrite `target` (the next component opens
    /// what it says), or refuse with an error the plugin gets instead.
    ///
    /// # Errors
    ///
    /// What the plugin's `open` returns instead of a lock.
    fn open(target: &mut Target) -> Result<(), Error> {
        let _ = target;
        Ok(())
    }

    /// An acquisition is about to be passed on: refuse it with an error
    /// the plugin gets instead (nothing is taken).
    ///
    /// # Errors
    ///
    /// What the plugin's call returns instead of a guard.
    fn acquiring(lock: &Target, request: &Request) -> Result<(), Error> {
        let _ = (lock, request);
        Ok(())
    }

    /// An acquisition came back after `waited`: granted or not.
    fn acquired(
        lock: &Target,
        request: &Request,
        waited: Duration,
        outcome: Result<&Grant, &Error>,
    ) {
        let _ = (lock, request, waited, outcome);
    }

    /// A hold of `held` ended; `outcome` is the release's (a dropped guard
    /// always succeeds: its release cannot report).
    fn released(
        lock: &Target,
        grant: &Grant,
        held: Duration,
        ending: Ending,
        outcome: Result<(), &Error>,
    ) {
        let _ = (lock, grant, held, ending, outcome);
    }
}

/// Make the crate a middleware component whose hooks are `$hooks` (a type
/// implementing [`Hooks`]): it exports `file-lock`, `semaphore` and
/// `redis-lock`, passing every call on to the imported ones.
#[macro_export]
macro_rules! middleware {
    ($hooks:ty) => {
        struct __PortalockerMiddleware;

        impl $crate::bindings::exports::portalocker::locks::file_lock::Guest
            for __PortalockerMiddleware
        {
            type FileLock = $crate::FileLockOf<$hooks>;
            type FileLockGuard = $crate::FileLockGuardOf<$hooks>;
        }

        impl $crate::bindings::exports::portalocker::locks::semaphore::Guest
            for __PortalockerMiddleware
        {
            type Semaphore = $crate::SemaphoreOf<$hooks>;
            type SemaphorePermit = $crate::SemaphorePermitOf<$hooks>;
        }

        impl $crate::bindings::exports::portalocker::locks::redis_lock::Guest
            for __PortalockerMiddleware
        {
            type RedisLock = $crate::RedisLockOf<$hooks>;
            type RedisLockGuard = $crate::RedisLockGuardOf<$hooks>;
        }

        $crate::bindings::export!(__PortalockerMiddleware);
    };
}

/// Run an acquisition through the hooks: `acquiring` may refuse it, the
/// call is timed, `acquired` sees how it went.
pub(crate) fn acquire<H: Hooks, G>(
    lock: &Target,
    request: Request,
    call: impl FnOnce() -> Result<G, Error>,
    grant_of: impl FnOnce(&G) -> Grant,
) -> Result<(G, Grant), Error> {
    H::acquiring(lock, &request)?;
    let started = std::time::Instant::now();
    let outcome = call();
    let waited = started.elapsed();
    match outcome {
        Ok(guard) => {
            let grant = grant_of(&guard);
            H::acquired(lock, &request, waited, Ok(&grant));
            Ok((guard, grant))
        }
        Err(error) => {
            H::acquired(lock, &request, waited, Err(&error));
            Err(error)
        }
    }
}

/// A hold: the guard of the next component, with what the hooks need when
/// it ends. Dropping it drops that guard (the lock is released at once)
/// and tells [`Hooks::released`].
pub(crate) struct Hold<H: Hooks, G> {
    guard: Option<G>,
    lock: std::rc::Rc<Target>,
    grant: Grant,
    since: std::time::Instant,
    hooks: std::marker::PhantomData<H>,
}

impl<H: Hooks, G> Hold<H, G> {
    pub(crate) fn new(guard: G, lock: std::rc::Rc<Target>, grant: Grant) -> Self {
        Self {
            guard: Some(guard),
            lock,
            grant,
            since: std::time::Instant::now(),
            hooks: std::marker::PhantomData,
        }
    }

    pub(crate) fn guard(&self) -> &G {
        self.guard
            .as_ref()
            .expect("a hold keeps its guard until it ends")
    }

    pub(crate) fn grant(&self) -> &Grant {
        &self.grant
    }

    /// End the hold with the next component's `release`.
    pub(crate) fn release(
        mut self,
        release: impl FnOnce(G) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let Some(guard) = self.guard.take() else {
            return Ok(());
        };
        let outcome = release(guard);
        H::released(
            &self.lock,
            &self.grant,
            self.since.elapsed(),
            Ending::Released,
            outcome.as_ref().map(|_| ()),
        );
        outcome
    }
}

impl<H: Hooks, G> Drop for Hold<H, G> {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            drop(guard);
            H::released(
                &self.lock,
                &self.grant,
                self.since.elapsed(),
                Ending::Dropped,
                Ok(()),
            );
        }
    }
}
