//! A hostile guest's calls, for the fuzzer (`fuzz/`) and the property test
//! below: arbitrary sequences of `portalocker:locks` calls (paths, names,
//! slot counts, timeouts, stale and foreign handles, any drop order) made
//! through the same host trait implementations wasmtime calls, on a real
//! [`LocksCtx`] over a temporary grant, with the invariants checked after
//! every call and after the sequence:
//!
//! - the budget's held count is what the guest holds, its handle count what
//!   it has open;
//! - no two held file locks on one file unless both are shared, no two
//!   permits of one semaphore on one slot, no slot out of range;
//! - a bad handle is never accepted: it traps (the sequence ends there, as
//!   the instance would) or, when another argument is refused first, gets
//!   that error value; a handle the guest has never traps;
//! - once everything is dropped, nothing is counted and no descriptor on
//!   a file of the grant is left open;
//! - nothing outside the grant was created, changed or removed.
//!
//! Not an API: compiled for tests and with the `fuzzing` feature.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use arbitrary::{Arbitrary, Unstructured};
use wasmtime::component::{Resource, ResourceTable};

use crate::bindings::sync_::portalocker::locks::file_lock::{HostFileLock, HostFileLockGuard};
use crate::bindings::sync_::portalocker::locks::redis_lock::{HostRedisLock, HostRedisLockGuard};
use crate::bindings::sync_::portalocker::locks::semaphore::{HostSemaphore, HostSemaphorePermit};
use crate::bindings::sync_::portalocker::locks::types::LockMode;
use crate::{
    FileLockGuardHandle, FileLockHandle, LockError, LocksCtx, LocksCtxView, PermitHandle,
    RedisLockHandle, SemaphoreHandle, Usage,
};

/// The guest path of the grant.
const GRANT: &str = "/data";

/// Paths a guest might try: inside, outside, through `..` and symlinks, at
/// special files, malformed.
const PATHS: &[&str] = &[
    "/data/a.lock",
    "/data/b.lock",
    "/data/sub/c.lock",
    "/data/./a.lock",
    "/data/sub/../a.lock",
    "/data//b.lock",
    "/data",
    "/data/",
    "/data/sub",
    "/data/fifo",
    "/data/link-in",
    "/data/link-out",
    "/data/link-dir/x.lock",
    "/data/dangling",
    "/data/missing/x.lock",
    "/data/../outside/x.lock",
    "/data/sub/../../outside/y.lock",
    "/outside/x.lock",
    "/",
    "",
    "a.lock",
    "./a.lock",
    "../a.lock",
    "/data/a\0.lock",
    "/data/\u{fc}n\u{ef}.lock",
    "/dat",
    "/data2/x.lock",
];

/// Semaphore directories a guest might name.
const DIRS: &[&str] = &[
    "/data",
    "/data/sub",
    "/data/",
    "/data/link-dir",
    "/data/fifo",
    "/data/a.lock",
    "/outside",
    "/data/..",
    "",
    "/",
];

/// Semaphore and Redis lock names a guest might use.
const NAMES: &[&str] = &[
    "s",
    "t",
    "",
    ".",
    "..",
    "a/b",
    "x\0y",
    "weird name",
    "\u{263a}",
];

/// A string argument: one of the table's, or anything.
#[derive(Debug, Arbitrary)]
pub enum Text {
    /// An interesting one from a fixed table.
    Known(u8),
    /// Arbitrary text.
    Raw(String),
    /// A long one: `n * 64` repetitions of `x` under the grant.
    Long(u8),
}

impl Text {
    fn pick(&self, table: &[&str]) -> String {
        match self {
            Text::Known(i) => table[usize::from(*i) % table.len()].to_owned(),
            Text::Raw(s) => s.clone(),
            Text::Long(n) => format!("{GRANT}/{}", "x".repeat(usize::from(*n) * 64)),
        }
    }
}

/// A handle argument: mostly one the guest has (a call on a kind it has
/// none of is skipped), sometimes a stale number or a handle of another
/// kind (which ends the sequence in a trap).
#[derive(Debug, Arbitrary)]
pub struct Pick {
    /// Which handle, by position (wrapping), or the stale number.
    index: u16,
    /// 0-247: one the guest has; 248-251: a stale number; 252-255: one of
    /// another kind.
    how: u8,
}

