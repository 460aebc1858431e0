//! Scenarios for `portalocker:locks@0.2.0`, one async component; the first
//! argument names the scenario:
//!
//! - `counter LOCK DATA TOKENS N`: N fenced exclusive locks, each
//!   incrementing the counter in DATA and checking that its fencing token
//!   is above the last one written to TOKENS (by any holder).
//! - `wake DIR K`: K tasks wait at once on `DIR/w{i}.lock` (held by the
//!   host); each says `got i` when it is granted and lets go.
//! - `cancel KIND TARGET N SEED`: waits (KIND `file`, `semaphore` or
//!   `redis` on TARGET) cut at random points, racing grants, until N were
//!   cancelled; says `granted G cancelled N`, then `done` and waits for
//!   stdin to close.
//! - `lost-file LOCK HOW`: lock, then unlink (`HOW` = `unlink`) or replace
//!   (`replace`) the lock file, and await the loss; a released guard's
//!   watch never resolves.
//! - `lost-slot DIR`: the same for a semaphore slot file.
//! - `lost-redis NAME`: take the Redis lock, say `locked`, await the loss.
//! - `watch-budget LOCK`: loss watches past the handle limit are refused
//!   with `limit-exceeded`, and allowed again once dropped.
//! - `redis-counter NAME DATA TOKENS N`: N fenced Redis holds through
//!   `lock`, `lock-for` and `try-lock` in turn, each incrementing DATA and
//!   checking its token against TOKENS, with a shared hold between.
//! - `relock LOCK`: lock and release a few times (so the host keeps the
//!   descriptor and watches it), say `released`, wait for a line, then
//!   check that a try-lock finds the file the path names now held.
//! - `calls DIR`: every call of the interface, once.
//! - `pairs LOCK N HOW`: time N uncontended lock + release pairs of one
//!   handle, through `try-lock` (`HOW` = `try`) or an awaited `lock`
//!   (`await`); prints nanoseconds per pair (the benchmark's W1).

use std::time::Duration;

use futures::FutureExt;
use portalocker_guest::aio::{self, Error, FileLock, LockMode, RedisLock, Semaphore};

/// The program's arguments after its name.
fn args() -> Vec<String> {
    std::env::args().skip(1).collect()
}

/// A failure, told as an error value.
fn fail(message: impl Into<String>) -> Error {
    Error::Other(message.into())
}

/// Yield to the component's other tasks (and the host) `n` times.
async fn yields(n: u32) {
    for _ in 0..n {
        aio::yield_now().await;
    }
}

async fn main() -> Result<(), Error> {
    let args = args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["counter", lock, data, tokens, n] => counter(lock, data, tokens, n.parse().unwrap()).await,
        ["wake", dir, k] => wake(dir, k.parse().unwrap()).await,
        ["cancel", kind, target, n, seed] => {
            cancel(kind, target, n.parse().unwrap(), seed.parse().unwrap()).await
        }
        ["lost-file", lock, how] => lost_file(lock, how).await,
        ["lost-slot", dir] => lost_slot(dir).await,
        ["lost-redis", name] => lost_redis(name).await,
        ["watch-budget", lock] => watch_budget(lock).await,
        ["calls", dir] => calls(dir).await,
        ["relock", lock] => relock(lock).await,
        ["pairs", lock, n, how] => pairs(lock, n.parse().unwrap(), how).await,
        ["redis-counter", name, data, tokens, n] => {
            redis_counter(name, data, tokens, n.parse().unwrap()).await
        }
        other => Err(fail(format!("unknown scenario {other:?}"))),
    }
}

