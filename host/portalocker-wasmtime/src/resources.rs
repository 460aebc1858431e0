//! The host-side values behind the guest's handles, and the operations the
//! sync and async bindings share.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use portalocker::{BoundedSemaphore, LockFlags, LockGuard, LockMode, SemaphorePermit};
use wasmtime::component::Resource;

use crate::ctx::{Held, LocksCtxView};
use crate::error::LockError;
use crate::sandbox::{self, Resolved};
use crate::wake::{self, FileKey};

/// A descriptor of the lock file kept between locks, so a plugin that
/// locks and unlocks the same file does not reopen it every time.
type Spare = Arc<Mutex<Option<(File, FileKey)>>>;

/// A lock file the guest named (`file-lock`).
#[derive(Debug)]
pub struct FileLockHandle {
    pub(crate) resolved: Resolved,
    spare: Spare,
}

/// A held file lock (`file-lock-guard`): dropping it releases the lock.
#[derive(Debug)]
pub struct FileLockGuardHandle {
    file: Option<File>,
    pub(crate) mode: LockMode,
    key: FileKey,
    spare: Spare,
    _held: Held,
}

impl FileLockGuardHandle {
    /// Unlock, then keep the descriptor for the next lock (or close it).
    fn release_inner(&mut self) -> Result<(), portalocker::Error> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let unlocked = portalocker::unlock(&file);
        wake::released(self.key);
        if unlocked.is_ok() {
            let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            if spare.is_none() {
                *spare = Some((file, self.key));
            }
        }
        unlocked
    }

    /// Release now, reporting failures.
    pub(crate) fn release(mut self) -> Result<(), portalocker::Error> {
        self.release_inner()
    }
}

impl Drop for FileLockGuardHandle {
    fn drop(&mut self) {
        // The descriptor is closed (or kept) either way, which frees the lock.
        let _ = self.release_inner();
    }
}

/// A Redis lock the guest named (`redis-lock`).
#[derive(Debug)]
pub struct RedisLockHandle {
    pub(crate) lock: portalocker::redis::RedisLock,
    pub(crate) name: String,
}

/// A held Redis lock (`redis-lock-guard`): dropping it releases the lock.
#[derive(Debug)]
pub struct RedisGuardHandle {
    pub(crate) guard: Option<portalocker::redis::RedisLockGuard>,
    _held: Held,
}

/// The longest Redis lock name a guest may use, in bytes (before the
/// host's prefix).
pub const MAX_REDIS_NAME_LEN: usize = 256;

/// A semaphore the guest named (`semaphore`).
#[derive(Debug)]
pub struct SemaphoreHandle {
    pub(crate) semaphore: BoundedSemaphore,
    pub(crate) dir: Dir,
    pub(crate) guest_dir: String,
}

/// A held slot (`semaphore-permit`): dropping it frees the slot.
#[derive(Debug)]
pub struct PermitHandle {
    permit: Option<SemaphorePermit>,
    pub(crate) slot: u32,
    key: FileKey,
    _held: Held,
}

impl PermitHandle {
    /// Free the slot now, reporting failures.
    pub(crate) fn release(mut self) -> Result<(), portalocker::Error> {
        let result = self.permit.take().map_or(Ok(()), SemaphorePermit::release);
        wake::released(self.key);
        result
    }
}

impl Drop for PermitHandle {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            drop(permit);
            wake::released(self.key);
        }
    }
}

/// A guest timeout in nanoseconds.
pub(crate) fn from_nanos(nanos: u64) -> Duration {
    Duration::from_nanos(nanos)
}