/// How an acquisition waits.
#[derive(Debug, Arbitrary)]
pub enum How {
    /// `try-lock` / `try-acquire`.
    Try,
    /// `lock` / `acquire` (bounded by the host's maximum wait).
    Wait,
    /// `lock-for` / `acquire-for`, for `n * 100` microseconds.
    For(u8),
    /// `lock-for` / `acquire-for` with a timeout past the host's maximum.
    TooLong(u64),
}

/// One call.
#[derive(Debug, Arbitrary)]
#[allow(missing_docs, reason = "each variant is the call it names")]
pub enum Call {
    OpenFile(Text),
    Lock { lock: Pick, shared: bool, how: How },
    FilePath(Pick),
    GuardMode(Pick),
    ReleaseGuard(Pick),
    DropGuard(Pick),
    DropFile(Pick),
    OpenSemaphore { name: Text, slots: u32, dir: Text },
    Acquire { semaphore: Pick, how: How },
    Slots(Pick),
    PermitSlot(Pick),
    ReleasePermit(Pick),
    DropPermit(Pick),
    DropSemaphore(Pick),
    OpenRedis { name: Text, fencing: bool },
    RedisLock { lock: Pick, shared: bool, how: How },
    RedisName(Pick),
    FencingToken(Pick),
    IsLost(Pick),
    ReleaseRedisGuard(Pick),
    DropRedisGuard(Pick),
    DropRedis(Pick),
}

/// A sequence of calls, as the fuzzer generates it: whether Redis is
/// granted, then calls until the bytes run out.
#[derive(Debug)]
pub struct Sequence {
    /// Whether the instance may use Redis (a server that is not there: every
    /// Redis acquisition fails, after validating its arguments).
    pub redis: bool,
    /// The calls, in order (last, so that they take all the bytes left).
    pub calls: Vec<Call>,
}

impl<'a> Arbitrary<'a> for Sequence {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let redis = bool::arbitrary(u)?;
        let mut calls = Vec::new();
        while !u.is_empty() {
            calls.push(Call::arbitrary(u)?);
        }
        Ok(Sequence { redis, calls })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

impl Sequence {
    /// The sequence `bytes` decode to (what the fuzzer makes of them).
    ///
    /// # Errors
    ///
    /// When `arbitrary` finds the bytes malformed.
    pub fn from_bytes(bytes: &[u8]) -> arbitrary::Result<Self> {
        Sequence::arbitrary_take_rest(Unstructured::new(bytes))
    }
}

/// The host's limits in these runs: small, so that sequences reach them.
const MAX_HELD: usize = 6;
const MAX_HANDLES: usize = 24;
const MAX_WAIT: Duration = Duration::from_millis(2);

/// What the guest has, by kind: handle numbers (reps) in the order taken.
#[derive(Debug, Default)]
struct Guest {
    files: Vec<u32>,
    guards: Vec<u32>,
    semaphores: Vec<u32>,
    permits: Vec<u32>,
    redis: Vec<u32>,
    redis_guards: Vec<u32>,
}

/// The kinds of handle.
#[derive(Debug, Clone, Copy)]
enum Kind {
    File,
    Guard,
    Semaphore,
    Permit,
    Redis,
    RedisGuard,
}

impl Guest {
    fn list(&mut self, kind: Kind) -> &mut Vec<u32> {
        match kind {
            Kind::File => &mut self.files,
            Kind::Guard => &mut self.guards,
            Kind::Semaphore => &mut self.semaphores,
            Kind::Permit => &mut self.permits,
            Kind::Redis => &mut self.redis,
            Kind::RedisGuard => &mut self.redis_guards,
        }
    }

    /// Every handle the guest has, of any kind.
    fn all(&self) -> impl Iterator<Item = u32> + '_ {
        [
            &self.files,
            &self.guards,
            &self.semaphores,
            &self.permits,
            &self.redis,
            &self.redis_guards,
        ]
        .into_iter()
        .flatten()
        .copied()
    }

    fn held(&self) -> usize {
        self.guards.len() + self.permits.len() + self.redis_guards.len()
    }

    fn handles(&self) -> usize {
        self.all().count()
    }

