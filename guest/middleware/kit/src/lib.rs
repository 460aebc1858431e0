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
//!     const NAME: &'static str = "audit";
//!     const SETTINGS: &'static [&'static str] = &[];
//!     const TIMED: bool = true;
//!     fn acquired(lock: &Target, _: &Request, waited: Span, outcome: Result<&Grant, &Error>) -> Result<(), Error> {
//!         eprintln!("{} after {:?}: {}", lock.key(), waited.length, outcome.is_ok());
//!         Ok(())
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

use std::time::{Duration, Instant};

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
    /// What identifies it, fixed once it is opened (see [`Target::key`]).
    key: String,
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
    /// A lock of `kind` named `name`.
    pub(crate) fn new(kind: Kind, name: String) -> Self {
        Self {
            key: String::new(),
            kind,
            name,
            directory: String::new(),
            slots: 0,
            fencing: false,
        }
    }

    /// What identifies the lock once opened: its interface and names, with
    /// paths spelt plainly (`file-lock:/jobs/a.lock` for `/jobs//./a.lock`,
    /// `semaphore:/jobs/runners`, `redis-lock:reports`). Empty inside
    /// [`Hooks::open`].
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Fix the key, after the hooks had their say.
    pub(crate) fn seal(&mut self) {
        self.key = match self.kind {
            Kind::File => format!("{}:{}", self.kind.as_str(), plain(&self.name)),
            Kind::Semaphore => {
                let dir = plain(&self.directory);
                format!(
                    "{}:{}/{}",
                    self.kind.as_str(),
                    dir.trim_end_matches('/'),
                    self.name
                )
            }
            Kind::Redis => format!("{}:{}", self.kind.as_str(), self.name),
        };
    }
}

/// `path` without empty or `.` components and with each `..` taking one
/// back where it can (text only: symlinks are the host's business).
#[must_use]
pub fn plain(path: &str) -> String {
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
    /// Whether the call may block (every wait but [`Wait::Never`] and a
    /// zero bound, which the host takes for one attempt): only a blocking
    /// acquisition can deadlock.
    #[must_use]
    pub fn blocks(self) -> bool {
        match self {
            Wait::Never => false,
            Wait::For(bound) => !bound.is_zero(),
            Wait::Forever => true,
        }
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
    /// The semaphore slot (semaphores, for hooks with [`Hooks::SLOTS`]).
    pub slot: Option<u32>,
    /// The fencing token (fenced Redis locks only).
    pub fencing_token: Option<u64>,
}

/// How long a wait or a hold lasted, and when it ended, by the monotonic
/// clock: what hooks with [`Hooks::TIMED`] are given (one reading of the
/// clock serves both). Empty for the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// How long it lasted (zero when not timed, and for the wait of a
    /// try).
    pub length: Duration,
    /// When it ended (`None` when not timed).
    pub end: Option<Instant>,
}

impl Span {
    /// Ending now (one reading of the clock), from `start` (zero long
    /// without one).
    fn ending_now(start: Option<Instant>) -> Self {
        let end = Instant::now();
        Self {
            length: start.map_or(Duration::ZERO, |start| end.saturating_duration_since(start)),
            end: Some(end),
        }
    }

    /// From `since` to now, if timed (`since` is set only then).
    fn of_hold(since: Option<Instant>) -> Self {
        since.map_or_else(Self::default, |since| Self::ending_now(Some(since)))
    }
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
///
/// A hold ends with [`Hooks::released`] when the plugin releases or drops
/// its guard. A plugin that exits, traps or runs out of fuel or time while
/// holding drops nothing: no hook runs (the host still releases the lock).
pub trait Hooks: 'static {
    /// The middleware's name: its settings are `NAME.SETTING`.
    const NAME: &'static str;

    /// Whether the hooks use the times (`waited`, `held`): reading the
    /// clock is a host call, so the kit does it only when asked: once when
    /// an acquisition returns (twice when it may wait: a try does not, and
    /// waits zero long) and once per release. Without it, every [`Span`]
    /// is empty.
    const TIMED: bool = false;

    /// Whether the hooks read a semaphore grant's [`Grant::slot`]: asking
    /// it is a call to the next component, so the kit does it only when
    /// asked. Without it, a semaphore grant's slot is `None`.
    const SLOTS: bool = false;

    /// The settings it reads (without `NAME.`). A setting of this
    /// middleware that is not one of them refuses every open (a misspelt
    /// setting must not pass unnoticed), and `portalocker compose` refuses
    /// it before anything runs.
    const SETTINGS: &'static [&'static str];

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

    /// An acquisition came back after `waited`: granted or not. An error
    /// after a grant undoes it: the lock is released at once and the
    /// plugin gets the error.
    ///
    /// # Errors
    ///
    /// What the plugin's call returns instead of the guard.
    fn acquired(
        lock: &Target,
        request: &Request,
        waited: Span,
        outcome: Result<&Grant, &Error>,
    ) -> Result<(), Error> {
        let _ = (lock, request, waited, outcome);
        Ok(())
    }

    /// A hold of `held` ended; `outcome` is the release's (a dropped guard
    /// always succeeds: its release cannot report).
    ///
    /// # Errors
    ///
    /// What an explicit `release` returns instead (the lock is released
    /// either way); ignored for a dropped guard.
    fn released(
        lock: &Target,
        grant: &Grant,
        held: Span,
        ending: Ending,
        outcome: Result<(), &Error>,
    ) -> Result<(), Error> {
        let _ = (lock, grant, held, ending, outcome);
        Ok(())
    }
}