impl LocksCtxView<'_> {
    pub(crate) fn open_file_lock(
        &mut self,
        path: String,
    ) -> Result<Resource<FileLockHandle>, LockError> {
        let resolved = sandbox::resolve(&self.ctx.grants, &path)?;
        Ok(self.table.push(FileLockHandle {
            resolved,
            spare: Spare::default(),
        })?)
    }

    pub(crate) fn file_lock_path(
        &mut self,
        handle: &Resource<FileLockHandle>,
    ) -> Result<String, LockError> {
        Ok(self.table.get(handle)?.resolved.guest.clone())
    }

    /// Count the hold and find the handle's path and spare descriptor.
    fn prepare_lock(
        &mut self,
        handle: &Resource<FileLockHandle>,
    ) -> Result<(Resolved, Spare, Held), LockError> {
        let handle = self.table.get(handle)?;
        let (resolved, spare) = (handle.resolved.clone(), Arc::clone(&handle.spare));
        let held = self.ctx.reserve()?;
        Ok((resolved, spare, held))
    }

    /// Lock, blocking this thread up to `timeout` (`None`: no limit).
    pub(crate) fn lock_blocking(
        &mut self,
        handle: &Resource<FileLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let (resolved, spare, held) = self.prepare_lock(handle)?;
        let deadline = deadline(timeout);
        let mut retries = 0;
        let (file, key) = loop {
            let (file, key) = take_or_open(&spare, &resolved)?;
            let result = match timeout {
                None => portalocker::lock(&file, LockFlags::new(mode, false)),
                Some(_) => {
                    let left = deadline.map_or(Duration::ZERO, |d| {
                        d.saturating_duration_since(Instant::now())
                    });
                    portalocker::lock_timeout(&file, mode, left)
                }
            };
            match result {
                Ok(()) => {}
                Err(e) if e.is_contention() => return Err(contention(timeout)),
                Err(e) => return Err(LockError::from_core(&resolved.guest, e)),
            }
            if let Some(named) = still_named(file, key, &resolved, &mut retries)? {
                break named;
            }
        };
        self.push_guard(file, key, mode, spare, held)
    }

    /// Lock without blocking the executor: try, then wait for a release in
    /// this process or a short, growing pause, up to `timeout`.
    pub(crate) async fn lock_waiting(
        &mut self,
        handle: &Resource<FileLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        let (resolved, spare, held) = self.prepare_lock(handle)?;
        let deadline = deadline(timeout);
        let flags = LockFlags::new(mode, true);
        let mut retries = 0;
        let (file, key) = loop {
            let (file, key) = take_or_open(&spare, &resolved)?;
            let attempt = || match portalocker::lock(&file, flags) {
                Ok(()) => Ok(true),
                Err(e) if e.is_contention() => Ok(false),
                Err(e) => Err(LockError::from_core(&resolved.guest, e)),
            };
            if !wake::wait_until(Some(key), deadline, attempt).await? {
                return Err(contention(timeout));
            }
            if let Some(named) = still_named(file, key, &resolved, &mut retries)? {
                break named;
            }
        };
        self.push_guard(file, key, mode, spare, held)
    }

    fn push_guard(
        &mut self,
        file: File,
        key: FileKey,
        mode: LockMode,
        spare: Spare,
        held: Held,
    ) -> Result<Resource<FileLockGuardHandle>, LockError> {
        Ok(self.table.push(FileLockGuardHandle {
            file: Some(file),
            mode,
            key,
            spare,
            _held: held,
        })?)
    }

    pub(crate) fn guard_mode(
        &mut self,
        guard: &Resource<FileLockGuardHandle>,
    ) -> Result<LockMode, LockError> {
        Ok(self.table.get(guard)?.mode)
    }

    pub(crate) fn release_guard(
        &mut self,
        guard: Resource<FileLockGuardHandle>,
    ) -> Result<(), LockError> {
        let handle = self.table.delete(guard)?;
        handle
            .release()
            .map_err(|e| LockError::from_core("lock", e))
    }

    pub(crate) fn open_semaphore(
        &mut self,
        name: String,
        slots: u32,
        directory: String,
    ) -> Result<Resource<SemaphoreHandle>, LockError> {
        let slots = usize::try_from(slots).map_err(|_| LockError::invalid("too many slots"))?;
        let semaphore = BoundedSemaphore::new(slots, &name)
            .map_err(|e| LockError::from_core(&name, e))?
            .directory(Path::new("/").join(directory.trim_start_matches('/')));
        let resolved = sandbox::resolve(&self.ctx.grants, &directory)?;
        let dir = resolved.open_dir()?;
        Ok(self.table.push(SemaphoreHandle {
            semaphore,
            dir,
            guest_dir: directory,
        })?)
    }

    pub(crate) fn semaphore_slots(
        &mut self,
        handle: &Resource<SemaphoreHandle>,
    ) -> Result<u32, LockError> {
        let slots = self.table.get(handle)?.semaphore.maximum();
        Ok(u32::try_from(slots).unwrap_or(u32::MAX))
    }

    /// Take a slot, blocking this thread up to `timeout`.
    pub(crate) fn acquire_blocking(
        &mut self,
        handle: &Resource<SemaphoreHandle>,
        timeout: Option<Duration>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let held = self.ctx.reserve()?;
        let sem = self.table.get(handle)?;
        let open = |name: &str| sandbox::open_in(&sem.dir, Path::new(name));
        let permit = sem
            .semaphore
            .acquire_with_opener(timeout, &open)
            .map_err(|e| LockError::from_core(&sem.guest_dir, e))?;
        let key = wake::key_of(permit.file());
        self.push_permit(permit, key, held)
    }

    /// Take a slot without blocking the executor.
    pub(crate) async fn acquire_waiting(
        &mut self,
        handle: &Resource<SemaphoreHandle>,
        timeout: Option<Duration>,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let held = self.ctx.reserve()?;
        let sem = self.table.get(handle)?;
        let mut found = None;
        let sweep = || {
            for slot in 0..sem.semaphore.maximum() {
                let name = sem.semaphore.slot_file_name(slot);
                let file = sandbox::open_in(&sem.dir, Path::new(&name))
                    .map_err(|e| LockError::from_io(&sem.guest_dir, e))?;
                match portalocker::lock(&file, LockFlags::EXCLUSIVE | LockFlags::NON_BLOCKING) {
                    Ok(()) => return Ok(Some((file, slot))),
                    Err(e) if e.is_contention() => continue,
                    Err(e) => return Err(LockError::from_core(&sem.guest_dir, e)),
                }
            }
            Ok(None)
        };
        let got = wake::wait_until(None, deadline(timeout), || {
            found = sweep()?;
            Ok(found.is_some())
        })
        .await?;
        let Some((file, slot)) = found.filter(|_| got) else {
            return Err(contention(timeout));
        };
        let key = wake::key_of(&file);
        let path = sem.semaphore.filename(slot);
        let permit = SemaphorePermit::from_locked(
            LockGuard::from_locked(file, path, LockMode::Exclusive),
            slot,
        );
        self.push_permit(permit, key, held)
    }

    fn push_permit(
        &mut self,
        permit: SemaphorePermit,
        key: FileKey,
        held: Held,
    ) -> Result<Resource<PermitHandle>, LockError> {
        let slot = u32::try_from(permit.slot()).unwrap_or(u32::MAX);
        Ok(self.table.push(PermitHandle {
            permit: Some(permit),
            slot,
            key,
            _held: held,
        })?)
    }

    pub(crate) fn permit_slot(
        &mut self,
        permit: &Resource<PermitHandle>,
    ) -> Result<u32, LockError> {
        Ok(self.table.get(permit)?.slot)
    }

    pub(crate) fn release_permit(
        &mut self,
        permit: Resource<PermitHandle>,
    ) -> Result<(), LockError> {
        let handle = self.table.delete(permit)?;
        handle
            .release()
            .map_err(|e| LockError::from_core("permit", e))
    }
}