    /// The handle `pick` names for a call on `kind`, and whether the guest
    /// really has it (so the host must accept it); `None` when the guest
    /// has none of that kind (the call is skipped).
    fn handle(&mut self, kind: Kind, pick: &Pick) -> Option<(u32, bool)> {
        let index = usize::from(pick.index);
        match pick.how {
            0..=247 => {
                let list = self.list(kind);
                (!list.is_empty()).then(|| (list[index % list.len()], true))
            }
            248..=251 => {
                let rep = u32::from(pick.index);
                let live = self.list(kind).contains(&rep);
                Some((rep, live))
            }
            _ => {
                let mine = self.list(kind).clone();
                let others: Vec<u32> = self.all().filter(|rep| !mine.contains(rep)).collect();
                Some(if others.is_empty() {
                    (u32::from(pick.index) + 1000, false)
                } else {
                    (others[index % others.len()], false)
                })
            }
        }
    }

    /// Whether `rep` is a handle the guest has of another kind than `kind`.
    /// Such a handle never reaches a host call that takes ownership:
    /// wasmtime checks the resource type of a handle the guest gives up
    /// before the host sees it, and the host's own table is typed by the
    /// caller. (A borrow of the wrong type does reach the host's lookups,
    /// which refuse it.)
    fn foreign(&mut self, kind: Kind, rep: u32) -> bool {
        let mine = self.list(kind).contains(&rep);
        !mine && self.all().any(|r| r == rep)
    }

    /// Take `rep` out of the guest's `kind` handles (an own handle moved
    /// into a call).
    fn forget(&mut self, kind: Kind, rep: u32) {
        self.list(kind).retain(|r| *r != rep);
    }
}

/// How a call ended.
enum Outcome {
    /// The host returned (a value or an error value).
    Returned,
    /// The host trapped: the instance is over.
    Trapped,
}

/// The grant and its surroundings, made once per process.
struct Fixture {
    _root: tempfile::TempDir,
    grant: PathBuf,
    outside: PathBuf,
    /// The grant's entries when made (sequences may add lock files; they
    /// are removed after each sequence, so each starts alike).
    planted: Vec<String>,
    /// Everything outside the grant, with its modification time.
    around: BTreeMap<PathBuf, Option<SystemTime>>,
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| Mutex::new(Fixture::new()))
}

impl Fixture {
    /// The scaffolding of the test harness, not host code: a temporary
    /// directory that cannot be made is the harness's own failure, which
    /// the fuzzer and the property test report as a panic like any other.
    fn new() -> Self {
        let root = tempfile::tempdir().expect("a temporary directory");
        let grant = root.path().join("grant");
        let outside = root.path().join("outside");
        fs::create_dir_all(grant.join("sub")).expect("mkdir");
        fs::create_dir_all(&outside).expect("mkdir");
        fs::write(outside.join("x.lock"), b"outside").expect("write");
        fs::write(grant.join("a.lock"), b"").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink("a.lock", grant.join("link-in")).expect("symlink");
            symlink(outside.join("x.lock"), grant.join("link-out")).expect("symlink");
            symlink(&outside, grant.join("link-dir")).expect("symlink");
            symlink("nowhere", grant.join("dangling")).expect("symlink");
            let fifo = std::ffi::CString::new(grant.join("fifo").to_string_lossy().as_bytes())
                .expect("a path");
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
        }
        let planted = entries(&grant);
        let mut fixture = Fixture {
            _root: root,
            grant,
            outside,
            planted,
            around: BTreeMap::new(),
        };
        fixture.around = fixture.survey();
        fixture
    }

    /// Everything under the root but inside the grant, with mtimes.
    fn survey(&self) -> BTreeMap<PathBuf, Option<SystemTime>> {
        let mut found = BTreeMap::new();
        let root = self.grant.parent().expect("the root");
        walk(root, &self.grant, &mut found);
        found
    }

    /// Remove what a sequence added to the grant.
    fn reset(&self) {
        for (dir, planted) in [(&self.grant, &self.planted)] {
            for name in entries(dir) {
                if !planted.contains(&name) {
                    let _ = fs::remove_file(dir.join(&name));
                }
            }
        }
        for name in entries(&self.grant.join("sub")) {
            let _ = fs::remove_file(self.grant.join("sub").join(name));
        }
        let _ = fs::write(self.grant.join("a.lock"), b"");
    }

    fn check_around(&self) {
        let now = self.survey();
        assert_eq!(
            now,
            self.around,
            "something outside the grant ({}) was created, changed or removed",
            self.outside.display()
        );
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn walk(dir: &Path, skip: &Path, found: &mut BTreeMap<PathBuf, Option<SystemTime>>) {
    let Ok(read) = fs::read_dir(dir) else { return };
    for entry in read.filter_map(Result::ok) {
        let path = entry.path();
        if path == skip {
            continue;
        }
        let meta = fs::symlink_metadata(&path).ok();
        found.insert(path.clone(), meta.as_ref().and_then(|m| m.modified().ok()));
        if meta.is_some_and(|m| m.is_dir()) {
            walk(&path, skip, found);
        }
    }
}

/// The descriptors this process has open on files under `root` (other
/// threads' descriptors, such as other tests', are elsewhere).
fn open_descriptors(root: &Path) -> Vec<PathBuf> {
    let Ok(fds) = fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter(|target| target.starts_with(root))
        .collect()
}

/// Run `sequence` on a fresh instance and check every invariant; panics on
/// a violation (which is what the fuzzer looks for).
pub fn run(sequence: &Sequence) {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        // What the process opens once and keeps is opened before counting.
        let warm = Sequence {
            calls: vec![
                Call::OpenFile(Text::Known(0)),
                Call::Lock {
                    lock: Pick { index: 0, how: 0 },
                    shared: false,
                    how: How::Try,
                },
                Call::ReleaseGuard(Pick { index: 0, how: 0 }),
                Call::Lock {
                    lock: Pick { index: 0, how: 0 },
                    shared: false,
                    how: How::Try,
                },
                Call::OpenRedis {
                    name: Text::Known(0),
                    fencing: true,
                },
                Call::RedisLock {
                    lock: Pick { index: 0, how: 0 },
                    shared: false,
                    how: How::Try,
                },
            ],
            redis: true,
        };
        run_counted(&warm, false);
    });
    run_counted(sequence, true);
}