fn read_number(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

async fn counter(lock: &str, data: &str, tokens: &str, n: u32) -> Result<(), Error> {
    let lock = FileLock::open(lock, true)?;
    for _ in 0..n {
        let guard = lock.lock().await?;
        let token = guard.fencing_token().ok_or_else(|| fail("no fencing token"))?;
        let last = read_number(tokens);
        if token <= last {
            return Err(fail(format!("token {token} is not above the last one, {last}")));
        }
        std::fs::write(tokens, format!("{token}\n")).map_err(|e| fail(e.to_string()))?;
        let value = read_number(data);
        std::fs::write(data, format!("{}\n", value + 1)).map_err(|e| fail(e.to_string()))?;
        guard.release()?;
    }
    println!("ok");
    Ok(())
}

async fn wake(dir: &str, k: u32) -> Result<(), Error> {
    let tasks: Vec<_> = (0..k)
        .map(|i| {
            let path = format!("{dir}/w{i}.lock");
            aio::spawn(async move {
                let lock = FileLock::open(&path, false)?;
                let guard = lock.lock().await?;
                println!("got {i}");
                guard.release()
            })
        })
        .collect();
    for task in tasks {
        task.await.ok_or_else(|| fail("a task was cancelled"))??;
    }
    Ok(())
}

/// A small deterministic generator (xorshift), so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Race `wait` against `n` yields: `true` when it was granted (the guard is
/// dropped at once), `false` when it was cancelled.
async fn race<G>(wait: impl Future<Output = Result<G, Error>>, n: u32) -> Result<bool, Error> {
    futures::select_biased! {
        granted = wait.fuse() => match granted {
            Ok(_guard) => Ok(true),
            Err(e) if e.is_contention() => Ok(false),
            Err(e) => Err(e),
        },
        () = yields(n).fuse() => Ok(false),
    }
}

async fn cancel(kind: &str, target: &str, n: u32, seed: u64) -> Result<(), Error> {
    let mut rng = Rng(seed | 1);
    let (mut granted, mut cancelled) = (0u64, 0u32);
    let file = (kind == "file")
        .then(|| FileLock::open(target, true))
        .transpose()?;
    let semaphore = (kind == "semaphore")
        .then(|| Semaphore::open("c", 1, target))
        .transpose()?;
    let redis = (kind == "redis")
        .then(|| RedisLock::open(target, true))
        .transpose()?;
    let forever = Duration::from_secs(60);
    // A Redis grant takes round trips to the server: cut its waits over a
    // longer span of yields.
    let span = if redis.is_some() { 400 } else { 6 };
    // Until N waits were cancelled (a wait granted at once is not).
    while cancelled < n {
        if granted > 50 * u64::from(n) {
            return Err(fail("the waits are not being cancelled"));
        }
        // One wait in ten is never cut (it waits out the contender), so
        // grants happen however slow the machine is.
        let steps = if rng.below(10) == 0 {
            u32::MAX
        } else {
            u32::try_from(rng.below(span)).unwrap_or(0)
        };
        let shared = rng.below(4) == 0;
        let got = match (&file, &semaphore, &redis) {
            (Some(lock), _, _) if shared => race(lock.lock_shared_for(forever), steps).await?,
            (Some(lock), _, _) => race(lock.lock_for(forever), steps).await?,
            (_, Some(sem), _) => race(sem.acquire_for(forever), steps).await?,
            (_, _, Some(lock)) if shared => race(lock.lock_shared_for(forever), steps).await?,
            (_, _, Some(lock)) => race(lock.lock_for(forever), steps).await?,
            _ => return Err(fail(format!("unknown kind {kind}"))),
        };
        if got {
            granted += 1;
        } else {
            cancelled += 1;
        }
    }
    println!("granted {granted} cancelled {cancelled}");
    println!("done");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}

/// Whether `lost` is still pending after many yields.
async fn stays_pending(lost: impl Future<Output = String>) -> bool {
    futures::select_biased! {
        _ = lost.fuse() => false,
        () = yields(200).fuse() => true,
    }
}

async fn lost_file(path: &str, how: &str) -> Result<(), Error> {
    let lock = FileLock::open(path, false)?;
    // Released first: its watch never resolves.
    let guard = lock.lock().await?;
    let watch = guard.lost()?;
    guard.release()?;
    if !stays_pending(watch).await {
        return Err(fail("a released guard's watch resolved"));
    }
    // Held undisturbed: pending too.
    let guard = lock.lock().await?;
    if !stays_pending(guard.lost()?).await {
        return Err(fail("a held lock's watch resolved"));
    }
    let watch = guard.lost()?;
    match how {
        "unlink" => std::fs::remove_file(path),
        "replace" => std::fs::write(format!("{path}.new"), "")
            .and_then(|()| std::fs::rename(format!("{path}.new"), path)),
        other => return Err(fail(format!("unknown way {other}"))),
    }
    .map_err(|e| fail(e.to_string()))?;
    println!("lost: {}", watch.await);
    Ok(())
}

async fn lost_slot(dir: &str) -> Result<(), Error> {
    let semaphore = Semaphore::open("s", 1, dir)?;
    let permit = semaphore.acquire().await?;
    let watch = permit.lost()?;
    std::fs::remove_file(format!("{dir}/s.00.lock")).map_err(|e| fail(e.to_string()))?;
    println!("lost: {}", watch.await);
    Ok(())
}

async fn lost_redis(name: &str) -> Result<(), Error> {
    let lock = RedisLock::open(name, true)?;
    let guard = lock.lock().await?;
    let watch = guard.lost()?;
    println!("locked {}", guard.fencing_token().unwrap_or(0));
    let reason = watch.await;
    println!("lost: {reason}");
    if !guard.is_lost() {
        return Err(fail("the loss future resolved but is-lost says held"));
    }
    match guard.release() {
        Err(Error::Lost) => Ok(()),
        other => Err(fail(format!("release after the loss: {other:?}"))),
    }
}

async fn watch_budget(path: &str) -> Result<(), Error> {
    let lock = FileLock::open(path, false)?;
    let guard = lock.lock().await?;
    let mut watches = Vec::new();
    let refused = loop {
        match guard.lost() {
            Ok(watch) => watches.push(watch),
            Err(e) => break e,
        }
        if watches.len() > 100_000 {
            return Err(fail("no limit on loss watches"));
        }
    };
    if !matches!(refused, Error::LimitExceeded(_)) {
        return Err(fail(format!("past the limit: {refused:?}")));
    }
    println!("watches {}", watches.len());
    watches.clear();
    drop(guard.lost()?);
    guard.release()
}

async fn redis_counter(name: &str, data: &str, tokens: &str, n: u32) -> Result<(), Error> {
    let lock = RedisLock::open(name, true)?;
    if lock.name() != name {
        return Err(fail("name"));
    }
    for i in 0..n {
        let guard = match i % 3 {
            0 => lock.lock().await?,
            1 => lock.lock_for(Duration::from_secs(60)).await?,
            _ => loop {
                match lock.try_lock().await {
                    Ok(guard) => break guard,
                    Err(Error::WouldBlock) => aio::yield_now().await,
                    Err(other) => return Err(other),
                }
            },
        };
        if guard.mode() != LockMode::Exclusive || guard.is_lost() {
            return Err(fail("an exclusive, held guard"));
        }
        let token = guard.fencing_token().ok_or_else(|| fail("no fencing token"))?;
        let last = read_number(tokens);
        if token <= last {
            return Err(fail(format!("token {token} is not above the last one, {last}")));
        }
        std::fs::write(tokens, format!("{token}\n")).map_err(|e| fail(e.to_string()))?;
        let value = read_number(data);
        std::fs::write(data, format!("{}\n", value + 1)).map_err(|e| fail(e.to_string()))?;
        guard.release()?;
        if i % 10 == 0 {
            let reader = if i % 20 == 0 {
                lock.lock_shared().await?
            } else {
                lock.lock_shared_for(Duration::from_secs(60)).await?
            };
            if reader.mode() != LockMode::Shared {
                return Err(fail("a shared guard"));
            }
            drop(reader);
            drop(lock.try_lock_shared().await);
        }
    }
    println!("ok");
    Ok(())
}

async fn pairs(path: &str, n: u32, how: &str) -> Result<(), Error> {
    let lock = FileLock::open(path, false)?;
    let started = std::time::Instant::now();
    for _ in 0..n {
        match how {
            "try" => lock.try_lock()?.release()?,
            _ => lock.lock().await?.release()?,
        }
    }
    println!("{}", started.elapsed().as_nanos() / u128::from(n.max(1)));
    Ok(())
}

async fn relock(path: &str) -> Result<(), Error> {
    let lock = FileLock::open(path, false)?;
    for _ in 0..3 {
        lock.lock().await?.release()?;
    }
    println!("released");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    match lock.try_lock() {
        Err(Error::WouldBlock) => {
            println!("ok");
            Ok(())
        }
        other => Err(fail(format!(
            "the lock file the path names now is held, yet: {other:?}"
        ))),
    }
}

async fn calls(dir: &str) -> Result<(), Error> {
    let path = format!("{dir}/calls.lock");
    let lock = FileLock::open(&path, true)?;
    if lock.path() != path {
        return Err(fail("path"));
    }
    let first = lock.try_lock()?;
    if first.mode() != LockMode::Exclusive || first.fencing_token().is_none() {
        return Err(fail("an exclusive fenced try-lock has a token"));
    }
    match lock.try_lock() {
        Err(Error::WouldBlock) => {}
        other => return Err(fail(format!("a second try-lock: {other:?}"))),
    }
    match lock.lock_for(Duration::from_millis(20)).await {
        Err(Error::TimedOut) => {}
        other => return Err(fail(format!("lock-for while held: {other:?}"))),
    }
    let token = first.fencing_token();
    first.release()?;
    let shared = lock.lock_shared().await?;
    let shared2 = lock.lock_shared_for(Duration::from_secs(1)).await?;
    if shared.fencing_token().is_some() || shared2.mode() != LockMode::Shared {
        return Err(fail("shared holders draw no token"));
    }
    drop((shared, shared2));
    let again = lock.lock().await?;
    if again.fencing_token() <= token {
        return Err(fail("tokens grow"));
    }
    drop(again);
    let unfenced = FileLock::open(&path, false)?;
    if unfenced.try_lock()?.fencing_token().is_some() {
        return Err(fail("an unfenced lock draws no token"));
    }
    let semaphore = Semaphore::open("calls", 2, dir)?;
    let a = semaphore.acquire().await?;
    let b = semaphore.acquire_for(Duration::from_secs(1)).await?;
    match semaphore.try_acquire() {
        Err(Error::WouldBlock) => {}
        other => return Err(fail(format!("a full semaphore: {other:?}"))),
    }
    if semaphore.slots() != 2 || a.slot() == b.slot() {
        return Err(fail("slots"));
    }
    a.release()?;
    drop(b);
    match RedisLock::open("calls", false) {
        Err(Error::Unsupported(_)) => {}
        other => return Err(fail(format!("redis without a grant: {other:?}"))),
    }
    match FileLock::open("/elsewhere/x.lock", false) {
        Err(Error::AccessDenied(_)) => {}
        other => return Err(fail(format!("outside the grants: {other:?}"))),
    }
    println!("ok");
    Ok(())
}

portalocker_guest::run!(main);