/// The handle's kept descriptor, or a fresh open of its path, with its
/// identity.
fn take_or_open(spare: &Spare, resolved: &Resolved) -> Result<(File, FileKey), LockError> {
    let kept = spare.lock().unwrap_or_else(|p| p.into_inner()).take();
    match kept {
        Some(kept) => Ok(kept),
        None => {
            let file = resolved.open_lock_file()?;
            let key = wake::key_of(&file);
            Ok((file, key))
        }
    }
}

/// How often a lock is retaken because its path was swapped while locking
/// before giving up (someone keeps replacing the file).
const STALE_RETRIES: u32 = 100;

/// After locking `file`: if its path still names it, the file; if the path
/// was unlinked or replaced meanwhile (the lock would exclude nobody),
/// unlock and close it and return `None`, to lock the current file.
fn still_named(
    file: File,
    key: FileKey,
    resolved: &Resolved,
    retries: &mut u32,
) -> Result<Option<(File, FileKey)>, LockError> {
    if resolved.names(key) {
        return Ok(Some((file, key)));
    }
    let _ = portalocker::unlock(&file);
    drop(file);
    *retries += 1;
    if *retries > STALE_RETRIES {
        return Err(crate::error::ErrorCode::Other(format!(
            "{:?} kept being replaced while locking",
            resolved.guest
        ))
        .into());
    }
    Ok(None)
}