/// [`run`], checking that no descriptor stays open when `count`.
fn run_counted(sequence: &Sequence, count: bool) {
    let fixture = fixture().lock().unwrap_or_else(|p| p.into_inner());
    let root = fixture.grant.parent().expect("the root").to_path_buf();
    let descriptors = open_descriptors(&root);
    {
        let mut builder = LocksCtx::builder()
            .preopened_dir(&fixture.grant, GRANT)
            .expect("grant")
            .max_held(MAX_HELD)
            .max_handles(MAX_HANDLES)
            .max_bytes(64 * 1024)
            .max_wait(MAX_WAIT);
        if sequence.redis {
            // A loopback port nothing listens on: acquisitions fail fast.
            builder = builder
                .redis("redis://127.0.0.1:9/", "fuzz:")
                .expect("a Redis URL");
        }
        let mut ctx = builder.build();
        let mut table = ResourceTable::new();
        let mut guest = Guest::default();
        for call in &sequence.calls {
            let mut view = LocksCtxView {
                ctx: &mut ctx,
                table: &mut table,
            };
            let outcome = step(&mut view, &mut guest, call);
            check(&mut view, &guest);
            if matches!(outcome, Outcome::Trapped) {
                break;
            }
        }
        // The instance ends: its table goes, and with it everything held.
        drop(table);
        assert_eq!(
            ctx.usage(),
            Usage::default(),
            "a dropped instance still counts something"
        );
    }
    let after = open_descriptors(&root);
    assert!(
        !count || after.len() <= descriptors.len(),
        "descriptors leaked: {descriptors:?} open before the sequence, {after:?} after"
    );
    fixture.check_around();
    fixture.reset();
}

fn mode(shared: bool) -> LockMode {
    if shared {
        LockMode::Shared
    } else {
        LockMode::Exclusive
    }
}

/// A wait's arguments: `None` for the call without a timeout.
fn timeout(how: &How) -> Option<u64> {
    match *how {
        How::Try | How::Wait => None,
        How::For(n) => Some(u64::from(n) * 100_000),
        How::TooLong(extra) => Some(
            u64::try_from(MAX_WAIT.as_nanos())
                .unwrap_or(u64::MAX)
                .saturating_add(extra.max(1)),
        ),
    }
}