/// Make the crate a middleware component whose hooks are `$hooks` (a type
/// implementing [`Hooks`]): it exports `file-lock`, `semaphore` and
/// `redis-lock`, passing every call on to the imported ones, and declares
/// its settings in a custom section for `portalocker compose`.
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

        /// The settings this middleware reads (`NAME SETTING...`), for
        /// `portalocker compose` to check before composing.
        #[used]
        #[unsafe(link_section = "portalocker:middleware")]
        static __PORTALOCKER_MIDDLEWARE_SETTINGS: [u8; $crate::declaration_len(
            <$hooks as $crate::Hooks>::NAME,
            <$hooks as $crate::Hooks>::SETTINGS,
        )] = $crate::declaration(
            <$hooks as $crate::Hooks>::NAME,
            <$hooks as $crate::Hooks>::SETTINGS,
        );
    };
}

/// The custom section a middleware declares its settings in.
pub const DECLARATION_SECTION: &str = "portalocker:middleware";

/// The declaration's length: `NAME`, ` SETTING` for each, a newline.
#[doc(hidden)]
#[must_use]
pub const fn declaration_len(name: &str, settings: &[&str]) -> usize {
    let mut len = name.len() + 1;
    let mut i = 0;
    while i < settings.len() {
        len += 1 + settings[i].len();
        i += 1;
    }
    len
}

/// The declaration's bytes (see [`declaration_len`]).
#[doc(hidden)]
#[must_use]
pub const fn declaration<const LEN: usize>(name: &str, settings: &[&str]) -> [u8; LEN] {
    const fn put(out: &mut [u8], at: usize, text: &[u8]) -> usize {
        let mut j = 0;
        while j < text.len() {
            out[at + j] = text[j];
            j += 1;
        }
        at + j
    }
    let mut out = [0u8; LEN];
    let mut at = put(&mut out, 0, name.as_bytes());
    let mut i = 0;
    while i < settings.len() {
        at = put(&mut out, at, b" ");
        at = put(&mut out, at, settings[i].as_bytes());
        i += 1;
    }
    put(&mut out, at, b"\n");
    out
}

/// Open through the hooks: the settings are checked, `open` may rewrite
/// the target or refuse it, then its key is fixed.
pub(crate) fn open<H: Hooks>(mut target: Target) -> Result<Target, Error> {
    Config::check::<H>()?;
    H::open(&mut target)?;
    target.seal();
    Ok(target)
}

/// Run an acquisition through the hooks: `acquiring` may refuse it, the
/// call is timed, `acquired` sees how it went (and may undo a grant); the
/// grant is held from the moment the call returned.
pub(crate) fn acquire<H: Hooks, G>(
    lock: &std::rc::Rc<Target>,
    request: Request,
    call: impl FnOnce() -> Result<G, Error>,
    grant_of: impl FnOnce(&G) -> Grant,
) -> Result<Hold<H, G>, Error> {
    H::acquiring(lock, &request)?;
    // The clock is a host call: read only for hooks that use the times,
    // once at the end of the wait (it starts the hold too), and at its
    // start only when it may wait (a try's wait is zero long).
    let started = (H::TIMED && request.wait.blocks()).then(Instant::now);
    let outcome = call();
    let waited = if H::TIMED {
        Span::ending_now(started)
    } else {
        Span::default()
    };
    match outcome {
        Ok(guard) => {
            let grant = grant_of(&guard);
            // An error here drops the guard: the lock is released at once.
            H::acquired(lock, &request, waited, Ok(&grant))?;
            Ok(Hold {
                guard: Some(guard),
                lock: std::rc::Rc::clone(lock),
                grant,
                since: waited.end,
                hooks: std::marker::PhantomData,
            })
        }
        Err(error) => {
            // The plugin gets the lock's own error, whatever the hook says.
            let _ = H::acquired(lock, &request, waited, Err(&error));
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
    since: Option<Instant>,
    hooks: std::marker::PhantomData<H>,
}

impl<H: Hooks, G> Hold<H, G> {
    /// The next component's guard (a hold has it until it ends, and ends
    /// only by being consumed or dropped).
    pub(crate) fn guard(&self) -> Option<&G> {
        self.guard.as_ref()
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
        let told = H::released(
            &self.lock,
            &self.grant,
            Span::of_hold(self.since),
            Ending::Released,
            outcome.as_ref().map(|_| ()),
        );
        outcome.and(told)
    }
}

impl<H: Hooks, G> Drop for Hold<H, G> {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            drop(guard);
            let _ = H::released(
                &self.lock,
                &self.grant,
                Span::of_hold(self.since),
                Ending::Dropped,
                Ok(()),
            );
        }
    }
}