impl LocksCtxView<'_> {
    pub(crate) fn open_redis_lock(
        &mut self,
        name: String,
        fencing: bool,
    ) -> Result<Resource<RedisLockHandle>, LockError> {
        let Some(grant) = &self.ctx.redis else {
            return Err(crate::error::ErrorCode::Unsupported(
                "this host grants no Redis server".into(),
            )
            .into());
        };
        if name.is_empty() || name.len() > MAX_REDIS_NAME_LEN || name.chars().any(char::is_control)
        {
            return Err(LockError::invalid(format!(
                "a Redis lock name must be 1 to {MAX_REDIS_NAME_LEN} bytes without control characters"
            )));
        }
        let channel = format!("{}{name}", grant.prefix);
        let lock = portalocker::redis::RedisLock::with_client(grant.client.clone(), &channel)
            .map_err(|e| LockError::from_core(&name, e))?
            .fencing(fencing);
        Ok(self.table.push(RedisLockHandle { lock, name })?)
    }

    pub(crate) fn redis_lock_name(
        &mut self,
        handle: &Resource<RedisLockHandle>,
    ) -> Result<String, LockError> {
        Ok(self.table.get(handle)?.name.clone())
    }

    fn redis_lock_for(
        &mut self,
        handle: &Resource<RedisLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<(portalocker::redis::RedisLock, Held), LockError> {
        let held = self.ctx.reserve()?;
        let lock = self.table.get(handle)?.lock.clone().mode(mode);
        let lock = match timeout {
            Some(timeout) => lock.timeout(timeout),
            None => lock.no_timeout(),
        };
        Ok((lock, held))
    }

    /// Take a Redis lock, blocking this thread.
    pub(crate) fn redis_lock_blocking(
        &mut self,
        handle: &Resource<RedisLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let (lock, held) = self.redis_lock_for(handle, mode, timeout)?;
        let guard = lock
            .acquire()
            .map_err(|e| LockError::from_core(lock.channel(), e))?;
        Ok(self.table.push(RedisGuardHandle {
            guard: Some(guard),
            _held: held,
        })?)
    }

    /// Take a Redis lock without blocking the executor.
    pub(crate) async fn redis_lock_waiting(
        &mut self,
        handle: &Resource<RedisLockHandle>,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Resource<RedisGuardHandle>, LockError> {
        let (lock, held) = self.redis_lock_for(handle, mode, timeout)?;
        let guard = lock
            .acquire_async()
            .await
            .map_err(|e| LockError::from_core(lock.channel(), e))?;
        Ok(self.table.push(RedisGuardHandle {
            guard: Some(guard),
            _held: held,
        })?)
    }

    pub(crate) fn redis_fencing_token(
        &mut self,
        guard: &Resource<RedisGuardHandle>,
    ) -> Result<Option<u64>, LockError> {
        Ok(self
            .table
            .get(guard)?
            .guard
            .as_ref()
            .and_then(|g| g.fencing_token()))
    }

    pub(crate) fn redis_is_lost(
        &mut self,
        guard: &Resource<RedisGuardHandle>,
    ) -> Result<bool, LockError> {
        Ok(self
            .table
            .get(guard)?
            .guard
            .as_ref()
            .is_none_or(|g| g.is_lost()))
    }

    pub(crate) fn release_redis_guard(
        &mut self,
        guard: Resource<RedisGuardHandle>,
    ) -> Result<(), LockError> {
        let mut handle = self.table.delete(guard)?;
        match handle.guard.take() {
            Some(guard) => guard
                .release()
                .map_err(|e| LockError::from_core("redis lock", e)),
            None => Ok(()),
        }
    }
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

fn contention(timeout: Option<Duration>) -> LockError {
    match timeout {
        Some(t) if t.is_zero() => crate::error::ErrorCode::WouldBlock.into(),
        _ => crate::error::ErrorCode::TimedOut.into(),
    }
}