/// What a host call gave: a value, an error value or a trap. A trap for a
/// handle the guest really has, or a value for one it does not, is a bug.
fn settle<T>(result: Result<T, LockError>, live: bool, call: &Call) -> Result<Option<T>, ()> {
    match result {
        Ok(value) => {
            assert!(live, "{call:?}: a bad handle was accepted");
            Ok(Some(value))
        }
        Err(error) => match error.into_code() {
            // A bad handle may be refused with an error value when another
            // argument is refused first (wasmtime itself traps on a handle
            // the guest does not have, before the host is called).
            Ok(_) => Ok(None),
            Err(_) => {
                assert!(!live, "{call:?}: a live handle trapped");
                Err(())
            }
        },
    }
}

/// A call that cannot fail except by trapping.
fn plain<T>(result: wasmtime::Result<T>, live: bool, call: &Call) -> Result<T, ()> {
    match result {
        Ok(value) => {
            assert!(live, "{call:?}: a bad handle was accepted");
            Ok(value)
        }
        Err(_) => {
            assert!(!live, "{call:?}: a live handle trapped");
            Err(())
        }
    }
}

fn own<T: 'static>(rep: u32) -> Resource<T> {
    Resource::new_own(rep)
}

fn borrow<T: 'static>(rep: u32) -> Resource<T> {
    Resource::new_borrow(rep)
}

/// Make one call, keeping the guest's view of what it has up to date.
fn step(view: &mut LocksCtxView<'_>, guest: &mut Guest, call: &Call) -> Outcome {
    let done = |r: Result<(), ()>| match r {
        Ok(()) => Outcome::Returned,
        Err(()) => Outcome::Trapped,
    };
    let result: Result<(), ()> = match call {
        Call::OpenFile(path) => {
            let opened = HostFileLock::open(view, path.pick(PATHS));
            settle(opened, true, call).map(|h| {
                if let Some(h) = h {
                    guest.files.push(h.rep());
                }
            })
        }
        Call::Lock { lock, shared, how } => {
            let Some((rep, live)) = guest.handle(Kind::File, lock) else {
                return Outcome::Returned;
            };
            let handle = borrow::<FileLockHandle>(rep);
            let mode = mode(*shared);
            let taken = match (how, timeout(how)) {
                (How::Try, _) => HostFileLock::try_lock(view, handle, mode),
                (_, None) => HostFileLock::lock(view, handle, mode),
                (_, Some(t)) => HostFileLock::lock_for(view, handle, mode, t),
            };
            settle(taken, live, call).map(|g| {
                if let Some(g) = g {
                    guest.guards.push(g.rep());
                }
            })
        }
        Call::FilePath(pick) => {
            let Some((rep, live)) = guest.handle(Kind::File, pick) else {
                return Outcome::Returned;
            };
            plain(HostFileLock::path(view, borrow(rep)), live, call).map(drop)
        }
        Call::GuardMode(pick) => {
            let Some((rep, live)) = guest.handle(Kind::Guard, pick) else {
                return Outcome::Returned;
            };
            plain(HostFileLockGuard::mode(view, borrow(rep)), live, call).map(drop)
        }
        Call::ReleaseGuard(pick) => {
            let Some((rep, live)) = guest.handle(Kind::Guard, pick) else {
                return Outcome::Returned;
            };
            if guest.foreign(Kind::Guard, rep) {
                return Outcome::Returned;
            }
            guest.forget(Kind::Guard, rep);
            settle(HostFileLockGuard::release(view, own(rep)), live, call).map(drop)
        }
        Call::DropGuard(pick) => {
            let Some((rep, live)) = guest.handle(Kind::Guard, pick) else {
                return Outcome::Returned;
            };
            if guest.foreign(Kind::Guard, rep) {
                return Outcome::Returned;
            }
            guest.forget(Kind::Guard, rep);
            plain(HostFileLockGuard::drop(view, own(rep)), live, call)
        }
        Call::DropFile(pick) => {
            let Some((rep, live)) = guest.handle(Kind::File, pick) else {
                return Outcome::Returned;
            };
            if guest.foreign(Kind::File, rep) {
                return Outcome::Returned;
            }
            guest.forget(Kind::File, rep);
            plain(HostFileLock::drop(view, own(rep)), live, call)
        }
        Call::OpenSemaphore { name, slots, dir } => {
            let opened = HostSemaphore::open(view, name.pick(NAMES), *slots, dir.pick(DIRS));
            settle(opened, true, call).map(|h| {
                if let Some(h) = h {
                    guest.semaphores.push(h.rep());
                }
            })
        }
        Call::Acquire { semaphore, how } => {
            let Some((rep, live)) = guest.handle(Kind::Semaphore, semaphore) else {
                return Outcome::Returned;
            };
            let handle = borrow::<SemaphoreHandle>(rep);
            let taken = match (how, timeout(how)) {
                (How::Try, _) => HostSemaphore::try_acquire(view, handle),
                (_, None) => HostSemaphore::acquire(view, handle),
                (_, Some(t)) => HostSemaphore::acquire_for(view, handle, t),
            };
            settle(taken, live, call).map(|p| {
                if let Some(p) = p {
                    guest.permits.push(p.rep());
                }
            })
        }
        Call::Slots(pick) => {
            let Some((rep, live)) = guest.handle(Kind::Semaphore, pick) else {
                return Outcome::Returned;
            };
            plain(HostSemaphore::slots(view, borrow(rep)), live, call).map(drop)
        }
        Call::PermitSlot(pick) => {
            let Some((rep, live)) = guest.handle(Kind::Permit, pick) else {
                return Outcome::Returned;
            };
            plain(HostSemaphorePermit::slot(view, borrow(rep)), live, call).map(drop)
        }
        Call::ReleasePermit(pick) => {
            let Some((rep, live)) = guest.handle(Kind::Permit, pick) else {
                return Outcome::Returned;
            };
            if guest.foreign(Kind::Permit, rep) {
                return Outcome::Returned;
            }
            guest.forget(Kind::Permit, rep);
            settle(HostSemaphorePermit::release(view, own(rep)), live, call).map(drop)
        }
        Call::DropPermit(pick) => {
            let Some((rep, live)) = guest.handle(Kind::Permit, pick) else {
                return Outcome::Returned;
            };
            if guest.foreign(Kind::Permit, rep) {
                return Outcome::Returned;
            }
            guest.forget(Kind::Permit, rep);
            plain(HostSemaphorePermit::drop(view, own(rep)), live, call)
        }
        Call::DropSemaphore(pick) => {
            let Some((rep, live)) = guest.handle(Kind::Semaphore, pick) else {
                return Outcome::Returned;
            };
            if guest.foreign(Kind::Semaphore, rep) {
                return Outcome::Returned;
            }
            guest.forget(Kind::Semaphore, rep);
            plain(HostSemaphore::drop(view, own(rep)), live, call)
        }
        Call::OpenRedis { name, fencing } => {
            let opened = HostRedisLock::open(view, name.pick(NAMES), *fencing);
            settle(opened, true, call).map(|h| {
                if let Some(h) = h {
                    guest.redis.push(h.rep());
                }
            })
        }
        Call::RedisLock { lock, shared, how } => {
            let Some((rep, live)) = guest.handle(Kind::Redis, lock) else {
                return Outcome::Returned;
            };
            let handle = borrow::<RedisLockHandle>(rep);
            let mode = mode(*shared);
            let taken = match (how, timeout(how)) {
                (How::Try, _) => HostRedisLock::try_lock(view, handle, mode),
                (_, None) => HostRedisLock::lock(view, handle, mode),
                (_, Some(t)) => HostRedisLock::lock_for(view, handle, mode, t),
            };
            settle(taken, live, call).map(|g| {
                if let Some(g) = g {
                    guest.redis_guards.push(g.rep());
                }
            })
        }
        Call::RedisName(pick) => {
            let Some((rep, live)) = guest.handle(Kind::Redis, pick) else {
                return Outcome::Returned;
            };
            plain(HostRedisLock::name(view, borrow(rep)), live, call).map(drop)
        }
        Call::FencingToken(pick) => {
            let Some((rep, live)) = guest.handle(Kind::RedisGuard, pick) else {
                return Outcome::Returned;
            };
            plain(
                HostRedisLockGuard::fencing_token(view, borrow(rep)),
                live,
                call,
            )
            .map(drop)
        }
        Call::IsLost(pick) => {
            let Some((rep, live)) = guest.handle(Kind::RedisGuard, pick) else {
                return Outcome::Returned;
            };
            plain(HostRedisLockGuard::is_lost(view, borrow(rep)), live, call).map(drop)
        }
        Call::ReleaseRedisGuard(pick) => {
            let Some((rep, live)) = guest.handle(Kind::RedisGuard, pick) else {
                return Outcome::Returned;
            };
            if guest.foreign(Kind::RedisGuard, rep) {
                return Outcome::Returned;
            }
            guest.forget(Kind::RedisGuard, rep);
            settle(HostRedisLockGuard::release(view, own(rep)), live, call).map(drop)
        }
        Call::DropRedisGuard(pick) => {
            let Some((rep, live)) = guest.handle(Kind::RedisGuard, pick) else {
                return Outcome::Returned;
            };
            if guest.foreign(Kind::RedisGuard, rep) {
                return Outcome::Returned;
            }
            guest.forget(Kind::RedisGuard, rep);
            plain(HostRedisLockGuard::drop(view, own(rep)), live, call)
        }
        Call::DropRedis(pick) => {
            let Some((rep, live)) = guest.handle(Kind::Redis, pick) else {
                return Outcome::Returned;
            };
            if guest.foreign(Kind::Redis, rep) {
                return Outcome::Returned;
            }
            guest.forget(Kind::Redis, rep);
            plain(HostRedisLock::drop(view, own(rep)), live, call)
        }
    };
    done(result)
}

/// The invariants that hold between any two calls.
fn check(view: &mut LocksCtxView<'_>, guest: &Guest) {
    let usage = view.ctx.usage();
    assert_eq!(
        usage.held,
        guest.held(),
        "the held count is not what the guest holds"
    );
    assert_eq!(
        usage.handles,
        guest.handles(),
        "the handle count is not what the guest has"
    );
    assert!(
        usage.held <= MAX_HELD && usage.handles <= MAX_HANDLES,
        "over the limits: {usage:?}"
    );

    // File locks: one file is held exclusively by at most one guard, and
    // then by no shared one.
    let mut files: HashMap<crate::sandbox::FileKey, Vec<portalocker::LockMode>> = HashMap::new();
    for &rep in &guest.guards {
        let guard = view
            .table
            .get(&borrow::<FileLockGuardHandle>(rep))
            .expect("a held guard");
        if let Some((key, mode)) = guard.held() {
            files.entry(key).or_default().push(mode);
        }
    }
    for modes in files.values() {
        let exclusive = modes
            .iter()
            .filter(|m| **m == portalocker::LockMode::Exclusive)
            .count();
        assert!(
            exclusive == 0 || modes.len() == 1,
            "one file held as {modes:?} at once"
        );
    }

    // Semaphores: one slot file is held by at most one permit.
    let mut slots: HashMap<crate::sandbox::FileKey, u32> = HashMap::new();
    for &rep in &guest.permits {
        let permit = view
            .table
            .get(&borrow::<PermitHandle>(rep))
            .expect("a held permit");
        if let Some(key) = permit.held() {
            *slots.entry(key).or_default() += 1;
        }
    }
    assert!(
        slots.values().all(|n| *n == 1),
        "one slot file held by two permits"
    );
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1024,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Arbitrary call sequences keep every invariant (the fuzzer's
        /// model, on random bytes).
        #[test]
        fn arbitrary_call_sequences_keep_the_invariants(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096)
        ) {
            if let Ok(sequence) = Sequence::from_bytes(&bytes) {
                run(&sequence);
            }
        }
    }

    /// The inputs kept in `fuzz/regressions/host_calls/` pass: every input
    /// the fuzzer ever failed on (`crash-*`), and seeds from its corpus
    /// that reach deep into the host (`seed-*`).
    #[test]
    fn fuzzer_regressions_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/host_calls");
        let inputs = fs::read_dir(&dir).expect("the regression inputs");
        let mut count = 0;
        for input in inputs {
            let path = input.expect("an entry").path();
            let bytes = fs::read(&path).expect("an input");
            let sequence = Sequence::from_bytes(&bytes).expect("a sequence");
            run(&sequence);
            count += 1;
        }
        assert!(count > 0, "no regression inputs in {}", dir.display());
    }
}
